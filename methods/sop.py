"""Sparse over-parameterisation, SOP (Liu, Zhu, Qu, You, ICML 2022; github.com/shengliu66/SOP).

The label noise of sample i is modelled as s_i = u_i²·y_i − v_i⊙v_i·(1 − y_i), with per-sample u_i (one
scalar: only the label's entry of the paper's u_i ⊙ u_i ⊙ y_i is non-zero) and v_i ∈ R^C, trained by their
own SGD (own learning rates, no momentum, no weight decay) from the gradients of the model's loss. The loss
is the reference code's ``overparametrization_loss`` (model/loss.py): cross-entropy of the noisy label
against softmax + s (v detached there, clamped and renormalised), plus the squared error between the
one-hot prediction + s and the noisy label, through which v learns.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nlbench.engine.method_api import CellContext, LossMethod, register_method
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

EPS = 1e-4  # the reference code's eps (model/loss.py)


class SOPLoss:
    """SOP's training criterion with its per-sample parameters u (N, 1) and v (N, C) and their SGD.

    ``after_step()`` (called by the engine after each model step) applies the SGD step to u and v from the
    gradients of the same backward pass and zeroes them, as the reference trainer steps both optimisers
    after one ``loss.backward()``. ``state_dict()`` holds u, v and the optimiser, so a resumed fine-tuning
    continues exactly."""

    def __init__(self, num_samples: int, num_classes: int, *, lr_u: float, lr_v: float, init_std: float = 1e-8,
                 ratio_balance: float = 0.0, seed: int = 0) -> None:
        self.num_classes = num_classes
        self.lr_u, self.lr_v, self.ratio_balance = lr_u, lr_v, ratio_balance
        generator = torch.Generator().manual_seed(seed)
        # Reference: nn.init.normal_(mean=0, std=1e-8) for both (reparam_arch args in config_cifar100.json).
        u = torch.randn(num_samples, 1, generator=generator) * init_std
        v = torch.randn(num_samples, num_classes, generator=generator) * init_std
        self._place(u, v)

    def _place(self, u: torch.Tensor, v: torch.Tensor, optimizer_state: dict | None = None) -> None:
        """(Re)build u, v and their optimiser on the device of ``u``, carrying the optimiser's state."""
        state = self.optimizer.state_dict() if optimizer_state is None and hasattr(self, "optimizer") \
            else optimizer_state
        self.u = nn.Parameter(u.detach().clone())
        self.v = nn.Parameter(v.detach().clone().to(u.device))
        # Reference train.py: SGD with lr_u / lr_v per group, momentum 0 and weight decay 0
        # (optimizer_overparametrization in config_cifar100.json); no scheduler for it.
        self.optimizer = torch.optim.SGD([{"params": [self.u], "lr": self.lr_u},
                                          {"params": [self.v], "lr": self.lr_v}], lr=self.lr_u, momentum=0.0,
                                         weight_decay=0.0)
        if state is not None:
            self.optimizer.load_state_dict(state)

    def noise(self, index: torch.Tensor, onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u_i²·y_i, v_i²·(1 − y_i)), each clamped to [0, 1] as in the reference."""
        u_square = torch.clamp(self.u[index] ** 2 * onehot, 0, 1)
        v_square = torch.clamp(self.v[index] ** 2 * (1 - onehot), 0, 1)
        return u_square, v_square

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.u.device != logits.device:
            self._place(self.u.to(logits.device), self.v.to(logits.device))
        onehot = F.one_hot(labels, self.num_classes).float()
        u_square, v_square = self.noise(index, onehot)
        prediction = torch.clamp(F.softmax(logits, dim=1) + u_square - v_square.detach(), min=EPS)
        prediction = torch.clamp(F.normalize(prediction, p=1, eps=EPS), min=EPS, max=1.0)
        with torch.no_grad():
            hard = F.one_hot(logits.argmax(1), self.num_classes).float()
        mse = F.mse_loss(hard + u_square - v_square, onehot, reduction="sum") / len(labels)
        loss = torch.mean(-torch.sum(onehot * torch.log(prediction), dim=-1)) + mse
        if self.ratio_balance > 0:  # SOP+'s class-balance term (reference: ratio_balance)
            average = torch.clamp(prediction.mean(0), min=EPS, max=1.0)
            loss = loss + self.ratio_balance * -(torch.log(average) / self.num_classes).sum()
        return loss

    def after_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"u": self.u.detach().clone(), "v": self.v.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self._place(state["u"], state["v"], state["optimizer"])


# Reference README: CIFAR-100, 50% symmetric noise `--lr_u 1 --lr_v 10` (also config_cifar100.json's lr_u, lr_v);
# 40% asymmetric `--lr_u 0.1 --lr_v 100` ("lr for u equals 0.1 rather than 1 in the paper").
LEARNING_RATES = {"sym": (1.0, 10.0), "asym": (0.1, 100.0)}


@register_method("sop", modes=("fft", "lp", "lp-fft"), label="SOP", order=140,
                 source="Liu et al., ICML 2022; github.com/shengliu66/SOP")
@dataclass(frozen=True)
class SOP(LossMethod):
    """Sparse over-parameterisation: learn each sample's label noise as u_i²·y_i − v_i²·(1 − y_i)."""

    lr_u: float | None = None  # None: 1 (0.1 under asymmetric noise): reference README, CIFAR-100
    lr_v: float | None = None  # None: 10 (100 under asymmetric noise): reference README, CIFAR-100
    init_std: float = 1e-8  # reference config_cifar100.json reparam_arch std
    # SOP+'s class-balance weight (reference config_cifar100.json ships 0.1 with ratio_consistency 0.9); 0 is
    # plain SOP. SOP+'s consistency term needs two augmented views per sample: not offered.
    ratio_balance: float = 0.0
    seed: int | None = None  # of u, v's initial draw; None: the cell's seed

    def __post_init__(self) -> None:
        for name in ("lr_u", "lr_v"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"SOP {name} must be > 0 (or absent for the reference's value); got {value}")
        if not self.init_std > 0:
            raise ConfigError(f"SOP init_std must be > 0 (u, v start at 0 would never move); got {self.init_std}")
        if self.ratio_balance < 0:
            raise ConfigError(f"SOP ratio_balance must be ≥ 0; got {self.ratio_balance}")

    def noise_setting(self, ctx: CellContext) -> str:
        """Which of the reference's CIFAR-100 learning-rate pairs the cell's nominal noise takes."""
        return "asym" if ctx.noise is not None and ctx.noise.model == "asym" else "sym"

    def resolved(self, ctx: CellContext) -> SOP:
        """The method with the reference's learning rates for the cell's nominal noise and the cell's seed."""
        lr_u, lr_v = LEARNING_RATES[self.noise_setting(ctx)]
        return dataclasses.replace(self, lr_u=lr_u if self.lr_u is None else self.lr_u,
                                   lr_v=lr_v if self.lr_v is None else self.lr_v,
                                   seed=ctx.seed if self.seed is None else self.seed)

    def criterion(self, num_samples: int, num_classes: int) -> SOPLoss:
        lr_u, lr_v = LEARNING_RATES["sym"]
        return SOPLoss(num_samples, num_classes, lr_u=lr_u if self.lr_u is None else self.lr_u,
                       lr_v=lr_v if self.lr_v is None else self.lr_v, init_std=self.init_std,
                       ratio_balance=self.ratio_balance, seed=0 if self.seed is None else self.seed)

    def run(self, ctx: CellContext) -> Fit:
        method = self.resolved(ctx)
        fit = LossMethod.run(method, ctx)
        fit.extra.update(lr_u=method.lr_u, lr_v=method.lr_v, init_std=method.init_std,
                         ratio_balance=method.ratio_balance)
        if self.lr_u is None or self.lr_v is None:
            fit.extra["lr_setting"] = (f"reference README, CIFAR-100 {self.noise_setting(ctx)} noise "
                                       "(u, v: SGD without momentum or weight decay)")
        return fit
