"""Clean-sample selection, shared by TURN, DivideMix, UNICON and confident learning.

GMM posterior over per-sample losses (DivideMix, TURN), a loss threshold, confident learning via
cleanlab (optional, AGPL-3.0: ``pip install nlbench[cl]``) on out-of-fold linear-probe probabilities (CL,
TURN's selector='cl'), and UNICON's Jensen-Shannon divergence with its per-class uniform quota.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from nlbench.engine.losses import cross_entropy
from nlbench.errors import ConfigError

if TYPE_CHECKING:
    from nlbench.engine.train import Criterion, Trainer

CL_MISSING = ("confident learning needs the optional package cleanlab (AGPL-3.0, kept out of the core): "
              "pip install nlbench[cl]")


# DivideMix's EM settings (Train_cifar.py eval_train): stopped after 10 iterations or at tol 1e-2.
DIVIDEMIX_EM = {"max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4}


@dataclass(frozen=True)
class GMMFit:
    """A 2-component GMM fitted to per-sample losses: the low-mean component's posterior of each sample,
    and how EM ended (``n_iter`` iterations; ``converged`` when the lower-bound gain fell below tol).
    A degenerate input (fewer than two distinct losses) is not fitted: n_iter 0, converged True."""

    posterior: np.ndarray
    n_iter: int
    converged: bool

    def summary(self) -> dict:
        """What a run record keeps of the fit."""
        return {"n_iter": self.n_iter, "converged": self.converged}


def fit_loss_gmm(losses: np.ndarray, *, seed: int = 0, max_iter: int = DIVIDEMIX_EM["max_iter"],
                 tol: float = DIVIDEMIX_EM["tol"], reg_covar: float = DIVIDEMIX_EM["reg_covar"]) -> GMMFit:
    """Fit a 2-component GMM to the losses, min-max normalised to [0, 1] first.

    The defaults are DivideMix's reference values; a fit run to convergence takes larger max_iter and
    smaller tol. With fewer than two distinct losses there is nothing to split: all get posterior 1.
    """
    from sklearn.exceptions import ConvergenceWarning  # scikit-learn: heavy, for GMM selection only
    from sklearn.mixture import GaussianMixture

    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min() if len(losses) else 0.0
    if len(losses) < 2 or span <= 0:
        return GMMFit(np.ones(len(losses)), 0, True)
    x = ((losses - losses.min()) / span).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar, random_state=seed)
    with warnings.catch_warnings():
        # An unconverged stop is recorded in GMMFit.converged (DivideMix's max_iter = 10 stops often, by design).
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(x)
    clean = int(np.argmin(gmm.means_.ravel()))
    return GMMFit(gmm.predict_proba(x)[:, clean], int(gmm.n_iter_), bool(gmm.converged_))


def gmm_clean_probability(losses: np.ndarray, *, seed: int = 0, max_iter: int = DIVIDEMIX_EM["max_iter"],
                          tol: float = DIVIDEMIX_EM["tol"], reg_covar: float = DIVIDEMIX_EM["reg_covar"]
                          ) -> np.ndarray:
    """(N,) posterior of the low-mean component of ``fit_loss_gmm`` (DivideMix's EM settings by default)."""
    return fit_loss_gmm(losses, seed=seed, max_iter=max_iter, tol=tol, reg_covar=reg_covar).posterior


def gmm_select(losses: np.ndarray, labels: np.ndarray, num_classes: int, *, tau: float = 0.5,
               scope: str = "per_class", seed: int = 0, **em: float) -> tuple[np.ndarray, list[GMMFit]]:
    """((N,) bool mask of posterior > ``tau``, the GMM fits made): one GMM over each class's losses
    (scope='per_class', fits in class order, a class without samples skipped) or one over all
    (scope='global'). ``em``: max_iter, tol, reg_covar of ``fit_loss_gmm``."""
    if not 0.0 < tau < 1.0:
        raise ConfigError(f"tau must lie in (0, 1); got {tau}")
    losses = np.asarray(losses, dtype=np.float64)
    if scope == "global":
        fit = fit_loss_gmm(losses, seed=seed, **em)
        return fit.posterior > tau, [fit]
    if scope != "per_class":
        raise ConfigError(f"unknown GMM scope {scope!r}; expected one of: global, per_class")
    mask = np.zeros(len(losses), dtype=bool)
    fits = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            fits.append(fit_loss_gmm(losses[idx], seed=seed, **em))
            mask[idx] = fits[-1].posterior > tau
    return mask, fits


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
    pred_probs: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) bool mask of samples judged clean.

    selector='gmm': keep a sample when the low-loss component's posterior exceeds ``tau``; the GMM is
    fitted over each class's losses (scope='per_class') or over all samples (scope='global').
    selector='loss': keep a sample when its loss is below ``loss_threshold``.
    selector='cl': confident learning (``confident_clean``) on ``pred_probs`` (N, C), which must be
    out-of-sample predicted probabilities (e.g. K-fold); ``losses`` are then unused.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if selector == "loss":
        if loss_threshold is None:
            raise ConfigError("selector 'loss' needs loss_threshold")
        return losses < loss_threshold
    if selector == "cl":
        if pred_probs is None:
            raise ConfigError("selector 'cl' needs out-of-fold predicted probabilities (pred_probs)")
        return confident_clean(labels, pred_probs)
    if selector != "gmm":
        raise ConfigError(f"unknown selector {selector!r}; expected one of: cl, gmm, loss")
    return gmm_select(losses, labels, num_classes, tau=tau, scope=scope, seed=seed)[0]


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


# ------------------------------------------------------------------ confident learning (cleanlab)
def require_cleanlab() -> None:
    """Raise ConfigError with the install hint when cleanlab is missing (checked without importing it)."""
    if importlib.util.find_spec("cleanlab") is None:
        raise ConfigError(CL_MISSING)


CL_FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


def confident_clean(labels: np.ndarray, pred_probs: np.ndarray, *,
                    filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """(N,) bool mask of samples confident learning keeps (Northcutt, Jiang, Chuang, JAIR 2021).

    labels: (N,) given (noisy) labels; pred_probs: (N, C) out-of-sample predicted probabilities, rows
    summing to 1. Calls ``cleanlab.filter.find_label_issues`` (its default ``filter_by``) and keeps
    the samples it does not flag. cleanlab is imported here, lazily: it is AGPL-3.0 and optional.
    """
    if filter_by not in CL_FILTERS:
        raise ConfigError(f"unknown cleanlab filter_by {filter_by!r}; expected one of: {', '.join(CL_FILTERS)}")
    require_cleanlab()
    from cleanlab.filter import find_label_issues  # cleanlab: optional (AGPL, the `cl` extra)

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(f"pred_probs must be (N, C) with N = {len(labels)}; got {pred_probs.shape}")
    # n_jobs=1: cleanlab's default forks a process pool (one per core) inside a process that already runs
    # torch's threads; a fork there can deadlock on a lock copied held (a Fashion-MNIST cell hung so), and the
    # pool's workers would inherit nlbench's SIGTERM handler. One process gives the same flags.
    issues = find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1)
    return ~np.asarray(issues, dtype=bool)


def out_of_fold_probs(trainer: Trainer, *, folds: int = 5, epochs: int | None = None,
                      criterion: Criterion = cross_entropy) -> np.ndarray:
    """(N, C) out-of-fold predicted probabilities of linear probes on the cached view-0 features.

    The training set is split into ``folds`` stratified (by noisy label), seeded folds; for each, a fresh
    linear head is trained on the other folds with ``criterion`` and the engine's LP recipe (optimiser,
    learning rate, batch size, schedule; ``epochs`` defaults to lp_epochs) and predicts its held-out
    fold. No backbone pass beyond the feature cache.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(trainer.labels)
    counts = np.bincount(labels, minlength=trainer.num_classes)
    # Stratify where every present class can fill every fold; otherwise plain shuffled folds.
    splitter = (StratifiedKFold if counts[counts > 0].min() >= folds else KFold)(
        n_splits=folds, shuffle=True, random_state=trainer.seed)
    probs = np.zeros((trainer.num_train, trainer.num_classes))
    for fold, (fit_idx, held_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fit = trainer.linear_probe(criterion, epochs=epochs, index=fit_idx, desc=f"CL fold {fold}")
        logits = trainer.probe_logits(fit.model, "train")[torch.as_tensor(held_idx, device=trainer.device)]
        probs[held_idx] = torch.softmax(logits, 1).cpu().numpy()
    return probs


def cl_select(trainer: Trainer, *, folds: int = 5, epochs: int | None = None, criterion: Criterion = cross_entropy,
              filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """(N,) bool mask confident learning keeps, from out-of-fold probe probabilities."""
    probs = out_of_fold_probs(trainer, folds=folds, epochs=epochs, criterion=criterion)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; the mask is what counts
        return confident_clean(trainer.labels, probs, filter_by=filter_by)


# ------------------------------------------------------------------ UNICON: JSD + uniform selection
# UNICON's options where its paper and its code (github.com/nazmul-karim170/UNICON-Noisy-Label) disagree;
# the first of each is the code's, the default (docs/fidelity.md).
JSD_BASES = {"e": math.e, "2": 2.0}
UNICON_CUTOFFS = ("mean", "adaptive")
UNICON_WEIGHT_RULES = ("reference", "paper")
# Train_cifar.py's co-refinement: divergences below this (in the JSD's own unit) count as 0.
REFERENCE_WEIGHT_FLOOR = 0.5


def jsd_to_labels(probs: np.ndarray, labels: np.ndarray, *, base: float = math.e) -> np.ndarray:
    """(N,) Jensen-Shannon divergence between each prediction (N, C) and its one-hot given label.

    JSD(y, p) = ½ KL(y ‖ m) + ½ KL(p ‖ m), m = (y + p) / 2 (UNICON, Karim et al., CVPR 2022, Eq. 1).
    ``base`` e (the reference code's natural logs, the default) bounds it by ln 2 ≈ 0.693; base 2 (the
    paper's reading) by 1. Terms with a zero factor count as 0 (0·log 0 = 0).
    """
    labels = np.asarray(labels, dtype=np.int64)
    out = np.empty(len(probs), dtype=np.float64)
    # In row chunks: the float64 temporaries are (rows, C) each, not (N, C) (a million samples × 100
    # classes would be 0.8 GB per temporary); every row's arithmetic is unchanged.
    for start in range(0, len(probs), _JSD_CHUNK):
        p = np.asarray(probs[start : start + _JSD_CHUNK], dtype=np.float64)
        y = np.zeros_like(p)
        y[np.arange(len(p)), labels[start : start + _JSD_CHUNK]] = 1.0
        m = 0.5 * (p + y)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_y = np.where(y > 0, y * np.log(y / m), 0.0).sum(1)
            kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum(1)
        out[start : start + len(p)] = (0.5 * (kl_y + kl_p)) / np.log(base)
    return out


_JSD_CHUNK = 65_536


def unicon_selection_ratio(jsd: np.ndarray, *, d_u: float, tau: float, cutoff: str = "adaptive"
                           ) -> tuple[float, float]:
    """(cutoff, selection ratio) of UNICON's uniform selection.

    cutoff='adaptive' (the paper): d_cutoff = d_avg − (d_avg − d_min)/τ when the average divergence
    d_avg exceeds d_u (heavy noise: select fewer), else d_avg. cutoff='mean': d_cutoff = d_avg always,
    what the reference code does (its adaptive branch needs d_avg > d_u = 0.7, which JSD in nats, bounded
    by ln 2, never reaches; the branch would also fail on an undefined name). The selection ratio is the
    fraction of samples with d < d_cutoff (one minus UNICON's filter rate R).
    """
    jsd = np.asarray(jsd, dtype=np.float64)
    if cutoff not in UNICON_CUTOFFS:
        raise ConfigError(f"unknown UNICON cutoff {cutoff!r}; expected one of: {', '.join(UNICON_CUTOFFS)}")
    if not 0.0 < d_u < 1.0:
        raise ConfigError(f"UNICON d_u must lie in (0, 1); got {d_u}")
    if tau < 1.0:
        raise ConfigError(f"UNICON tau must be ≥ 1; got {tau}")
    avg = float(jsd.mean())
    value = avg - (avg - float(jsd.min())) / tau if cutoff == "adaptive" and avg > d_u else avg
    return value, float((jsd < value).mean())


def refinement_weights(jsd: np.ndarray, rule: str = "reference") -> np.ndarray:
    """Co-refinement weights w of labelled samples from their divergences d.

    rule='reference' (the code, dataloader_cifar.py): d < 0.5 is set to 0 first, so w = 1 there and
    w = 1 − d above; rule='paper': w = 1 − d.
    """
    if rule not in UNICON_WEIGHT_RULES:
        raise ConfigError(f"unknown UNICON weight_rule {rule!r}; expected one of: {', '.join(UNICON_WEIGHT_RULES)}")
    d = np.asarray(jsd, dtype=np.float64)
    if rule == "reference":
        d = np.where(d < REFERENCE_WEIGHT_FLOOR, 0.0, d)
    return 1.0 - d


def uniform_selection(jsd: np.ndarray, labels: np.ndarray, num_classes: int, ratio: float) -> np.ndarray:
    """Sorted indices of UNICON's class-uniform clean set: from every class the ⌊ratio·N/C⌋ samples with
    the lowest divergence (all of a class's samples when it holds fewer). Ties keep index order."""
    jsd = np.asarray(jsd, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    quota = int(ratio * len(jsd) / num_classes)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        chosen.append(members[np.argsort(jsd[members], kind="stable")[:quota]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
