"""Cross-entropy: the plain baseline."""

from __future__ import annotations

from dataclasses import dataclass

from nlbench.engine.losses import cross_entropy
from nlbench.engine.method_api import LossMethod, register_method


@register_method("ce", modes=("fft", "lp", "lp-fft"), label="CE", order=10, paper_name="CE",
                 source="cross-entropy baseline")
@dataclass(frozen=True)
class CE(LossMethod):
    """Cross-entropy on the noisy labels (no robustness mechanism)."""

    def criterion(self, num_samples: int, num_classes: int):
        return cross_entropy
