"""Generalised cross-entropy (Zhang & Sabuncu, NeurIPS 2018)."""

from __future__ import annotations

from dataclasses import dataclass

from nlbench.engine.losses import GCELoss
from nlbench.engine.method_api import LossMethod, register_method


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
