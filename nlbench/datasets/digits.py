"""scikit-learn's handwritten digits: the embedded default dataset (no download, 1,797 images)."""

from __future__ import annotations

import numpy as np

from nlbench.datasets.base import Dataset, Split
from nlbench.registry import register_dataset


# 1,797 images split 70/10/20 at the loader's default fractions.
@register_dataset("digits", source="scikit-learn", classes=10, licence="CC BY 4.0 (UCI)", sizes=(1_257, 180, 360),
                  in_memory=True)
def digits(*, split_seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn digits: 1,797 8×8 grey images, 10 classes; stratified train/val/test split by seed."""
    from sklearn.datasets import load_digits  # scikit-learn: heavy; the data layer loads without it
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixel values are 0..16; scale to uint8 and repeat to 3 channels for ImageNet backbones.
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=split_seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=split_seed
    )

    def split(idx: np.ndarray) -> Split:
        idx = np.sort(idx)
        return Split(labels=labels[idx], images=images[idx])

    return Dataset(
        name="digits",
        num_classes=10,
        train=split(train),
        val=split(val),
        test=split(test),
        class_names=[str(i) for i in range(10)],
        hflip=False,
        identity={"dataset": "digits", "split_seed": split_seed, "val_fraction": val_fraction,
                  "test_fraction": test_fraction},
    )
