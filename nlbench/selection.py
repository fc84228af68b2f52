"""Clean-sample selection from per-sample losses, shared by TURN, DivideMix and UNICON."""

from __future__ import annotations

import numpy as np

from nlbench.errors import ConfigError


def gmm_clean_probability(losses: np.ndarray, *, seed: int = 0, max_iter: int = 10, tol: float = 1e-2,
                          reg_covar: float = 5e-4) -> np.ndarray:
    """(N,) posterior of the low-mean component of a 2-component GMM fitted to the losses.

    Losses are min-max normalised to [0, 1] first; max_iter, tol and reg_covar are DivideMix's
    reference values. With fewer than two distinct losses there is nothing to split: all get 1.
    """
    from sklearn.mixture import GaussianMixture

    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min() if len(losses) else 0.0
    if len(losses) < 2 or span <= 0:
        return np.ones(len(losses))
    x = ((losses - losses.min()) / span).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed)
    gmm.fit(x)
    clean = int(np.argmin(gmm.means_.ravel()))
    return gmm.predict_proba(x)[:, clean]


def select_clean(
    losses: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    selector: str = "gmm",
    tau: float = 0.5,
    scope: str = "per_class",
    loss_threshold: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(N,) bool mask of samples judged clean.

    selector='gmm': keep a sample when the low-loss component's posterior exceeds ``tau``; the GMM is
    fitted over each class's losses (scope='per_class') or over all samples (scope='global').
    selector='loss': keep a sample when its loss is below ``loss_threshold``.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if selector == "loss":
        if loss_threshold is None:
            raise ConfigError("selector 'loss' needs loss_threshold")
        return losses < loss_threshold
    if selector != "gmm":
        raise ConfigError(f"unknown selector {selector!r}; expected one of: gmm, loss (cl: nlbench[cl])")
    if not 0.0 < tau < 1.0:
        raise ConfigError(f"tau must lie in (0, 1); got {tau}")
    if scope == "global":
        return gmm_clean_probability(losses, seed=seed) > tau
    if scope != "per_class":
        raise ConfigError(f"unknown GMM scope {scope!r}; expected one of: global, per_class")
    mask = np.zeros(len(losses), dtype=bool)
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            mask[idx] = gmm_clean_probability(losses[idx], seed=seed) > tau
    return mask


def balanced_subset(clean: np.ndarray, labels: np.ndarray, num_classes: int, *, rng: np.random.Generator,
                    losses: np.ndarray | None = None, min_per_class: int = 1) -> np.ndarray:
    """Sorted indices of D_clean = ∪_c U(D_clean^c, n), n = min_c |D_clean^c|: a uniform draw of n clean
    samples from each class (the TURN paper's class balance).

    A class with fewer than ``min_per_class`` clean samples (say, none) would make n = 0 and empty the
    set; such a class is topped up with its lowest-loss samples (``losses`` needed) so that
    n ≥ ``min_per_class`` wherever the class has that many samples.
    """
    pools = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) == 0:
            continue
        pool = np.flatnonzero(clean & (labels == c))
        if len(pool) < min_per_class and losses is not None:
            pool = members[np.argsort(losses[members], kind="stable")[: min(min_per_class, len(members))]]
        pools.append(pool)
    n = min(len(p) for p in pools) if pools else 0
    chosen = [rng.choice(p, size=n, replace=False) for p in pools]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
