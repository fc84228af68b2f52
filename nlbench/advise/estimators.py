"""The noise and clean-accuracy estimators of ``nlbench advise``: plain numpy on out-of-fold predictions.

Conventions: ``noisy`` (N,) are the given labels ỹ, ``probs`` (N, C) out-of-fold predicted probabilities
of a probe that never saw the sample, ``preds`` (N,) a candidate's out-of-fold predicted classes.

* ``confident_joint`` / ``calibrated_joint``: confident learning (Northcutt, Jiang & Chuang, JAIR 2021,
  §3.1): per-class thresholds t_j = mean p̂_j over the samples labelled j; a sample labelled i counts in
  C[i, j] for the class j of highest p̂ among those at or above their threshold; the rows are rescaled to the
  given label counts and the whole to 1, giving Q[i, j] ≈ P(ỹ = i, y = j). Overall noise rate 1 − trace(Q).
* ``transition_from_joint``: T[i, j] = P(ỹ = j | y = i) = Q[j, i] / Σ_k Q[k, i].
* ``anchor_mean_transition`` (the default noise estimator, ``estimate_joint``): the probe's out-of-fold
  probabilities are first temperature-scaled to the given labels (one scalar fitted by their log-loss, so p̂
  estimates P(ỹ | x)); T's row i is then the mean p̂ over the images whose p̂_i is in its top 3 % (the anchor
  points of class i, Patrini et al., CVPR 2017, take the 97th percentile; the mean of the top 3 % rather than
  the one image at the percentile is steadier on small data); the clean prior π is the given labels' prior
  (``clean_prior``) and Q[i, j] = π_j T[j, i]. It assumes class-conditional noise and
  that the probe's most confident images of each class are of that class; unlike the confident joint it does
  not count the probe's mistakes on hard images as label errors, which made the confident joint run 9-17
  points high with a weak probe (results/advise.md).
* ``clean_joint`` / ``clean_accuracy``: under class-conditional noise (ỹ independent of the input, hence of
  a held-out prediction f, given y), N[j, k] = P(ỹ = j, f = k) = Σ_i P(y = i, f = k) T[i, j], i.e. N = Tᵀ M
  with M[i, k] = P(y = i, f = k); so M = T⁻ᵀ N and the clean accuracy is trace(M). It breaks where the noise
  depends on the image (then ỹ and f are dependent given y) and where T is near-singular (T⁻ᵀ amplifies the
  sampling error of N: the condition number is reported).
* Intervals (``nlbench.advise.pipeline``): 90 % percentile bootstrap over the images, stratified by given label
  (each out-of-fold prediction is one draw; folds are disjoint, so resampling images resamples every fold);
  ``wilson`` for the trusted-label proportions.
"""

from __future__ import annotations

import numpy as np

CONDITION_LIMIT = 50.0  # above this condition number of T, T⁻ᵀN is flagged as unreliable
NOISE_ESTIMATORS = ("anchor", "confident-joint")
DEFAULT_NOISE_ESTIMATOR = "anchor"
CONSISTENCY_MARGIN = 0.02  # how far the probe's trace(T⁻ᵀN) may leave [0, 1] before T is called contradicted
ANCHOR_TOP_SHARE = 0.03  # Patrini et al.'s 97th percentile


def confident_joint(noisy: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(C, C) counts C[i, j]: samples labelled i whose confidently predicted class is j (unnormalised)."""
    noisy = np.asarray(noisy, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for j in range(num_classes):
        mine = noisy == j
        if mine.any():
            thresholds[j] = probs[mine, j].mean()
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -np.inf)
    confident = masked.argmax(1)
    counted = above.any(1)
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (noisy[counted], confident[counted]), 1.0)
    return joint


def calibrated_joint(noisy: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Q[i, j] ≈ P(ỹ = i, y = j): the confident joint with each row rescaled to the number of samples
    labelled i (a row without confident samples keeps its samples on the diagonal), normalised to sum 1."""
    joint = confident_joint(noisy, probs)
    num_classes = joint.shape[0]
    given = np.bincount(np.asarray(noisy, dtype=np.int64), minlength=num_classes).astype(np.float64)
    rows = joint.sum(1)
    out = np.zeros_like(joint)
    for i in range(num_classes):
        if rows[i] > 0:
            out[i] = joint[i] / rows[i] * given[i]
        else:
            out[i, i] = given[i]
    return out / out.sum()


def transition_from_joint(joint: np.ndarray) -> np.ndarray:
    """T[i, j] = P(ỹ = j | y = i) from Q[i, j] = P(ỹ = i, y = j); a true class with no mass gets the identity row."""
    joint = np.asarray(joint, dtype=np.float64)
    prior = joint.sum(0)
    t = np.eye(len(joint))
    for i in range(len(joint)):
        if prior[i] > 0:
            t[i] = joint[:, i] / prior[i]
    return t


def temperature_scale(noisy: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, float]:
    """(probs ** (1/τ) renormalised, τ): the one temperature τ in [0.05, 20] minimising the log-loss of the given
    labels, so that out-of-fold probabilities of an under- or over-confident probe estimate P(ỹ | x)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    noisy = np.asarray(noisy, dtype=np.int64)
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))
    rows = np.arange(len(noisy))

    def loss(tau: float) -> float:
        return float(-log_softmax(logits / tau, axis=1)[rows, noisy].mean())

    tau = float(minimize_scalar(loss, bounds=(0.05, 20.0), method="bounded").x)
    return np.exp(log_softmax(logits / tau, axis=1)), tau


def anchor_mean_transition(probs: np.ndarray, top_share: float = ANCHOR_TOP_SHARE) -> np.ndarray:
    """T[i, :] = mean of ``probs`` over the images whose probs[:, i] is among the top ``top_share`` of all images
    (at least one): the anchor points of class i, averaged."""
    probs = np.asarray(probs, dtype=np.float64)
    n, c = probs.shape
    k = max(1, int(round(top_share * n)))
    t = np.empty((c, c))
    for i in range(c):
        top = np.argpartition(-probs[:, i], k - 1)[:k]
        t[i] = probs[top].mean(0)
    return t / t.sum(1, keepdims=True)


def clean_prior(transition: np.ndarray, noisy: np.ndarray, *, solve: bool = False) -> np.ndarray:
    """The clean class prior π the anchor estimate weights T's rows with: the given labels' prior, or with
    ``solve`` the π with Tᵀπ = that prior (non-negative least squares, normalised; uniform if nothing fits).
    Solving inverts the estimated T and amplifies its error (measured by benchmarks/advise_estimators.py), so
    advise takes the given labels' prior, which noise that moves labels between classes evenly leaves unchanged."""
    t = np.asarray(transition, dtype=np.float64)
    given = np.bincount(np.asarray(noisy, dtype=np.int64), minlength=len(t)) / max(1, len(noisy))
    if not solve:
        return given
    from scipy.optimize import nnls

    prior = nnls(t.T, given)[0]
    return prior / prior.sum() if prior.sum() > 0 else np.full(len(t), 1.0 / len(t))


def joint_from_transition(transition: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Q[i, j] = P(ỹ = i, y = j) = π_j T[j, i]."""
    return (np.asarray(prior, dtype=np.float64)[:, None] * np.asarray(transition, dtype=np.float64)).T


def estimate_joint(noisy: np.ndarray, probs: np.ndarray, estimator: str = DEFAULT_NOISE_ESTIMATOR, *,
                   calibrated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, T) by ``estimator``: "anchor" (temperature-scaled anchor points; ``calibrated`` skips the scaling when
    the caller has the scaled probabilities) or "confident-joint"."""
    if estimator == "confident-joint":
        joint = calibrated_joint(noisy, probs)
        return joint, transition_from_joint(joint)
    if estimator != "anchor":
        raise ValueError(f"noise estimator {estimator!r}; expected one of: {', '.join(NOISE_ESTIMATORS)}")
    scaled = calibrated if calibrated is not None else temperature_scale(noisy, probs)[0]
    t = anchor_mean_transition(scaled)
    return joint_from_transition(t, clean_prior(t, noisy)), t


def noise_rate(joint: np.ndarray) -> float:
    """Share of samples whose given label differs from the true one: 1 − trace(Q)."""
    return float(1.0 - np.trace(joint) / np.sum(joint))


def prediction_joint(noisy: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """N[j, k] = P(ỹ = j, f = k): the empirical joint of given label and held-out prediction."""
    out = np.zeros((num_classes, num_classes))
    np.add.at(out, (np.asarray(noisy, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1.0)
    return out / max(1, len(noisy))


def clean_joint(transition: np.ndarray, noisy_joint: np.ndarray) -> np.ndarray:
    """M = T⁻ᵀ N: the joint of (true label, prediction) under class-conditional noise (solved, not inverted; a
    singular T, where a class's labels carry no information about it, gets the least-squares solution, and its
    condition number says the estimate is unreliable)."""
    t = np.asarray(transition, dtype=np.float64).T
    n = np.asarray(noisy_joint, dtype=np.float64)
    try:
        return np.linalg.solve(t, n)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(t, n, rcond=None)[0]


def clean_accuracy(transition: np.ndarray, noisy_joint: np.ndarray) -> float:
    """trace(T⁻ᵀ N), clipped to [0, 1]."""
    return float(np.clip(clean_accuracy_raw(transition, noisy_joint), 0.0, 1.0))


def clean_accuracy_raw(transition: np.ndarray, noisy_joint: np.ndarray) -> float:
    """trace(T⁻ᵀ N) unclipped: outside [0, 1] the estimated T cannot have produced this candidate's agreement with
    the given labels (typically T overstates the noise), and the clipped estimate is a bound, not an estimate."""
    return float(np.trace(clean_joint(transition, noisy_joint)))


def condition_number(transition: np.ndarray) -> float:
    """2-norm condition number of T (capped at 1e300, so JSON holds it): how much T⁻ᵀ amplifies the sampling
    error of N."""
    with np.errstate(all="ignore"):
        value = float(np.linalg.cond(np.asarray(transition, dtype=np.float64)))
    return value if np.isfinite(value) else 1e300


def consistency_problems(transition: np.ndarray, noisy: np.ndarray, probe_preds: np.ndarray,
                         class_names: list[str]) -> list[str]:
    """What in an estimated T contradicts the data or its own assumptions, in words (empty: nothing found).

    1. A row whose diagonal is not its largest entry: the given label of that class is wrong more often than some
       other label is given, so the classes are not identifiable there (or the probe cannot tell them apart).
    2. The probe's own trace(T⁻ᵀN) outside [0, 1]: no clean labelling explains the probe's agreement with the
       given labels under this T, so T misstates the noise (typically a probe near chance makes it look huge), by
       more than ``CONSISTENCY_MARGIN`` (an accurate probe's estimate lands near 1, and sampling error may pass
       it)."""
    out = []
    t = np.asarray(transition, dtype=float)
    off = t - np.diag(np.full(len(t), np.inf))
    weak = [class_names[i] for i in range(len(t)) if t[i, i] <= off[i].max()]
    if weak:
        out.append(f"in the estimated T the given label is not the most likely one for true class"
                   f"{'es' if len(weak) > 1 else ''} {', '.join(weak)}: the noise is not identifiable there "
                   "(more wrong labels than right ones, or a probe that cannot tell those classes apart)")
    raw = clean_accuracy_raw(t, prediction_joint(noisy, probe_preds, len(t)))
    if not -CONSISTENCY_MARGIN <= raw <= 1.0 + CONSISTENCY_MARGIN:
        out.append(f"the estimated T cannot have produced the probe's own agreement with the given labels "
                   f"(its trace(T⁻ᵀN) is {raw:.2f}, outside [0, 1]): the estimate contradicts the data")
    return out


def per_class_noise(joint: np.ndarray) -> np.ndarray:
    """(C,) share of the samples labelled i whose true class is another: 1 − Q[i, i] / Σ_j Q[i, j]."""
    rows = joint.sum(1)
    return np.where(rows > 0, 1.0 - np.diag(joint) / np.where(rows > 0, rows, 1.0), 0.0)


def confused_pairs(joint: np.ndarray, num_samples: int, k: int = 10) -> list[dict]:
    """The ``k`` largest off-diagonal cells of Q: (given, true, share of all samples, estimated count)."""
    off = np.array(joint, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    order = np.argsort(off, axis=None)[::-1][:k]
    out = []
    for flat in order:
        i, j = np.unravel_index(flat, off.shape)
        if off[i, j] <= 0:
            break
        out.append({"given": int(i), "true": int(j), "share": float(off[i, j]),
                    "count": int(round(off[i, j] * num_samples))})
    return out


def wilson(successes: int, trials: int, level: float = 0.9) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (the trusted-label estimates)."""
    from scipy.stats import norm

    if trials == 0:
        return 0.0, 1.0
    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def trusted_transition(true: np.ndarray, noisy: np.ndarray, prior_transition: np.ndarray, *,
                       strength: float = 20.0) -> np.ndarray:
    """T calibrated by trusted labels: per true class i, the trusted rows' counts of given labels blended
    with the prior estimate's row as ``strength`` pseudo-counts: (counts_i + s · T̂_i) / (n_i + s)."""
    num_classes = len(prior_transition)
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (np.asarray(true, dtype=np.int64), np.asarray(noisy, dtype=np.int64)), 1.0)
    n = counts.sum(1, keepdims=True)
    return (counts + strength * prior_transition) / (n + strength)
