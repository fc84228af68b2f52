"""Semi-supervised formulas shared by DivideMix and UNICON, and the checks and schedule of their shared options
(``check_semisup_fields``, ``resolve_schedule``).

Formulas (B labelled, B_u unlabelled samples, C classes):

- sharpen(p, T)_c = p_c^{1/T} / Σ_j p_j^{1/T}  (MixMatch, Berthelot et al. 2019)
- co-refinement: ȳ = w·y + (1 − w)·p̄, p̄ the network's own prediction averaged over M augmented views,
  w the clean probability from the *other* network's division; target = sharpen(ȳ, T) (DivideMix Eq. 3-4)
- co-guessing: q̄ = mean of both networks' predictions over M views of an unlabelled sample;
  target = sharpen(q̄, T) (DivideMix Eq. 5)
- MixMatch mixup: λ ~ Beta(α, α), λ' = max(λ, 1 − λ), x' = λ' x_a + (1 − λ') x_b (DivideMix Eq. 6-8), so
  a mixed sample stays closer to its first member
- L_X = −mean_b Σ_c t_bc log softmax(z_b)_c; L_U = mean over samples *and classes* of (softmax(z) − t)²
  (MixMatch's 1/(C·|U'|) normalisation, which the λ_u values of both papers are tuned with)
- uniform prior L_reg = Σ_c π_c log(π_c / p̄_c), π_c = 1/C, p̄ the batch-mean prediction (DivideMix Eq. 11)
- confidence penalty (warm-up, asymmetric noise) −H(p) = mean_b Σ_c p_bc log p_bc (DivideMix §3.3)
- contrastive loss (SimCLR NT-Xent, UNICON Eq. 8): for 2B L2-normalised embeddings of two views,
  ℓ_i = −log exp(s_{i,j(i)}/κ) / Σ_{a≠i} exp(s_{i,a}/κ), averaged over all 2B anchors
- λ_u ramp: λ_u · clip((t − warm-up) / ramp, 0, 1), t in fractional epochs (reference code of both)

The two-network plumbing that uses them is ``nlbench.engine.network_pair``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.errors import ConfigError

if TYPE_CHECKING:
    from nlbench.engine.method_api import CellContext


# --------------------------------------------------------------------------- formulas
def sharpen(p: torch.Tensor, T: float) -> torch.Tensor:
    """(B, C) → (B, C): temperature sharpening p^{1/T} renormalised per row."""
    pt = p.clamp_min(0) ** (1.0 / T)
    return pt / pt.sum(1, keepdim=True)


def co_refine(labels_onehot: torch.Tensor, w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(B, C): w·y + (1 − w)·p with w (B,) or (B, 1) the clean probability (before sharpening)."""
    w = w.reshape(-1, 1).to(p.dtype)
    return w * labels_onehot + (1.0 - w) * p


def co_guess(probs: list[torch.Tensor]) -> torch.Tensor:
    """(B, C): the mean of several (B, C) predictions (both networks × M views; before sharpening)."""
    return torch.stack(probs).mean(0)


def mixup_lambda(alpha: float, rng: np.random.Generator) -> float:
    """λ' = max(λ, 1 − λ), λ ~ Beta(α, α): MixMatch's mixing weight, always ≥ 0.5."""
    lam = float(rng.beta(alpha, alpha))
    return max(lam, 1.0 - lam)


def mix(inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each row with row ``perm[i]``: λ'·a + (1 − λ')·a[perm] for inputs and targets alike."""
    return lam * inputs + (1.0 - lam) * inputs[perm], lam * targets + (1.0 - lam) * targets[perm]


def semi_losses(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor,
                targets_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_X, L_U): soft cross-entropy on the mixed labelled part, mean squared error on the mixed
    unlabelled part (mean over samples and classes; 0 when there is no unlabelled part)."""
    lx = -(F.log_softmax(logits_x, dim=1) * targets_x).sum(1).mean()
    lu = ((torch.softmax(logits_u, dim=1) - targets_u) ** 2).mean() if len(logits_u) else logits_x.sum() * 0.0
    return lx, lu


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """Σ_c π_c log(π_c / p̄_c) with π uniform and p̄ the mean softmax of the batch: KL(π ‖ p̄) ≥ 0."""
    prior = torch.full((logits.shape[1],), 1.0 / logits.shape[1], device=logits.device)
    mean = torch.softmax(logits, dim=1).mean(0)
    return (prior * torch.log(prior / mean)).sum()


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """mean_b Σ_c p log p: adding it to the warm-up loss penalises confident predictions."""
    p = torch.softmax(logits, dim=1)
    return (p * F.log_softmax(logits, dim=1)).sum(1).mean()


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR NT-Xent of two views (B, d) each: every one of the 2B embeddings (L2-normalised here) has
    its other view as positive and the remaining 2B − 2 as negatives; mean over the 2B anchors."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, positive)


def linear_rampup(current: float, warmup: float, length: float, lambda_u: float) -> float:
    """λ_u · clip((current − warmup) / length, 0, 1); ``current`` in fractional epochs."""
    if length <= 0:
        return lambda_u if current >= warmup else 0.0
    return lambda_u * float(np.clip((current - warmup) / length, 0.0, 1.0))


def scaled_schedule(epochs: int, *, ref_epochs: int, ref_warmup: int, ref_rampup: float,
                    warmup: int | None, rampup: float | None) -> tuple[int, float]:
    """(warm-up epochs, λ_u ramp length in epochs) for a run of ``epochs``.

    The papers' schedules train from scratch for ``ref_epochs`` with ``ref_warmup`` warm-up epochs and a
    ``ref_rampup``-epoch ramp; here both keep their fraction of the budget: warm-up =
    round(E·ref_warmup/ref_epochs) clipped to [1, E − 1] (E ≥ 2), ramp = E·ref_rampup/ref_epochs.
    Explicit values win.
    """
    if warmup is None:
        warmup = round(epochs * ref_warmup / ref_epochs)
        warmup = max(1, min(warmup, epochs - 1)) if epochs >= 2 else epochs
    if rampup is None:
        rampup = epochs * ref_rampup / ref_epochs
    return int(warmup), float(rampup)


def onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels, num_classes).float()


def check_unit_interval(name: str, value: float, method: str) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{method} {name} must lie in (0, 1); got {value}")


# --------------------------------------------------------------------------- options and schedule
def check_semisup_fields(method: Any, name: str) -> None:
    """Ranges of the fields DivideMix and UNICON share (T, alpha, lambda_u, views, epochs, warmup_epochs,
    rampup_epochs, and loss_window where the method has it); raise ConfigError naming ``name``."""
    if method.T <= 0:
        raise ConfigError(f"{name} T must be > 0; got {method.T}")
    if method.alpha <= 0:
        raise ConfigError(f"{name} alpha must be > 0; got {method.alpha}")
    if method.lambda_u is not None and method.lambda_u < 0:
        raise ConfigError(f"{name} lambda_u must be ≥ 0; got {method.lambda_u}")
    if method.views < 1:
        raise ConfigError(f"{name} views (K) must be ≥ 1; got {method.views}")
    if method.epochs is not None and method.epochs < 1:
        raise ConfigError(f"{name} epochs must be ≥ 1; got {method.epochs}")
    if method.warmup_epochs is not None and method.warmup_epochs < 0:
        raise ConfigError(f"{name} warmup_epochs must be ≥ 0; got {method.warmup_epochs}")
    if method.warmup_epochs is not None and method.epochs is not None and method.warmup_epochs >= method.epochs:
        raise ConfigError(f"{name} warmup_epochs ({method.warmup_epochs}) must be < epochs ({method.epochs})")
    if method.rampup_epochs is not None and method.rampup_epochs < 0:
        raise ConfigError(f"{name} rampup_epochs must be ≥ 0; got {method.rampup_epochs}")
    if getattr(method, "loss_window", None) is not None and method.loss_window < 1:
        raise ConfigError(f"{name} loss_window must be ≥ 1; got {method.loss_window}")


def resolve_schedule(method: Any, ctx: CellContext, ref_epochs: int, ref_warmup: int, ref_rampup: float, name: str,
                     *, lambda_u: float | None = None) -> tuple[int, int, float, float, bool]:
    """(epochs, warm-up epochs, ramp epochs, λ_u, confidence penalty) of a run, defaults resolved.

    λ_u: the method's field, else ``lambda_u`` (a setting the method resolved itself)."""
    cfg, mode = ctx.engine.config, ctx.mode
    epochs = method.epochs or (cfg.lp_epochs if mode == "lp" else cfg.fft_epochs)
    warmup, rampup = scaled_schedule(epochs, ref_epochs=ref_epochs, ref_warmup=ref_warmup, ref_rampup=ref_rampup,
                                     warmup=method.warmup_epochs, rampup=method.rampup_epochs)
    noise = ctx.noise
    lambda_u = method.lambda_u if method.lambda_u is not None else lambda_u
    if lambda_u is None:
        raise ConfigError(f"{name}: lambda_u must be given")
    penalty = method.confidence_penalty
    if penalty is None:
        penalty = noise is not None and noise.model == "asym"
    if warmup >= epochs:
        ctx.log(f"{name}: warm-up takes all {epochs} epochs; no semi-supervised epoch runs")
    return epochs, warmup, rampup, float(lambda_u), bool(penalty)
