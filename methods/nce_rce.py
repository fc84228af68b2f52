"""NCE+RCE, the active–passive loss (Ma, Huang, Wang, Romano, Erfani, Bailey, ICML 2020: "Normalized Loss
Functions for Deep Learning with Noisy Labels"). Official code: github.com/HanxunH/Active-Passive-Losses
(``loss.py``: NormalizedCrossEntropy, ReverseCrossEntropy, NCEandRCE; α, β in ``configs/<dataset>/``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.losses import CODE_LOG_ZERO, check_weights, resolve_weights, reverse_cross_entropy
from nlbench.engine.method_api import CellContext, LossMethod, register_method
from nlbench.engine.train import Fit


def normalized_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample NCE = −log p_y / (−Σ_k log p_k): CE normalised by its sum over every possible label, so
    it sums to 1 over the labels (APL loss.py 87-89; log-softmax, no clamp)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return log_p.gather(1, labels[:, None]).squeeze(1) / log_p.sum(dim=1)


class NCERCELoss:
    """α·NCE + β·RCE, each averaged over the batch (APL loss.py 168-176: NCEandRCE)."""

    def __init__(self, alpha: float, beta: float, log_zero: float = CODE_LOG_ZERO) -> None:
        check_weights("NCE+RCE", alpha, beta, log_zero)
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        nce = normalized_cross_entropy(logits, labels).mean()
        return self.alpha * nce + self.beta * reverse_cross_entropy(logits, labels, self.log_zero).mean()


# family → (α, β, source): the official configs, the same for sym and asym noise.
NCE_RCE_SETTINGS = {
    "cifar10": (1.0, 1.0, "APL configs/cifar10/{sym,asym}/nce+rce.yaml"),
    "cifar100": (10.0, 0.1, "APL configs/cifar100/{sym,asym}/nce+rce.yaml"),
}


@register_method("nce_rce", modes=("fft", "lp", "lp-fft"), label="NCE+RCE", order=90,
                 source="Ma et al., ICML 2020; github.com/HanxunH/Active-Passive-Losses")
@dataclass(frozen=True)
class NCERCE(LossMethod):
    """Active–passive loss: normalised CE (active) plus reverse CE (passive).

    α, β default to the official config of the cell's CIFAR family (``NCE_RCE_SETTINGS``): CIFAR-10
    α 1, β 1; CIFAR-100 α 10, β 0.1; another dataset takes the CIFAR nearer in class count
    (``nlbench.engine.losses.cifar_family``). The record keeps the values used.
    """

    alpha: float | None = None  # None: NCE_RCE_SETTINGS (APL configs: 1.0 CIFAR-10, 10.0 CIFAR-100)
    beta: float | None = None  # None: NCE_RCE_SETTINGS (APL configs: 1.0 CIFAR-10, 0.1 CIFAR-100)
    log_zero: float = CODE_LOG_ZERO  # APL ReverseCrossEntropy: ln 1e-4 ≈ −9.21; the SCE paper's A = −4 is log_zero=-4

    def __post_init__(self) -> None:
        check_weights("NCE+RCE", self.alpha, self.beta, self.log_zero)

    def criterion(self, num_samples: int, num_classes: int):
        alpha, beta, _ = resolve_weights(NCE_RCE_SETTINGS, self.alpha, self.beta, None, num_classes)
        return NCERCELoss(alpha, beta, self.log_zero)

    def run(self, ctx: CellContext) -> Fit:
        alpha, beta, setting = resolve_weights(NCE_RCE_SETTINGS, self.alpha, self.beta, ctx.dataset.name,
                                               ctx.num_classes)
        fit = LossMethod.run(dataclasses.replace(self, alpha=alpha, beta=beta), ctx)
        fit.extra.update(alpha=alpha, beta=beta, log_zero=self.log_zero, setting=setting)
        return fit
