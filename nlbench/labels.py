"""Labels of a cell: the noisy training and validation labels every method of a grid sees."""

from __future__ import annotations

import numpy as np

from nlbench.datasets import Dataset
from nlbench.grids import CellSpec
from nlbench.noise import NoisyLabels, apply_noise


def noisy_labels(spec: CellSpec, dataset: Dataset) -> tuple[np.ndarray, np.ndarray, NoisyLabels | None]:
    """(train labels, val labels, noise result) for the cell.

    Synthetic noise is drawn once over train and validation together (the paper splits CIFAR-100's
    noisy 50k into 47.5k/2.5k) from the cell's seed, so every method of a grid sees the same labels.
    """
    n_train = len(dataset.train)
    if dataset.real_noise:
        clean_val = dataset.val.labels if dataset.val.labels is not None else dataset.val.noisy_labels
        val = clean_val if spec.val_labels == "clean" else (
            dataset.val.noisy_labels if dataset.val.noisy_labels is not None else clean_val)
        return dataset.train.noisy_labels, val, None
    clean = np.concatenate([dataset.train.labels, dataset.val.labels])
    inputs = None
    if spec.noise == "inst" and dataset.train.images is not None:
        inputs = np.concatenate([dataset.train.images, dataset.val.images])
    result = apply_noise(spec.noise, clean, rate=spec.rate, seed=spec.seed, num_classes=dataset.num_classes,
                         inputs=inputs, dataset=dataset.name, **spec.noise_options)
    val = dataset.val.labels if spec.val_labels == "clean" else result.labels[n_train:]
    return result.labels[:n_train], val, result
