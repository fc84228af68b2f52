"""JoCoR (Wei, Feng, Chen, An, CVPR 2020): joint training of two networks with co-regularisation."""

from __future__ import annotations

from dataclasses import dataclass

from nlbench.engine.method_api import CellContext, register_method
from nlbench.engine.small_loss import (
    SmallLossMethod,
    SmallLossRun,
    check_small_loss_fields,
    jocor_loss,
    small_loss_indices,
)
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

_README = "github.com/hongxin001/JoCoR README ('About Lambda')"
# λ per (CIFAR, nominal rate) from the authors' README: CIFAR-10 0.9 at 20 %, 50 % and asym 40 %, 0.65 at
# 80 %; CIFAR-100 0.85. A cell takes the CIFAR nearer in class count (C ≤ 31: CIFAR-10) and, on CIFAR-10, the
# nearest tabulated symmetric rate (asymmetric and instance noise: the asym 40 % value; real noise: 0.9).
CO_LAMBDA_CIFAR10 = {0.2: 0.9, 0.5: 0.9, 0.8: 0.65}
CO_LAMBDA_CIFAR10_ASYM = 0.9
CO_LAMBDA_CIFAR100 = 0.85
# The code halves the nominal rate for its asymmetric noise when forget_rate is not given (algorithm/jocor.py
# 20-24): forget_rate 'nominal' keeps that reading.
NOMINAL_SCALE = {"asym": 0.5}


def published_co_lambda(num_classes: int, noise: str | None, rate: float) -> tuple[float, str]:
    """(λ, source) of the README's setting nearest a cell; noise None: real noise or unknown."""
    if num_classes > 31:
        return CO_LAMBDA_CIFAR100, f"cifar100: {_README}"
    if noise == "sym":
        nearest = min(CO_LAMBDA_CIFAR10, key=lambda r: (round(abs(r - rate), 9), -r))
        return CO_LAMBDA_CIFAR10[nearest], f"cifar10 sym {nearest:g}: {_README}"
    if noise in ("asym", "inst"):
        return CO_LAMBDA_CIFAR10_ASYM, f"cifar10 asym 0.4: {_README}"
    return CO_LAMBDA_CIFAR10_ASYM, f"cifar10, real noise (the value of all its settings below 80 %): {_README}"


@register_method("jocor", modes=("fft", "lp"), label="JoCoR", order=130,
                 source="Wei et al., CVPR 2020; github.com/hongxin001/JoCoR",
                 fft_passes=2.0)  # two networks trained on one joint loss
@dataclass(frozen=True)
class JoCoR(SmallLossMethod):
    """JoCoR: both networks see the same batch; per sample the joint loss ℓ = (1 − λ)(CE₁ + CE₂) +
    λ·(KL(p₂‖p₁) + KL(p₁‖p₂)) (``nlbench.engine.small_loss.jocor_loss``); the (1 − forget)·B samples of smallest ℓ
    are kept and both networks step on their mean ℓ, through one optimiser over both networks' parameters
    (here the pair's two optimisers stepped on the same loss: equal for the engine's SGD and AdamW).

    λ (``co_lambda``): None = the authors' README value for the nearest CIFAR setting (CIFAR-10: 0.9 at
    20 %/50 %/asym 40 %, 0.65 at 80 %; CIFAR-100: 0.85; the code's command-line default is 0.1). τ, the ramp
    and the schedule as Co-teaching's: the default 'expected' flip rate is what the code's halving under its
    asymmetric noise amounts to on CIFAR-10 and MNIST (5 of 10 classes move); 'nominal' is the code's
    reading everywhere (the nominal rate, halved under asymmetric noise, also where every class moves). From
    the code: no augmentation, incomplete last batch dropped, both networks in train mode; test prediction
    network 1 (``predict``; 'mean' averages both).
    """

    co_lambda: float | None = None  # None: README per setting (CIFAR-10 0.9 / 0.65 at 80 %, CIFAR-100 0.85)

    def __post_init__(self) -> None:
        check_small_loss_fields(self, "JoCoR")
        if self.co_lambda is not None and not 0.0 <= self.co_lambda <= 1.0:
            raise ConfigError(f"JoCoR co_lambda must lie in [0, 1]; got {self.co_lambda}")

    def resolved_co_lambda(self, ctx: CellContext) -> tuple[float, str]:
        if self.co_lambda is not None:
            return float(self.co_lambda), "given"
        noise = ctx.noise
        return published_co_lambda(ctx.num_classes, None if noise is None or noise.model == "none" else noise.model,
                                   0.0 if noise is None else noise.rate)

    def run(self, ctx: CellContext) -> Fit:
        co_lambda, lambda_source = self.resolved_co_lambda(ctx)
        run = SmallLossRun(self, ctx, "JoCoR", nominal_scale=NOMINAL_SCALE)
        pair = run.pair

        def epoch_fn(epoch: int, state: dict) -> list[float]:
            run.new_epoch(networks=1)
            pair.train_both()
            for i, ids in enumerate(pair.epoch_batches()):
                forget = run.forget(epoch, i)
                logits = run.logits(ids)
                joint = jocor_loss(logits[0], logits[1], pair.labels[ids.to(run.device)], co_lambda)
                keep = small_loss_indices(joint, forget)
                loss = joint[keep].mean()
                run.note(0, ids, keep, loss)
                pair.step_joint(loss)
            state["forget_rates"].append(run.epoch_forget_rate())
            state["selected_sizes"].append([int(run.selected[0].sum())])
            return run.end_epoch(epoch, ["joint"])

        fit, state = pair.run_epochs("jocor", "JoCoR", epoch_fn, {"forget_rates": [], "selected_sizes": []},
                                     predict=self.predict)
        fit.extra.update({**run.extra(state), "co_lambda": co_lambda, "co_lambda_source": lambda_source})
        return fit
