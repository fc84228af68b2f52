"""Small-loss selection of two networks (Co-teaching, Co-teaching+, JoCoR): the forget-rate schedule, the
exchange of small-loss samples, the disagreement filter and JoCoR's joint loss, as pure functions.

Sources: Co-teaching (Han et al., NeurIPS 2018; github.com/bhanML/Co-teaching, loss.py and main.py),
Co-teaching+ (Yu et al., ICML 2019; github.com/xingruiyu/coteaching_plus, loss.py), JoCoR (Wei et al., CVPR
2020; github.com/hongxin001/JoCoR, algorithm/loss.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.errors import ConfigError

# 'code': the official codes' table np.linspace(0, τ, T_k) followed by τ, read at index epoch + 1 (their
# training loop runs epochs 1 .. n_epoch − 1 after evaluating the untrained networks at epoch 0).
# 'paper': R(T) = 1 − min(T/T_k · τ, τ) with T the epochs already trained (0 for the first epoch).
FORGET_SCHEDULES = ("code", "paper")

# The reference budget the codes' T_k = num_gradual = 10 belongs to: n_epoch = 200 (all three codes).
REF_EPOCHS, REF_NUM_GRADUAL = 200, 10


def forget_rate(epoch: int, tau: float, num_gradual: int, schedule: str = "code") -> float:
    """Fraction of each batch dropped as large-loss in 0-based training ``epoch`` (1 − R(T))."""
    if schedule not in FORGET_SCHEDULES:
        raise ConfigError(f"unknown forget schedule {schedule!r}; expected one of: {', '.join(FORGET_SCHEDULES)}")
    if num_gradual < 1:
        raise ConfigError(f"num_gradual (T_k) must be ≥ 1; got {num_gradual}")
    if schedule == "paper":
        return float(min(epoch / num_gradual, 1.0) * tau)
    index = epoch + 1
    if index >= num_gradual:
        return float(tau)
    return float(np.linspace(0.0, tau, num_gradual)[index])


def scaled_num_gradual(epochs: int, num_gradual: int | None = None) -> int:
    """T_k for a run of ``epochs``: given, or the codes' 10 of 200 epochs keeping its share of the budget
    (round(E/20), at least 1) — the rule DivideMix's warm-up is scaled by in this repository."""
    if num_gradual is not None:
        return int(num_gradual)
    return max(1, round(epochs * REF_NUM_GRADUAL / REF_EPOCHS))


def num_remember(batch_size: int, forget: float) -> int:
    """Samples kept of a batch: int((1 − forget)·B), as the codes truncate; all of them where that is 0
    (Co-teaching+'s loss.py: an empty selection would leave nothing to train on)."""
    kept = int((1.0 - forget) * batch_size)
    return batch_size if kept == 0 else kept


def small_loss_indices(losses: torch.Tensor, forget: float) -> torch.Tensor:
    """Positions (in the batch) of the ``num_remember`` smallest losses, smallest first (a stable sort: ties
    keep batch order)."""
    order = torch.argsort(losses.detach(), stable=True)
    return order[: num_remember(len(losses), forget)]


def coteaching_exchange(loss_1: torch.Tensor, loss_2: torch.Tensor, forget: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch positions network 1 trains on, positions network 2 trains on): each network picks its
    small-loss samples and its peer trains on them (Co-teaching, Algorithm 1, steps 4-6)."""
    picked_by_1 = small_loss_indices(loss_1, forget)
    picked_by_2 = small_loss_indices(loss_2, forget)
    return picked_by_2, picked_by_1


def disagreement(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the samples whose two predictions (argmax) differ (Co-teaching+'s update set)."""
    return logits_1.argmax(1) != logits_2.argmax(1)


def symmetric_kl(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """(B,) KL(p₂‖p₁) + KL(p₁‖p₂) of the two networks' softmax predictions, differentiable in both (JoCoR's
    co-regularisation: its kl_loss_compute detaches neither side)."""
    log_p1, log_p2 = F.log_softmax(logits_1, 1), F.log_softmax(logits_2, 1)
    p1, p2 = log_p1.exp(), log_p2.exp()
    return (p2 * (log_p2 - log_p1)).sum(1) + (p1 * (log_p1 - log_p2)).sum(1)


def jocor_loss(logits_1: torch.Tensor, logits_2: torch.Tensor, labels: torch.Tensor, co_lambda: float
               ) -> torch.Tensor:
    """(B,) JoCoR's joint loss per sample: (1 − λ)(CE₁ + CE₂) + λ·(KL(p₂‖p₁) + KL(p₁‖p₂))."""
    ce = F.cross_entropy(logits_1, labels, reduction="none") + F.cross_entropy(logits_2, labels, reduction="none")
    return (1.0 - co_lambda) * ce + co_lambda * symmetric_kl(logits_1, logits_2)


def check_forget_rate(value: float, method: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value < 1.0):
        raise ConfigError(f"{method} forget_rate must be a number in [0, 1), 'nominal' or 'estimate'; got {value!r}")
