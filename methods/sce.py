"""Symmetric cross-entropy (Wang, Ma, Chen, Luo, Yi, Bailey, ICCV 2019): α·CE + β·RCE.

Official code: github.com/YisenWang/symmetric_cross_entropy_for_noisy_labels (Keras, ``loss.py``
``symmetric_cross_entropy``); the PyTorch re-implementation the authors point to lives on in
github.com/HanxunH/Active-Passive-Losses (``loss.py: SCELoss``), whose configs also give α, β per dataset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.losses import CODE_LOG_ZERO, check_weights, resolve_weights, reverse_cross_entropy
from nlbench.engine.method_api import CellContext, LossMethod, register_method
from nlbench.engine.train import Fit


class SCELoss:
    """α·CE(p, q) + β·RCE(p, q), each averaged over the batch. CE is computed from the log-softmax (the
    Keras code clamps p to [1e-7, 1] first, which only matters once p_y < 1e-7)."""

    def __init__(self, alpha: float, beta: float, log_zero: float = CODE_LOG_ZERO) -> None:
        check_weights("SCE", alpha, beta, log_zero)
        self.alpha, self.beta, self.log_zero = alpha, beta, log_zero

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels)
        return self.alpha * ce + self.beta * reverse_cross_entropy(logits, labels, self.log_zero).mean()


# family → (α, β, source). Both official codes agree on these values.
SCE_SETTINGS = {
    "cifar10": (0.1, 1.0, "SCE train_models.py 215-217 (CIFAR-10 run); APL configs/cifar10/{sym,asym}/sce.yaml"),
    "cifar100": (6.0, 0.1, "SCE train_models.py 222-224 (CIFAR-100 run); APL configs/cifar100/{sym,asym}/sce.yaml"),
}


@register_method("sce", modes=("fft", "lp", "lp-fft"), label="SCE", order=80,
                 source="Wang et al., ICCV 2019; github.com/YisenWang/symmetric_cross_entropy_for_noisy_labels")
@dataclass(frozen=True)
class SCE(LossMethod):
    """Symmetric cross-entropy: CE plus the noise-tolerant reverse cross-entropy.

    α, β default to the official code's value for the cell's CIFAR family (``SCE_SETTINGS``): CIFAR-10
    α 0.1, β 1.0; CIFAR-100 α 6.0, β 0.1; another dataset takes the CIFAR nearer in class count. The
    record keeps the values used (``extra``: alpha, beta, setting).
    """

    alpha: float | None = None  # None: SCE_SETTINGS (official code: 0.1 CIFAR-10, 6.0 CIFAR-100)
    beta: float | None = None  # None: SCE_SETTINGS (official code: 1.0 CIFAR-10, 0.1 CIFAR-100)
    log_zero: float = CODE_LOG_ZERO  # official code: ln 1e-4 ≈ −9.21; the paper's A = −4 is log_zero=-4

    def __post_init__(self) -> None:
        check_weights("SCE", self.alpha, self.beta, self.log_zero)

    def criterion(self, num_samples: int, num_classes: int):
        alpha, beta, _ = resolve_weights(SCE_SETTINGS, self.alpha, self.beta, None, num_classes)
        return SCELoss(alpha, beta, self.log_zero)

    def run(self, ctx: CellContext) -> Fit:
        alpha, beta, setting = resolve_weights(SCE_SETTINGS, self.alpha, self.beta, ctx.dataset.name, ctx.num_classes)
        fit = LossMethod.run(dataclasses.replace(self, alpha=alpha, beta=beta), ctx)
        fit.extra.update(alpha=alpha, beta=beta, log_zero=self.log_zero, setting=setting)
        return fit
