"""Generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.method_api import LossMethod, register_method
from nlbench.errors import ConfigError


class GCELoss:
    """L_q = (1 − p_y^q) / q, averaged over the batch; q → 0 gives CE, q = 1 gives MAE."""

    def __init__(self, q: float) -> None:
        if not 0.0 < q <= 1.0:
            raise ConfigError(f"GCE q must lie in (0, 1]; got {q}")
        self.q = q

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        p_y = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        return ((1.0 - p_y.clamp_min(1e-7) ** self.q) / self.q).mean()


@register_method("gce", modes=("fft", "lp", "lp-fft"), label="GCE", order=20, paper_name="GCE",
                 source="Zhang & Sabuncu, NeurIPS 2018")
@dataclass(frozen=True)
class GCE(LossMethod):
    """Generalised cross-entropy, a noise-robust loss between CE and MAE (q = 0.7)."""

    q: float = 0.7  # GCE paper's default (Zhang & Sabuncu 2018)

    def __post_init__(self) -> None:
        GCELoss(self.q)  # validates q

    def criterion(self, num_samples: int, num_classes: int):
        return GCELoss(self.q)
