"""Image sources: uint8 batches on the training device, for feature extraction and fine-tuning.

``TensorImages`` holds a small dataset as one uint8 tensor on the device (CIFAR-100's 50k 32×32 images
are 150 MB), so batches are index lookups. Datasets read by path get a DataLoader-backed source with
the same ``batches`` interface.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from nlbench.datasets import Split
from nlbench.datasets.files import PathImages


class ImageSource(Protocol):
    def __len__(self) -> int: ...

    def batches(
        self, index: np.ndarray, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (uint8 images (B, C, H, W) on the device, positions (B,) into ``index``... as sample ids)."""
        ...


class TensorImages:
    """All images of a split as one uint8 (N, C, H, W) tensor on ``device``."""

    def __init__(self, images: np.ndarray, device: torch.device) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self, index: np.ndarray, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ids = torch.as_tensor(index, dtype=torch.long)
        if shuffle:
            ids = ids[torch.randperm(len(ids), generator=generator)]
        for start in range(0, len(ids), batch_size):
            batch_ids = ids[start : start + batch_size]
            yield self.images[batch_ids.to(self.images.device)], batch_ids


def image_source(split: Split, device: torch.device) -> ImageSource:
    """The image source for a split: in-memory tensor, or files read by path."""
    if split.images is not None:
        return TensorImages(split.images, device)
    if split.paths is not None:
        return PathImages(split.paths, device)
    raise ValueError("split has neither images nor paths")
