"""Cross-entropy: the plain baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.method_api import LossMethod, register_method


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of a batch (``index`` unused; the criterion signature of the engine)."""
    return F.cross_entropy(logits, labels)


@register_method("ce", modes=("fft", "lp", "lp-fft"), label="CE", order=10, paper_name="CE",
                 source="cross-entropy baseline")
@dataclass(frozen=True)
class CE(LossMethod):
    """Cross-entropy on the noisy labels (no robustness mechanism)."""

    def criterion(self, num_samples: int, num_classes: int):
        return cross_entropy
