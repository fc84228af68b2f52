"""What every noise model shares: the result type (``NoisyLabels``), the label digest, the realized transition
matrix, the share a model flips in expectation (``expected_flip_rate``), the draw a model function returns
(``NoiseDraw``), ``apply_noise``, and the option checks (``check_model_options`` inside a model;
``check_noise_options`` for a grid, dispatching to each model's own check declared at its registration).

All randomness of a draw comes from one ``numpy.random.default_rng(seed)`` (PCG64, platform independent),
made here and handed to the model, so the same arguments give the same labels on any machine.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nlbench.errors import ConfigError
from nlbench.registry import NOISE


@dataclass(frozen=True)
class NoisyLabels:
    """Result of a noise model.

    labels: (N,) int64 noisy labels; is_noisy: (N,) bool, ``labels != clean``;
    transition: (C, C) realized transition matrix, row = true class, column = noisy label,
    each row summing to 1 (0 where a class has no sample); expected_transition: (C, C) the model's
    transition matrix in expectation (None for label-as-given noise); flip_probability: (N,) each
    sample's probability of leaving its class under the model, or None; digest: sha256 of the noisy
    label vector (int64, little endian); options: the model's options as passed.
    """

    labels: np.ndarray
    is_noisy: np.ndarray
    transition: np.ndarray
    model: str
    rate: float
    convention: str
    expected_transition: np.ndarray | None = None
    flip_probability: np.ndarray | None = None
    digest: str = ""
    options: Mapping[str, object] | None = None

    @property
    def realized_rate(self) -> float:
        return float(self.is_noisy.mean()) if len(self.is_noisy) else 0.0

    def largest_off_diagonal(self, k: int = 10) -> list[tuple[int, int, float]]:
        """The ``k`` largest off-diagonal entries (true class, noisy label, probability) of the realized
        transition matrix, largest first (ties by class index)."""
        t = self.transition.copy()
        np.fill_diagonal(t, -1.0)
        flat = np.argsort(-t, axis=None, kind="stable")[:k]
        rows, cols = np.unravel_index(flat, t.shape)
        return [(int(r), int(c), float(t[r, c])) for r, c in zip(rows, cols, strict=True) if t[r, c] > 0]


def label_digest(labels: np.ndarray) -> str:
    """sha256 of a label vector as little-endian int64 bytes: the same labels give the same digest anywhere."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) row-normalised counts of (true class, noisy label)."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (clean, noisy), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def expected_flip_rate(transition: np.ndarray, prior: np.ndarray | None = None) -> float:
    """The share of samples a noise model flips in expectation, Σ_c π_c·(1 − T_cc), from its (C, C) expected
    transition matrix (rows: true class; ``NoisyLabels.expected_transition``) and the clean class prior π
    (default: uniform over the classes whose row is not empty — a model leaves a class absent from the
    draw an all-zero row). Examples at C = 10: sym 0.6 'exclusive' 0.6, 'reference' 0.54 (= 0.6·(1 − 1/C));
    asym 0.4 on CIFAR-10's map 0.2 (5 of 10 classes move), digits 0.32 (8 of 10), Fashion-MNIST 0.24 (6 of
    10); CIFAR-100 'block' 0.4 (every class moves)."""
    t = np.asarray(transition, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ConfigError(f"a transition matrix must be square (C, C); got shape {t.shape}")
    present = t.sum(axis=1) > 0
    if prior is None:
        prior = present / max(1, int(present.sum()))
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (len(t),) or (prior < 0).any() or not np.isclose(prior.sum(), 1.0):
        raise ConfigError(f"a class prior must be {len(t)} non-negative numbers summing to 1; got {prior!r}")
    # Rounded: a matrix built from decimal rates gives the decimal back (0.6, not 0.6000000000000001).
    return round(float(np.sum(prior * (1.0 - np.diag(t)) * present)), 12)


@dataclass(frozen=True)
class NoiseDraw:
    """What a registered model function returns: labels, convention name and, where known, the model's
    expected transition matrix and per-sample flip probabilities.

    A model function is registered with ``@register_noise(name)`` and called as
    ``fn(clean, *, rate, rng, num_classes, inputs, dataset, **options) -> NoiseDraw``; the registration may
    declare ``needs_inputs=True`` (the model reads the training inputs: ``check_noise_options`` hands its
    dummy draw one input row) and ``check=fn(options)``, a check of what one dummy draw cannot see (the
    contents of a file an option names)."""

    labels: np.ndarray
    convention: str
    expected: np.ndarray | None = None
    flip_probability: np.ndarray | None = None


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
    """Corrupt ``clean`` (N,) int labels with the registered noise ``model`` at ``rate`` ∈ [0, 1] (a rate
    from a grid or ``noise audit`` is checked by ``grid_schema.check_rate``; this library call trusts it).

    ``inputs`` (N, ...) is needed by instance-dependent noise only (images (N, H, W, C) or features
    (N, D)); ``dataset`` (a registered dataset name) selects the class mapping of asymmetric noise;
    ``options`` are the model's own keyword arguments (``convention`` among them).
    """
    fn = NOISE.get(model)  # the rate's type and range: checked once, by the grid schema (check_rate)
    clean = np.asarray(clean)
    if clean.ndim != 1 or (clean.size and not np.issubdtype(clean.dtype, np.integer)):
        raise ConfigError(f"clean labels must be a 1-d integer array; got shape {clean.shape}, dtype {clean.dtype}")
    clean = clean.astype(np.int64)
    if clean.size and (clean.min() < 0 or clean.max() >= num_classes):
        raise ConfigError(f"clean labels must lie in [0, {num_classes}); got [{clean.min()}, {clean.max()}]")
    if inputs is not None and len(inputs) != len(clean):
        raise ConfigError(f"noise inputs have {len(inputs)} rows for {len(clean)} labels")
    rng = np.random.default_rng(seed)
    draw: NoiseDraw = fn(
        clean, rate=float(rate), rng=rng, num_classes=num_classes, inputs=inputs, dataset=dataset, **options
    )
    noisy = np.asarray(draw.labels, dtype=np.int64)
    return NoisyLabels(
        labels=noisy,
        is_noisy=noisy != clean,
        transition=transition_matrix(clean, noisy, num_classes),
        model=model,
        rate=float(rate),
        convention=draw.convention,
        expected_transition=draw.expected,
        flip_probability=draw.flip_probability,
        digest=label_digest(noisy),
        options=dict(options),
    )


def check_model_options(model: str, options: Mapping[str, object], valid: tuple[str, ...] = ()) -> None:
    """Raise ConfigError when a model got options outside ``valid`` (its own keyword arguments)."""
    if options:
        known = ", ".join(valid) if valid else "none"
        raise ConfigError(f"noise {model!r} got unknown options: {', '.join(sorted(options))}; its options: {known}")


def check_noise_options(model: str, rate: float, options: Mapping[str, object], *, num_classes: int,
                        dataset: str | None = None) -> None:
    """Raise ConfigError for anything ``apply_noise`` would refuse (an unknown option, asym ≥ 0.5 without
    force, a bad or missing mapping file…) without drawing the dataset's labels: the model's own code runs on
    one dummy sample, so grids are checked with the very rules their cells will meet. A model's own
    further check (``check`` of its registration) runs first."""
    entry = NOISE.entry(model)
    check = entry.meta.get("check")
    if check is not None:  # what the dummy draw cannot see, declared with the model (asym: a JSON mapping file)
        check(options)
    inputs = np.zeros((1, 1), dtype=np.float32) if entry.meta.get("needs_inputs") else None
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # statistics of one dummy input
        apply_noise(model, np.zeros(1, dtype=np.int64), rate=rate, seed=0, num_classes=num_classes, inputs=inputs,
                    dataset=dataset, **options)
