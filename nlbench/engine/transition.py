"""Noise transition matrices estimated from a classifier's predictions (Patrini et al., CVPR 2017).

T[i, j] = p(ỹ = j | y = i): rows are true classes, columns noisy labels (the orientation of
``nlbench.noise`` and of a cell's ``oracle_transition``). A classifier trained on the noisy labels
predicts p(ỹ | x) = Σ_i p(y = i | x) T[i, ·]; at an *anchor point* of class i (a sample that is surely of
class i), its prediction is T's row i. The anchor of class i is the sample with the highest predicted
p(ỹ = i | x) (the paper's estimator), or, robust to over-confident outliers, the highest one below that
column's 97th percentile (the official code, ``models.py: NoiseEstimator.fit``). The filter sets aside 3 % of
all N samples per column: once that exceeds a class (balanced: C > 100/3), the anchors leave their class, which
is why the official code used it on 2 and 10 classes only (``experiment.py`` 58-62; Forward-T's class-count rule).
"""

from __future__ import annotations

import numpy as np

from nlbench.errors import ConfigError


def anchor_points(probs: np.ndarray, *, percentile: float | None = None) -> np.ndarray:
    """(C,) the training-sample index taken as anchor of each class from ``probs`` (N, C) p(ỹ | x).

    percentile None: the arg-max of column i. A number q in (0, 100): the official code's outlier filter —
    every value at or above the column's q-th percentile (numpy's 'higher' method) is set aside, and the
    arg-max of the rest is taken (the first sample where nothing is left).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ConfigError(f"anchor_points needs an (N, C) array of probabilities; got shape {probs.shape}")
    if percentile is not None and not 0.0 < percentile < 100.0:
        raise ConfigError(f"anchor percentile must lie in (0, 100) or be None (arg-max); got {percentile}")
    anchors = np.empty(probs.shape[1], dtype=np.int64)
    for i in range(probs.shape[1]):
        column = probs[:, i]
        if percentile is not None:
            threshold = np.percentile(column, percentile, method="higher")
            column = np.where(column >= threshold, 0.0, column)
        anchors[i] = int(np.argmax(column))
    return anchors


def anchor_transition(probs: np.ndarray, *, percentile: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(T̂ (C, C), anchors (C,)): row i of T̂ is the prediction at class i's anchor, rows normalised to sum 1
    (the code's ``row_normalize=True``). ``percentile`` as in ``anchor_points``."""
    probs = np.asarray(probs, dtype=np.float64)
    anchors = anchor_points(probs, percentile=percentile)
    estimate = probs[anchors].copy()
    sums = estimate.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise ConfigError("anchor_transition: an anchor's predicted probabilities sum to 0; expected softmax rows")
    return estimate / sums, anchors


def transition_error(estimate: np.ndarray, oracle: np.ndarray) -> dict[str, float]:
    """How far an estimated transition matrix is from the true one: mean and largest absolute entry
    difference, and the mean absolute difference on the diagonal (the kept-label probabilities)."""
    estimate, oracle = np.asarray(estimate, dtype=np.float64), np.asarray(oracle, dtype=np.float64)
    if estimate.shape != oracle.shape:
        raise ConfigError(f"transition_error: shapes differ, {estimate.shape} against {oracle.shape}")
    diff = np.abs(estimate - oracle)
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
            "diag_mean_abs": float(np.diag(diff).mean())}
