"""Noise model 'asym': class-dependent flips, each class to its partner (CIFAR-10's, Fashion-MNIST's and
digits' fixed maps, CIFAR-100's blocks or super-classes, y → y+1, or a user's mapping / transition-matrix file)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nlbench.datasets.cifar import CIFAR100_SUPERCLASSES
from nlbench.errors import ConfigError
from nlbench.noise.base import NoiseDraw, check_model_options
from nlbench.registry import register_noise

# Class mappings of asymmetric noise: true class -> the class it is mistaken for.
ASYM_MAPS: dict[str, dict[int, int]] = {
    # CIFAR-10, as in the DivideMix/ELR reference code: truck→automobile, bird→airplane, deer→horse, cat↔dog.
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # digits / MNIST-like: our choice of visually similar pairs; 0 and 2 have no close partner and stay.
    "digits": {1: 7, 7: 1, 3: 8, 8: 3, 4: 9, 9: 4, 5: 6, 6: 5},
    # Fashion-MNIST (ours): T-shirt/top↔Shirt, Pullover↔Coat, Sandal↔Sneaker — the pairs the Fashion-MNIST
    # paper's classifiers confuse most; Trouser, Dress, Bag and Ankle boot stay.
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5},
}
# Dataset families that share a mapping (the CIFAR-N datasets carry CIFAR's classes).
_ASYM_ALIASES = {"cifar10n": "cifar10"}
# The default asym convention per dataset where it is not 'dataset'.
_ASYM_DEFAULT = {"cifar100": "block", "cifar100n": "block"}
ASYM_CONVENTIONS = ("block", "dataset", "next", "superclass")


def _cycle_within(groups: list[list[int]], num_classes: int) -> np.ndarray:
    """Target table mapping each class to the next class of its group, cyclically."""
    target = np.arange(num_classes)
    for group in groups:
        for i, c in enumerate(group):
            target[c] = group[(i + 1) % len(group)]
    return target


def _no_mapping_error(dataset: str | None) -> ConfigError:
    return ConfigError(
        f"asym noise has no class mapping for dataset {dataset!r} (mappings exist for: "
        f"{', '.join(sorted([*ASYM_MAPS, *_ASYM_ALIASES, *_ASYM_DEFAULT]))}); pass the noise option "
        "mapping_file=PATH (a JSON {\"src\": dst} mapping or a (C, C) .npy/.csv transition matrix) or "
        "convention=next (y → y+1 mod C); block and superclass are CIFAR-100's"
    )


def asym_targets(dataset: str | None, num_classes: int, convention: str) -> np.ndarray:
    """(C,) table: the class each true class flips to under asymmetric noise (itself where it stays)."""
    if convention == "next":
        return (np.arange(num_classes) + 1) % num_classes
    if convention == "block":
        if num_classes % 5:
            raise ConfigError(f"asym convention 'block' needs a multiple of 5 classes; got {num_classes}")
        return _cycle_within([list(range(s, s + 5)) for s in range(0, num_classes, 5)], num_classes)
    if convention == "superclass":
        if num_classes != 100:
            raise ConfigError(f"asym convention 'superclass' needs CIFAR-100's 100 classes; got {num_classes}")
        return _cycle_within([list(g) for g in CIFAR100_SUPERCLASSES], 100)
    if convention == "dataset":
        key = _ASYM_ALIASES.get(dataset or "", dataset)
        if key not in ASYM_MAPS:
            raise _no_mapping_error(dataset)
        target = np.arange(num_classes)
        for src, dst in ASYM_MAPS[key].items():
            target[src] = dst
        return target
    raise ConfigError(f"unknown asym convention {convention!r}; expected one of: {', '.join(ASYM_CONVENTIONS)}")


def _flip_expected(target: np.ndarray, rate: float) -> np.ndarray:
    c = len(target)
    expected = np.zeros((c, c))
    expected[np.arange(c), np.arange(c)] += 1.0 - rate
    expected[np.arange(c), target] += rate
    return expected


def check_asym_options(options: Mapping[str, object]) -> None:
    """What one dummy draw cannot see (``check_noise_options``): a JSON mapping file's entries, read as written."""
    mapping = options.get("mapping_file")
    if isinstance(mapping, str) and Path(mapping).suffix == ".json" and Path(mapping).is_file():
        _check_json_mapping(Path(mapping))


def _check_json_mapping(path: Path) -> None:
    """A JSON mapping's keys and values must be class indices as written (``"1": 7.9`` is not class 7)."""
    try:
        mapping = json.loads(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"asym mapping file {path}: not JSON: {exc}") from None
    if not isinstance(mapping, dict):
        raise ConfigError(f"asym mapping file {path}: expected a JSON object {{\"src\": dst}}; "
                          f"got {type(mapping).__name__}")
    for key, value in mapping.items():
        if not key.strip().isdigit() or isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"asym mapping file {path}: entry {key!r}: {value!r}; expected a class index "
                              f"(\"src\": dst with non-negative integers)")


@register_noise("asym", check=check_asym_options)
def asymmetric(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    convention: str | None = None,
    mapping_file: str | None = None,
    force: bool = False,
    inputs=None,
    dataset=None,
    **opts,
) -> NoiseDraw:
    """Class-dependent flips: each sample independently moves to its class's partner with prob. ``rate``.

    convention: 'block' (the CIFAR-100 reference code of ELR ``asymmetric_noise``: a block-diagonal P with
    20 blocks of 5 consecutive class indices, each class to the next in its block, cyclically, sampled per
    sample; the default for cifar100), 'superclass' (the same cycle inside CIFAR-100's 20 real
    super-classes, as papers describe it), 'next' (y → y+1 mod C), 'dataset' (the fixed mapping of
    CIFAR-10, digits or Fashion-MNIST in ``ASYM_MAPS``; the default for those). ``mapping_file``: a user's
    JSON {"src": dst} mapping or a (C, C) transition matrix in a .npy/.csv file (rows: true class, summing
    to 1; the matrix is used as given and ``rate`` is ignored). Rates ≥ 0.5 make the partner class the
    majority label, so classes are no longer identifiable: refused unless ``force``. Each sample flips
    independently (ELR's CIFAR-100 code); DivideMix's CIFAR-10 code instead flips exactly ⌊rN⌋ samples:
    the expected transition matrix is the same.
    """
    check_model_options("asym", opts, ("convention", "force", "mapping_file"))
    if not isinstance(force, bool):
        raise ConfigError(f"asym option force must be true or false; got {force!r}")
    if rate >= 0.5 and not force:
        raise ConfigError(
            f"asym rate {rate} ≥ 0.5 makes classes unidentifiable (the flipped label becomes the majority);"
            " pass the noise option force=true to run it anyway"
        )
    if mapping_file is not None:
        if convention is not None:
            raise ConfigError("asym: give either convention or mapping_file, not both")
        return _from_mapping_file(clean, rate, rng, num_classes, mapping_file)
    if convention is None:
        key = _ASYM_ALIASES.get(dataset or "", dataset)
        if dataset in _ASYM_DEFAULT:
            convention = _ASYM_DEFAULT[dataset]
        elif key in ASYM_MAPS:
            convention = "dataset"
        else:
            raise _no_mapping_error(dataset)
    target = asym_targets(dataset, num_classes, convention)
    flip = rng.random(len(clean)) < rate
    noisy = np.where(flip, target[clean], clean)
    moves = target[clean] != clean
    return NoiseDraw(noisy, convention, _flip_expected(target, rate), np.where(moves, rate, 0.0))


def _from_mapping_file(clean: np.ndarray, rate: float, rng: np.random.Generator, num_classes: int,
                       path: str) -> NoiseDraw:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"asym mapping file {path!r} does not exist")
    data = p.read_bytes()
    name = f"file:{p.name}:{hashlib.sha256(data).hexdigest()[:12]}"
    if p.suffix == ".json":
        try:
            mapping = {int(k): int(v) for k, v in json.loads(data).items()}
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"asym mapping file {path}: expected a JSON object {{\"src\": dst}}: {exc}") from None
        target = np.arange(num_classes)
        for src, dst in mapping.items():
            if not (0 <= src < num_classes and 0 <= dst < num_classes):
                raise ConfigError(f"mapping {src}->{dst} in {path} is outside [0, {num_classes})")
            target[src] = dst
        flip = rng.random(len(clean)) < rate
        moves = target[clean] != clean
        return NoiseDraw(np.where(flip, target[clean], clean), name, _flip_expected(target, rate),
                         np.where(moves, rate, 0.0))
    if p.suffix not in (".npy", ".csv"):
        raise ConfigError(f"asym mapping file {path}: expected a .json, .npy or .csv file")
    try:
        matrix = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",", ndmin=2)
    except ValueError as exc:
        raise ConfigError(f"asym mapping file {path}: unreadable matrix: {exc}") from None
    if matrix.shape != (num_classes, num_classes) or (matrix < 0).any() or not np.allclose(matrix.sum(1), 1.0):
        raise ConfigError(f"transition matrix in {path} must be ({num_classes}, {num_classes}), non-negative, "
                          f"with rows summing to 1; got shape {matrix.shape}")
    # The file's matrix is used as given (its diagonal already holds the keep probability).
    cum = np.cumsum(matrix, axis=1)
    u = rng.random(len(clean))
    noisy = np.minimum((u[:, None] > cum[clean]).sum(1), num_classes - 1)
    return NoiseDraw(noisy, name, matrix.astype(np.float64), 1.0 - np.diag(matrix)[clean])
