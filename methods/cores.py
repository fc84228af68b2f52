"""CORES², confidence-regularised sample sieve (Cheng, Zhu, Li, Gong, Sun, Liu, ICLR 2021;
github.com/UCSC-REAL/cores).

Phase 1 of the reference code (phase1.py, loss.py): per sample, the confidence-regularised loss
ℓ_i = CE(f(x_i), ỹ_i) − β·Σ_j P(j)·CE(f(x_i), j), P the class prior of the noisy labels; sample i stays in the
batch's loss while CE(f(x_i), ỹ_i) − (1/C)·Σ_j CE(f(x_i), j) ≤ 0 (the paper's ℓ_CR − α_i ≤ 0), judged on the
batch's own forward pass; everything is kept during the first 30 of the code's 100 epochs. β follows the
code's schedule, and the learning rate is divided by 1 + β of the epoch (phase1.py 44-47, 208: the engine
multiplies its scheduled rate by ``CORESLoss.lr_factor``; the loss itself is not scaled). After each epoch
the prior becomes the class distribution of the noisy labels of the samples kept, and the kept set is logged
as the epoch's selection. Phase 2 (UDA consistency training on the sieved-out samples as
unlabelled data) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.engine.method_api import CellContext, Method, register_method
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

LOG_EPS = 1e-8  # reference loss.py: -log(softmax + 1e-8)


def beta_schedule(code_epoch: int, *, beta_max: float = 2.0, zero_epochs: int = 10, ramp_epochs: int = 30) -> float:
    """β at an epoch of the reference's 100-epoch run (loss.py f_beta): 0 for ``zero_epochs``, then
    ``linspace(0, beta_max, ramp_epochs)``, then ``beta_max``."""
    if code_epoch < zero_epochs:
        return 0.0
    step = code_epoch - zero_epochs
    if step < ramp_epochs:
        return beta_max * step / (ramp_epochs - 1) if ramp_epochs > 1 else beta_max
    return beta_max


def cores_terms(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor, beta: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample (B,): the confidence-regularised loss CE − β·Σ_j prior_j·CE_j and the sieve's statistic
    CE − mean_j CE_j (a sample is kept where it is ≤ 0), as reference loss.py computes them."""
    ce = F.cross_entropy(logits, labels, reduction="none")
    ce_all = -torch.log(F.softmax(logits, dim=1) + LOG_EPS)
    regularised = ce - beta * (prior.unsqueeze(0) * ce_all).sum(1)
    sieve = ce - ce_all.mean(1)
    return regularised, sieve


def class_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of each class among ``labels`` (the reference's noise_prior of the noisy labels)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
    return counts / counts.sum()


class CORESLoss:
    """CORES²'s phase-1 criterion for a training phase of ``epochs`` epochs over all ``labels``.

    The phase's epoch e runs the reference's epoch ⌊e·code_epochs/epochs⌋ of β and of the sieve's start
    (the reference schedule stretched to the phase). Every epoch covers each sample once, so the criterion
    closes an epoch when it has seen ``len(labels)`` samples: it calls ``on_epoch_end(kept_mask, epoch)``
    and updates the prior from the kept samples. With ``scale_lr`` the engine's training loops multiply the
    learning rate of epoch e by ``lr_factor(e)`` = 1 / (1 + β(e)) (``nlbench.engine.train.criterion_lr_factor``)."""

    def __init__(self, labels: np.ndarray, num_classes: int, epochs: int, *, beta_max: float = 2.0,
                 zero_epochs: int = 10, ramp_epochs: int = 30, warmup_epochs: int = 30, code_epochs: int = 100,
                 scale_lr: bool = True, on_epoch_end: Callable[[np.ndarray, int], None] | None = None) -> None:
        self.labels = np.asarray(labels)
        self.num_classes, self.epochs = num_classes, epochs
        self.beta_max, self.zero_epochs, self.ramp_epochs = beta_max, zero_epochs, ramp_epochs
        self.warmup_epochs, self.code_epochs, self.scale_lr = warmup_epochs, code_epochs, scale_lr
        self.on_epoch_end = on_epoch_end
        self.initial_prior = class_prior(self.labels, num_classes)
        self.prior = torch.as_tensor(self.initial_prior, dtype=torch.float32)
        self.epoch, self.seen = 0, 0
        self.kept = torch.zeros(len(self.labels), dtype=torch.bool)  # on the logits' device: no sync per step

    def code_epoch(self, epoch: int) -> int:
        return epoch * self.code_epochs // self.epochs

    def beta(self, epoch: int) -> float:
        return beta_schedule(self.code_epoch(epoch), beta_max=self.beta_max, zero_epochs=self.zero_epochs,
                             ramp_epochs=self.ramp_epochs)

    def lr_factor(self, epoch: int) -> float:
        """The learning-rate multiplier of the phase's epoch ``epoch``: reference phase1.py 44-47
        ``adjust_learning_rate`` sets lr = alpha_plan[epoch] / (1 + f_beta(epoch)) before each epoch (line 208);
        1 without ``scale_lr``."""
        return 1.0 / (1.0 + self.beta(epoch)) if self.scale_lr else 1.0

    def lr_factors(self) -> list[float]:
        """``lr_factor`` of every epoch of the phase (the record's ``lr_factor_per_epoch``)."""
        return [round(self.lr_factor(e), 6) for e in range(self.epochs)]

    def sieving(self, epoch: int) -> bool:
        """The reference keeps every sample while epoch ≤ 30."""
        return self.code_epoch(epoch) > self.warmup_epochs

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        beta = self.beta(self.epoch)
        regularised, sieve = cores_terms(logits, labels, self.prior.to(logits.device), beta)
        keep = sieve.detach() <= 0 if self.sieving(self.epoch) else torch.ones_like(sieve, dtype=torch.bool)
        weights = keep.float()
        # The reference's empty batch returns mean(0·loss)/1e8: zero, with no gradient.
        loss = (weights * regularised).sum() / weights.sum().clamp(min=1.0)
        if self.kept.device != logits.device:
            self.kept = self.kept.to(logits.device)
        self.kept[index] = keep
        self.seen += len(index)
        if self.seen > len(self.labels):
            raise RuntimeError(f"CORES saw {self.seen} samples in an epoch of {len(self.labels)}: its criterion "
                               f"expects every epoch to cover the training set once")
        if self.seen == len(self.labels):
            self.close_epoch()
        return loss

    def close_epoch(self) -> None:
        kept = self.kept.cpu().numpy()
        if self.on_epoch_end is not None:
            self.on_epoch_end(kept, self.epoch)
        # Reference phase1.py: prior·N − (sieved-out count per noisy class), renormalised.
        removed = np.bincount(self.labels[~kept], minlength=self.num_classes)
        prior = self.initial_prior * len(self.labels) - removed
        self.prior = torch.as_tensor(prior / prior.sum(), dtype=torch.float32)
        self.epoch, self.seen = self.epoch + 1, 0
        self.kept[:] = False

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "seen": self.seen, "prior": self.prior.clone(),
                "kept": self.kept.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.seen = int(state["epoch"]), int(state["seen"])
        self.prior = state["prior"].detach().cpu().float()
        self.kept = state["kept"].bool()


_LR_SCALINGS = ("one_plus_beta", "none")


@register_method("cores", modes=("fft", "lp", "lp-fft"), label="CORES2", order=150,
                 source="Cheng et al., ICLR 2021; github.com/UCSC-REAL/cores")
@dataclass(frozen=True)
class CORES(Method):
    """CORES² phase 1: train on the confidence-regularised loss of the samples the sieve keeps."""

    beta_max: float = 2.0  # reference loss.py f_beta: linspace(0, 2, 30) then 2
    beta_zero_epochs: int = 10  # reference f_beta: β = 0 for the first 10 of 100 epochs
    beta_ramp_epochs: int = 30  # reference f_beta: the linear ramp's 30 epochs
    warmup_epochs: int = 30  # reference loss_cores: every sample kept while epoch ≤ 30
    code_epochs: int = 100  # reference phase1.py --n_epoch 100: the schedule above is stretched to the phase
    # Reference phase1.py 44-47: lr / (1 + β(epoch)); "none": the schedule undivided. (A string, not the earlier
    # bool scale_lr, which divided the loss: the config hash changes, so records made that way are not reused.)
    lr_scaling: str = "one_plus_beta"

    def __post_init__(self) -> None:
        if self.beta_max < 0:
            raise ConfigError(f"CORES beta_max must be ≥ 0; got {self.beta_max}")
        for name in ("beta_zero_epochs", "beta_ramp_epochs", "warmup_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"CORES {name} must be ≥ 0; got {getattr(self, name)}")
        if self.code_epochs < 1:
            raise ConfigError(f"CORES code_epochs must be ≥ 1; got {self.code_epochs}")
        if self.lr_scaling not in _LR_SCALINGS:
            raise ConfigError(f"unknown CORES lr_scaling {self.lr_scaling!r}; expected one of: "
                              f"{', '.join(_LR_SCALINGS)}")

    def criterion(self, ctx: CellContext, epochs: int, phase: str) -> CORESLoss:
        return CORESLoss(ctx.labels, ctx.num_classes, epochs, beta_max=self.beta_max,
                         zero_epochs=self.beta_zero_epochs, ramp_epochs=self.beta_ramp_epochs,
                         warmup_epochs=self.warmup_epochs, code_epochs=self.code_epochs,
                         scale_lr=self.lr_scaling == "one_plus_beta",
                         on_epoch_end=lambda kept, epoch: ctx.log_selection(kept, epoch=epoch, phase=phase))

    def run(self, ctx: CellContext) -> Fit:
        engine, config = ctx.engine, ctx.engine.config
        if ctx.mode == "lp":
            criterion = self.criterion(ctx, config.lp_epochs, "sieve")
            fit = engine.linear_probe(criterion, desc="LP CORES2")
        elif ctx.mode == "fft":
            criterion = self.criterion(ctx, config.fft_epochs, "sieve")
            fit = engine.fine_tune(criterion, desc="FFT CORES2")
        else:
            lp_criterion = self.criterion(ctx, config.lp_epochs, "lp-sieve")
            probe = engine.linear_probe(lp_criterion, desc="LP-FT CORES2: LP")
            criterion = self.criterion(ctx, config.fft_epochs, "sieve")
            fit = engine.fine_tune(criterion, head=probe.model, desc="LP-FT CORES2: FT")
            fit.extra.update(lp_test_acc_best=probe.test_acc_best, lp_test_acc_last=probe.test_acc_last,
                             lp_lr_factor_per_epoch=lp_criterion.lr_factors())
        fit.extra.update(beta_max=self.beta_max, beta_zero_epochs=self.beta_zero_epochs,
                         beta_ramp_epochs=self.beta_ramp_epochs, warmup_epochs=self.warmup_epochs,
                         code_epochs=self.code_epochs, lr_scaling=self.lr_scaling,
                         lr_factor_per_epoch=criterion.lr_factors(),
                         setting="reference phase1.py/loss.py (CIFAR-10/100: one schedule), phase 1 only")
        return fit
