"""Synthetic label-noise models.

Each model is a pure function of (clean labels, rate, seed, convention, and the inputs for
instance-dependent noise): the same arguments give the same labels on any machine, because all
randomness comes from one ``numpy.random.default_rng(seed)`` (PCG64, platform independent).
``apply_noise`` returns the noisy labels with the true/false mask and the realized transition matrix,
so every run record can be audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nlbench.errors import ConfigError
from nlbench.registry import NOISE, register_noise


@dataclass(frozen=True)
class NoisyLabels:
    """Result of a noise model.

    labels: (N,) int64 noisy labels; is_noisy: (N,) bool, ``labels != clean``;
    transition: (C, C) realized transition matrix, row = true class, column = noisy label,
    each row summing to 1 (0 where a class has no sample).
    """

    labels: np.ndarray
    is_noisy: np.ndarray
    transition: np.ndarray
    model: str
    rate: float
    convention: str

    @property
    def realized_rate(self) -> float:
        return float(self.is_noisy.mean()) if len(self.is_noisy) else 0.0


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) row-normalised counts of (true class, noisy label)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def apply_noise(
    model: str,
    clean: np.ndarray,
    *,
    rate: float,
    seed: int,
    num_classes: int,
    inputs: np.ndarray | None = None,
    dataset: str | None = None,
    **options: object,
) -> NoisyLabels:
    """Corrupt ``clean`` (N,) int labels with the registered noise ``model`` at ``rate``.

    ``inputs`` (N, ...) is needed by instance-dependent noise only; ``dataset`` selects the
    class mapping of asymmetric noise; ``options`` are the model's own keyword arguments
    (``convention`` among them).
    """
    fn = NOISE.get(model)
    if not 0.0 <= float(rate) <= 1.0:
        raise ConfigError(f"noise rate {rate!r} is outside [0, 1]")
    clean = np.asarray(clean, dtype=np.int64)
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ConfigError(f"clean labels must lie in [0, {num_classes}); got [{clean.min()}, {clean.max()}]")
    rng = np.random.default_rng(seed)
    noisy, convention = fn(
        clean, rate=float(rate), rng=rng, num_classes=num_classes, inputs=inputs, dataset=dataset, **options
    )
    noisy = np.asarray(noisy, dtype=np.int64)
    return NoisyLabels(
        labels=noisy,
        is_noisy=noisy != clean,
        transition=transition_matrix(clean, noisy, num_classes),
        model=model,
        rate=float(rate),
        convention=convention,
    )


def _check_options(model: str, options: Mapping[str, object]) -> None:
    if options:
        raise ConfigError(f"noise {model!r} got unknown options: {', '.join(sorted(options))}")


@register_noise("none")
def no_noise(clean: np.ndarray, *, rate: float, rng, num_classes: int, inputs=None, dataset=None, **opts):
    """No synthetic noise: labels as given (real-noise datasets, or a clean reference run)."""
    _check_options("none", opts)
    return clean.copy(), "none"


@register_noise("sym")
def symmetric(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    convention: str = "reference",
    inputs=None,
    dataset=None,
    **opts,
):
    """Symmetric (uniform) flips of a fraction ``rate`` of the samples.

    convention='reference' follows the DivideMix / ELR / UNICON reference code: exactly
    ``int(rate * N)`` samples, chosen uniformly, get a label drawn uniformly from all C classes, so some
    keep their true label (realized flip rate ≈ rate·(1 − 1/C)). convention='exclusive' draws the new
    label from the other C − 1 classes (realized flip rate = rate).
    """
    _check_options("sym", opts)
    n = len(clean)
    chosen = rng.permutation(n)[: int(rate * n)]
    noisy = clean.copy()
    if convention == "reference":
        noisy[chosen] = rng.integers(0, num_classes, size=len(chosen))
    elif convention == "exclusive":
        offset = rng.integers(1, num_classes, size=len(chosen))
        noisy[chosen] = (clean[chosen] + offset) % num_classes
    else:
        raise ConfigError(f"unknown sym convention {convention!r}; expected one of: exclusive, reference")
    return noisy, convention


# Class mappings of asymmetric noise: true class -> the class it is mistaken for.
# CIFAR-10, as in the DivideMix/ELR reference code: truck→automobile, bird→airplane, deer→horse, cat↔dog.
ASYM_MAPS: dict[str, dict[int, int]] = {
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # digits / MNIST-like: our choice of visually similar pairs; 0 and 2 have no close partner and stay.
    "digits": {1: 7, 7: 1, 3: 8, 8: 3, 4: 9, 9: 4, 5: 6, 6: 5},
    # Fashion-MNIST: T-shirt↔Shirt, Pullover↔Coat, Sandal↔Sneaker; Trouser, Dress, Bag, Ankle boot stay.
    "fashion_mnist": {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5},
}


def _cycle_within(groups: list[list[int]], num_classes: int) -> np.ndarray:
    """Target table mapping each class to the next class of its group, cyclically."""
    target = np.arange(num_classes)
    for group in groups:
        for i, c in enumerate(group):
            target[c] = group[(i + 1) % len(group)]
    return target


def asym_targets(dataset: str | None, num_classes: int, convention: str) -> np.ndarray:
    """(C,) table: the class each true class flips to under asymmetric noise."""
    if convention == "next":
        return (np.arange(num_classes) + 1) % num_classes
    if convention == "block":
        return _cycle_within([list(range(s, min(s + 5, num_classes))) for s in range(0, num_classes, 5)],
                             num_classes)
    if convention == "superclass":
        from nlbench.datasets.cifar import CIFAR100_SUPERCLASSES

        if num_classes != 100:
            raise ConfigError("asym convention 'superclass' needs CIFAR-100's 100 classes")
        return _cycle_within([list(g) for g in CIFAR100_SUPERCLASSES], 100)
    if convention == "dataset":
        if dataset not in ASYM_MAPS:
            raise ConfigError(
                f"asym noise has no class mapping for dataset {dataset!r}; known: {', '.join(sorted(ASYM_MAPS))}"
                " (or pass mapping_file=PATH, or convention block|superclass|next)"
            )
        target = np.arange(num_classes)
        for src, dst in ASYM_MAPS[dataset].items():
            target[src] = dst
        return target
    raise ConfigError(f"unknown asym convention {convention!r}; expected one of: block, dataset, next, superclass")


@register_noise("asym")
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
):
    """Class-dependent flips: each sample independently moves to its class's partner with prob. ``rate``.

    convention: 'block' (CIFAR-100 reference code of ELR/DivideMix: blocks of 5 consecutive classes,
    each to the next in its block, cyclically; the default for 100 classes), 'superclass' (the same
    cycle inside CIFAR-100's 20 super-classes), 'next' (y → y+1 mod C), 'dataset' (the fixed mapping
    of CIFAR-10, digits or Fashion-MNIST; the default otherwise). ``mapping_file``: a user's JSON
    {"src": dst} mapping or a (C, C) transition matrix in a .npy/.csv file. Rates ≥ 0.5 make the
    partner class the majority label, so classes are no longer identifiable: refused unless ``force``.
    """
    _check_options("asym", opts)
    if rate >= 0.5 and not force:
        raise ConfigError(
            f"asym rate {rate} ≥ 0.5 makes classes unidentifiable (the flipped label becomes the majority);"
            " pass force=true to run it anyway"
        )
    if mapping_file is not None:
        return _from_mapping_file(clean, rate, rng, num_classes, mapping_file), f"file:{mapping_file}"
    if convention is None:
        convention = "block" if num_classes == 100 else "dataset"
    target = asym_targets(dataset, num_classes, convention)
    flip = rng.random(len(clean)) < rate
    noisy = np.where(flip, target[clean], clean)
    return noisy, convention


def _from_mapping_file(clean, rate, rng, num_classes, path) -> np.ndarray:
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"asym mapping file {path!r} does not exist")
    if p.suffix == ".json":
        mapping = {int(k): int(v) for k, v in json.loads(p.read_text()).items()}
        target = np.arange(num_classes)
        for src, dst in mapping.items():
            if not (0 <= src < num_classes and 0 <= dst < num_classes):
                raise ConfigError(f"mapping {src}->{dst} in {path} is outside [0, {num_classes})")
            target[src] = dst
        flip = rng.random(len(clean)) < rate
        return np.where(flip, target[clean], clean)
    matrix = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",")
    if matrix.shape != (num_classes, num_classes) or not np.allclose(matrix.sum(1), 1.0):
        raise ConfigError(f"transition matrix in {path} must be ({num_classes}, {num_classes}) with rows summing to 1")
    # The file's matrix is used as given (its diagonal already holds the keep probability).
    cum = np.cumsum(matrix, axis=1)
    u = rng.random(len(clean))
    return np.minimum((u[:, None] > cum[clean]).sum(1), num_classes - 1)


def _normalised_inputs(inputs: np.ndarray) -> np.ndarray:
    """Flatten and standardise inputs: images (N,H,W,C) per channel, feature rows (N,D) per dimension."""
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 4:
        x = x / 255.0 if inputs.dtype == np.uint8 else x
        mean = x.mean(axis=(0, 1, 2), keepdims=True)
        std = x.std(axis=(0, 1, 2), keepdims=True) + 1e-8
    else:
        mean = x.mean(axis=0, keepdims=True)
        std = x.std(axis=0, keepdims=True) + 1e-8
    return ((x - mean) / std).reshape(len(x), -1)


@register_noise("inst")
def instance_dependent(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    inputs: np.ndarray | None = None,
    std: float = 0.1,
    inputs_kind: str = "pixels",
    dataset=None,
    **opts,
):
    """Instance-dependent noise of Xia et al., NeurIPS 2020 ("Part-dependent label noise").

    Per sample a flip rate q_i ~ N(rate, std²) truncated to [0, 1]; a projection W (C, d, C) ~ N(0, 1);
    scores x_i·W[y_i] with the true class masked out, softmax, scaled by q_i, and 1 − q_i on the true
    class; the noisy label is drawn from that distribution. x_i is the flattened input, standardised
    (``inputs_kind`` records whether the runner passed raw pixels, the default as in the reference
    code, or backbone features).
    """
    from scipy.stats import truncnorm

    _check_options("inst", opts)
    if inputs is None:
        raise ConfigError("inst noise needs the training inputs (pixels or features)")
    x = _normalised_inputs(inputs)
    n, d = x.shape
    if rate == 0.0:
        return clean.copy(), f"xia2020:{inputs_kind}"
    q = truncnorm.rvs((0 - rate) / std, (1 - rate) / std, loc=rate, scale=std, size=n, random_state=rng)
    w = rng.standard_normal((num_classes, d, num_classes), dtype=np.float32)
    probs = flip_distribution(x, clean, q, w)
    u = rng.random(n)
    noisy = np.minimum((u[:, None] > np.cumsum(probs, axis=1)).sum(1), num_classes - 1)
    return noisy, f"xia2020:{inputs_kind}"


def flip_distribution(x: np.ndarray, clean: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, C) label distribution per sample (Xia et al.): q_i·softmax(x_i W[y_i]) over the other classes
    (true class masked out) plus 1 − q_i on y_i."""
    n, num_classes = len(clean), w.shape[2]
    probs = np.zeros((n, num_classes), dtype=np.float64)
    for c in np.unique(clean):
        idx = np.flatnonzero(clean == c)
        scores = (x[idx] @ w[c]).astype(np.float64)
        scores[:, c] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        probs[idx] = q[idx, None] * e / e.sum(axis=1, keepdims=True)
        probs[idx, c] += 1.0 - q[idx]
    return probs
