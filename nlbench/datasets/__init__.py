"""Datasets: each registered loader returns a ``Dataset`` with train/val/test splits.

Small datasets keep their images in memory as uint8 arrays (N, H, W, C) so that the engine can move
them to the accelerator once and augment there; large ones list image paths.

Registered: ``digits`` (embedded), ``cifar10``/``cifar100`` (torchvision pickle batches),
``cifar10n``/``cifar100n`` (CIFAR-N human labels, CC BY-NC 4.0), ``fashion_mnist`` (idx files; Debian's
``dataset-fashion-mnist`` by default), ``clothing1m`` and ``webvision`` (annotation/list files, images by
path), and ``folder``/``csv`` for a user's own images. Each loader's ``identity`` dict determines the
dataset's contents (it keys the feature cache and the saved noisy labels). Each registration declares the
dataset's facts beside its loader (``nlbench.registry.DatasetFacts``: split sizes, held in memory or read
by path, real-noise rate), which the dry run reads without loading it.
"""

# Import each loader module explicitly so that a broken one fails loudly.
from nlbench.datasets import cifar, cifarn, clothing1m, custom, digits, fashion_mnist, files, webvision  # noqa: F401
from nlbench.datasets.base import Dataset, Split, check_size, holdout, load_dataset, stratified_subsample

__all__ = ["Dataset", "Split", "check_size", "holdout", "load_dataset", "stratified_subsample"]
