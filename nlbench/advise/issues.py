"""Which labels are wrong: three detectors on the same out-of-fold probabilities, and the suspects ranking.

* ``confident-joint``: our own confident learning (``prune_by_noise_rate``, Northcutt et al. 2021 §3.2):
  for each off-diagonal cell (i, j) of the calibrated joint, the round(N · Q[i, j]) samples labelled i with the
  largest margin p̂_j − p̂_i are flagged; a sample whose prediction equals its label is never flagged.
* ``cleanlab``: ``cleanlab.filter.find_label_issues`` with its defaults (the optional AGPL extra).
* ``gmm``: the project's own selector (``nlbench.engine.selection.gmm_select``): a two-component GMM on each
  class's out-of-fold cross-entropy losses; the samples not in the low-loss component are flagged.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np

from nlbench.errors import ConfigError

DETECTORS = ("confident-joint", "cleanlab", "gmm")
# Which detector advise uses by default: the one that measured best against the truth in
# benchmarks/advise.py (results/advise.md); cleanlab only where it is installed.
DEFAULT_DETECTOR = "confident-joint"


def cleanlab_available() -> bool:
    return importlib.util.find_spec("cleanlab") is not None


def flag_confident_joint(noisy: np.ndarray, probs: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """(N,) bool: samples flagged by pruning each off-diagonal cell of the calibrated joint ``joint``."""
    noisy = np.asarray(noisy, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n, num_classes = probs.shape
    flagged = np.zeros(n, dtype=bool)
    for i in range(num_classes):
        mine = np.flatnonzero(noisy == i)
        if not len(mine):
            continue
        for j in range(num_classes):
            count = int(round(joint[i, j] * n)) if j != i else 0
            if count <= 0:
                continue
            margins = probs[mine, j] - probs[mine, i]
            flagged[mine[np.argsort(-margins, kind="stable")[:count]]] = True
    flagged &= probs.argmax(1) != noisy
    return flagged


def flag_cleanlab(noisy: np.ndarray, probs: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues  # AGPL, optional: imported only here

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; the mask is what counts
        # n_jobs=1: cleanlab's default worker pool would inherit nlbench's SIGTERM handler and print a traceback
        # per worker when the pool ends; the computation is a few milliseconds anyway.
        return np.asarray(find_label_issues(np.asarray(noisy, dtype=np.int64), np.asarray(probs, dtype=np.float64),
                                            n_jobs=1), dtype=bool)


def flag_gmm(noisy: np.ndarray, probs: np.ndarray, seed: int = 0) -> np.ndarray:
    from nlbench.engine.selection import gmm_select

    noisy = np.asarray(noisy, dtype=np.int64)
    losses = -np.log(np.clip(np.asarray(probs)[np.arange(len(noisy)), noisy], 1e-12, 1.0))
    clean, _ = gmm_select(losses, noisy, probs.shape[1], seed=seed)
    return ~np.asarray(clean, dtype=bool)


def flag(detector: str, noisy: np.ndarray, probs: np.ndarray, joint: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) bool mask of likely-mislabelled samples by ``detector``."""
    if detector == "confident-joint":
        return flag_confident_joint(noisy, probs, joint)
    if detector == "cleanlab":
        if not cleanlab_available():
            raise ConfigError("detector 'cleanlab' needs cleanlab: pip install 'nlbench[cl]' (AGPL-3.0); "
                              f"or choose one of: {', '.join(d for d in DETECTORS if d != 'cleanlab')}")
        return flag_cleanlab(noisy, probs)
    if detector == "gmm":
        return flag_gmm(noisy, probs, seed)
    raise ConfigError(f"unknown detector {detector!r}; expected one of: {', '.join(DETECTORS)}")


def suspicion(noisy: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, suggested label, its probability): score = 1 − p̂(given label), the probe's probability that the
    given label is wrong; the suggestion is the most probable other class."""
    noisy = np.asarray(noisy, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(noisy))
    score = 1.0 - probs[rows, noisy]
    others = probs.copy()
    others[rows, noisy] = -np.inf
    suggested = others.argmax(1)
    return score, suggested, probs[rows, suggested]


def detection_scores(flagged: np.ndarray, truly_wrong: np.ndarray) -> dict:
    """Precision, recall and F1 of a flagged set against the true mislabelled mask (benchmarks, tests)."""
    flagged, truly_wrong = np.asarray(flagged, dtype=bool), np.asarray(truly_wrong, dtype=bool)
    tp = int((flagged & truly_wrong).sum())
    precision = tp / flagged.sum() if flagged.sum() else (1.0 if not truly_wrong.any() else 0.0)
    recall = tp / truly_wrong.sum() if truly_wrong.sum() else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "flagged": int(flagged.sum())}
