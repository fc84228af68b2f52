"""Symmetric cross-entropy (Wang, Ma, Chen, Luo, Yi, Bailey, ICCV 2019): α·CE + β·RCE.

Official code: github.com/YisenWang/symmetric_cross_entropy_for_noisy_labels (Keras, ``loss.py``
``symmetric_cross_entropy``); the PyTorch re-implementation the authors point to lives on in
github.com/HanxunH/Active-Passive-Losses (``loss.py: SCELoss``), whose configs also give α, β per dataset.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.method_api import CellContext, LossMethod, register_method
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

# RCE's log 0: both official implementations clamp the one-hot label to [1e-4, 1] before the log
# (SCE loss.py 18, APL loss.py 35 and 55), so A = ln 1e-4 ≈ −9.21; the paper states A = −4.
CODE_LOG_ZERO = math.log(1e-4)
PAPER_LOG_ZERO = -4.0

# Datasets that carry another's classes and so its published setting (as DivideMix's settings do).
_FAMILY = {"cifar10": "cifar10", "cifar10n": "cifar10", "cifar100": "cifar100", "cifar100n": "cifar100"}


def cifar_family(dataset: str | None, num_classes: int) -> str:
    """The CIFAR whose published α, β a cell takes: the dataset itself (CIFAR-N as its CIFAR), else the one
    whose class count is nearer on a log scale (C ≤ 31: 'cifar10', else 'cifar100')."""
    return _FAMILY.get(dataset or "", "cifar10" if num_classes <= 31 else "cifar100")


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, log_zero: float = CODE_LOG_ZERO) -> torch.Tensor:
    """Per-sample RCE = −Σ_k p_k log q_k with q the one-hot label and log 0 := ``log_zero`` (A), i.e.
    −A·Σ_{k≠y} p_k; p is clamped to [1e-7, 1] as in the reference code (no gradient below 1e-7)."""
    p = F.softmax(logits.float(), dim=1).clamp(min=1e-7, max=1.0)
    off_label = p.sum(dim=1) - p.gather(1, labels[:, None]).squeeze(1)
    return -log_zero * off_label


def check_weights(name: str, alpha: float | None, beta: float | None, log_zero: float) -> None:
    for field, value in (("alpha", alpha), ("beta", beta)):
        if value is not None and not value >= 0.0:
            raise ConfigError(f"{name} {field} must be ≥ 0 (or None: the published value); got {value}")
    if not log_zero < 0.0:
        raise ConfigError(f"{name} log_zero (RCE's A = log 0) must be < 0; got {log_zero}")


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


def resolve_weights(settings: dict, alpha: float | None, beta: float | None, dataset: str | None,
                    num_classes: int) -> tuple[float, float, str]:
    """(α, β, where they came from): the fields where given, else the published setting of the cell's CIFAR
    family (``cifar_family``)."""
    family = cifar_family(dataset, num_classes)
    pub_alpha, pub_beta, source = settings[family]
    if alpha is not None and beta is not None:
        return alpha, beta, "explicit"
    what = f"{family} setting ({dataset or '?'}, {num_classes} classes): {source}"
    if alpha is None and beta is None:
        return pub_alpha, pub_beta, what
    return (pub_alpha if alpha is None else alpha), (pub_beta if beta is None else beta), f"partly explicit; {what}"


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
