"""What every dataset loader builds on: ``Split`` and ``Dataset``, ``load_dataset`` by registered name, and
the subsampling helpers. The loaders (one file each) import this module; ``nlbench.datasets`` imports the
loaders, so that the package and its files import one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nlbench.errors import ConfigError
from nlbench.registry import DATASETS


@dataclass
class Split:
    """One split. ``images`` (N, H, W, C) uint8 or ``paths`` (N,) for datasets read from disk by path;
    ``labels`` (N,) clean labels or None where unknown; ``noisy_labels`` (N,) labels as given by a
    real-noise dataset, or None."""

    labels: np.ndarray | None
    images: np.ndarray | None = None
    paths: list[str] | None = None
    noisy_labels: np.ndarray | None = None

    def __len__(self) -> int:
        if self.images is not None:
            return len(self.images)
        if self.paths is not None:
            return len(self.paths)
        return len(self.labels)

    def subset(self, index: np.ndarray) -> Split:
        return Split(
            labels=None if self.labels is None else self.labels[index],
            images=None if self.images is None else self.images[index],
            paths=None if self.paths is None else [self.paths[i] for i in index],
            noisy_labels=None if self.noisy_labels is None else self.noisy_labels[index],
        )


@dataclass
class Dataset:
    """A dataset instance. ``identity`` holds everything that determines its contents (name, split seed,
    subsample, root file checksums…); it is part of every feature-cache key."""

    name: str
    num_classes: int
    train: Split
    val: Split
    test: Split
    class_names: list[str] = field(default_factory=list)
    hflip: bool = True  # horizontal flip is label-preserving (not for digits)
    real_noise: bool = False  # train labels are noisy as given; no synthetic noise is applied
    identity: dict = field(default_factory=dict)
    # Further evaluation sets beside ``test`` (WebVision: the matching ImageNet validation classes).
    extra_tests: dict[str, Split] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        """train, val, test, or the name of an extra test set (WebVision's 'imagenet')."""
        if name in ("train", "val", "test"):
            return getattr(self, name)
        if name in self.extra_tests:
            return self.extra_tests[name]
        choices = ", ".join(["test", "train", "val", *self.extra_tests])
        raise ConfigError(f"unknown split {name!r}; expected one of: {choices}")


def load_dataset(name: str, **options: object) -> Dataset:
    """Load the registered dataset ``name``; ``options`` are the loader's keyword arguments."""
    loader = DATASETS.get(name)
    try:
        return loader(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"dataset {name!r}: {exc}") from None
        raise


def stratified_subsample(labels: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified subsample of ``size`` items (all indices when None)."""
    n = len(labels)
    if size is None or size >= n:
        return np.arange(n)
    from sklearn.model_selection import train_test_split  # scikit-learn: heavy; the data layer loads without it

    keep, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed)
    return np.sort(keep)


def holdout(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) sorted indices: a seeded, class-stratified hold-out of ``size`` items (the
    validation split carved from a training set, as the paper's 47.5k / 2.5k CIFAR split)."""
    n = len(labels)
    if not 0 < size < n:
        raise ConfigError(f"hold-out size {size} must lie in (0, {n})")
    from sklearn.model_selection import train_test_split  # scikit-learn: heavy; the data layer loads without it

    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 and size >= (counts > 0).sum() else None
    keep, out = train_test_split(np.arange(n), test_size=size, stratify=stratify, random_state=seed)
    return np.sort(keep), np.sort(out)


def check_size(name: str, option: str, value: object, available: int) -> int | None:
    """Validate a subsample size option: None, or an int in [1, available]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= available:
        raise ConfigError(f"dataset {name!r}: {option}={value!r} must be an integer in [1, {available}] or unset")
    return value

