"""Early-learning regularisation (Liu, Niles-Weed, Razavian, Fernandez-Granda, NeurIPS 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.method_api import LossMethod, register_method
from nlbench.errors import ConfigError


class ELRLoss:
    """CE + λ·mean_i log(1 − ⟨p_i, t_i⟩), with per-sample targets t_i ← β t_i + (1 − β) p̂_i.

    p̂_i is the detached prediction clamped to [1e-4, 1 − 1e-4] and renormalised (as in the ELR
    reference code). The targets (N, C) persist across epochs; ``index`` says which rows a batch holds.
    """

    def __init__(self, num_samples: int, num_classes: int, *, lam: float, beta: float) -> None:
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"ELR beta must lie in [0, 1); got {beta}")
        self.lam, self.beta = lam, beta
        self.targets = torch.zeros(num_samples, num_classes)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.targets.device != logits.device:
            self.targets = self.targets.to(logits.device)
        p = F.softmax(logits, dim=1).clamp(1e-4, 1.0 - 1e-4)
        with torch.no_grad():
            p_hat = p.detach() / p.detach().sum(1, keepdim=True)
            self.targets[index] = self.beta * self.targets[index] + (1.0 - self.beta) * p_hat
        inner = (self.targets[index] * p).sum(1)
        return F.cross_entropy(logits, labels) + self.lam * torch.log(1.0 - inner).mean()


@register_method("elr", modes=("fft", "lp", "lp-fft"), label="ELR", order=30, paper_name="ELR",
                 source="Liu et al., NeurIPS 2020; github.com/shengliu66/ELR")
@dataclass(frozen=True)
class ELR(LossMethod):
    """Early-learning regularisation: pull predictions towards their own running average."""

    lam: float = 7.0  # ELR paper, CIFAR-100 (3.0 for CIFAR-10)
    beta: float = 0.9  # ELR paper, CIFAR-100 (0.7 for CIFAR-10)

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 1.0:
            raise ConfigError(f"ELR beta must lie in [0, 1); got {self.beta}")

    def criterion(self, num_samples: int, num_classes: int):
        return ELRLoss(num_samples, num_classes, lam=self.lam, beta=self.beta)
