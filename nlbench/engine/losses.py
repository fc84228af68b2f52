"""Training criteria shared by several methods: cross-entropy, generalised cross-entropy, reverse cross-entropy,
and the α, β weight helpers of the symmetric / active–passive losses (SCE, NCE+RCE).

A criterion is a callable ``(logits, labels, index) -> loss`` (``nlbench.engine.train.Criterion``). Each
method file keeps what is its own (SCE's loss and published α, β; NCE+RCE's normalised CE and settings);
what two methods share lives here, so no method imports another.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nlbench.errors import ConfigError


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of a batch (``index`` unused; the criterion signature of the engine)."""
    return F.cross_entropy(logits, labels)


class GCELoss:
    """L_q = (1 − p_y^q) / q, averaged over the batch; q → 0 gives CE, q = 1 gives MAE (Zhang & Sabuncu,
    NeurIPS 2018)."""

    def __init__(self, q: float) -> None:
        if not 0.0 < q <= 1.0:
            raise ConfigError(f"GCE q must lie in (0, 1]; got {q}")
        self.q = q

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        p_y = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
        return ((1.0 - p_y.clamp_min(1e-7) ** self.q) / self.q).mean()


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
    """Raise ConfigError unless α, β are ≥ 0 (or None: the published value) and log_zero (RCE's A) < 0."""
    for field, value in (("alpha", alpha), ("beta", beta)):
        if value is not None and not value >= 0.0:
            raise ConfigError(f"{name} {field} must be ≥ 0 (or None: the published value); got {value}")
    if not log_zero < 0.0:
        raise ConfigError(f"{name} log_zero (RCE's A = log 0) must be < 0; got {log_zero}")


def resolve_weights(settings: dict, alpha: float | None, beta: float | None, dataset: str | None,
                    num_classes: int) -> tuple[float, float, str]:
    """(α, β, where they came from): the fields where given, else the published setting of the cell's CIFAR
    family (``cifar_family``); ``settings`` maps family → (α, β, source)."""
    family = cifar_family(dataset, num_classes)
    pub_alpha, pub_beta, source = settings[family]
    if alpha is not None and beta is not None:
        return alpha, beta, "explicit"
    what = f"{family} setting ({dataset or '?'}, {num_classes} classes): {source}"
    if alpha is None and beta is None:
        return pub_alpha, pub_beta, what
    return (pub_alpha if alpha is None else alpha), (pub_beta if beta is None else beta), f"partly explicit; {what}"
