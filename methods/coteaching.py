"""Co-teaching (Han et al., NeurIPS 2018): two networks, each trains on the small-loss samples of its peer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.engine.method_api import CellContext, Method, register_method
from nlbench.engine.network_pair import PREDICTIONS, NetworkPair
from nlbench.engine.selection import fit_loss_gmm
from nlbench.engine.small_loss import (
    FORGET_SCHEDULES,
    check_forget_rate,
    coteaching_exchange,
    forget_rate,
    scaled_num_gradual,
)
from nlbench.engine.train import Fit, per_sample_ce
from nlbench.errors import ConfigError

FORGET_RATE_RULES = ("nominal", "estimate")


def estimate_noise_rate(ctx: CellContext) -> tuple[float, dict]:
    """(τ̂, details): 1 − the clean fraction of a 2-component GMM on the per-sample CE losses of a linear
    probe (CE, the grid's LP budget) on the cell's cached features; the clean fraction is the GMM's mean
    posterior of its low-loss component (EM run to convergence: max_iter 100, tol 1e-4)."""
    engine = ctx.engine
    probe = engine.linear_probe(lambda logits, labels, index: F.cross_entropy(logits, labels),
                                desc="noise-rate probe")
    losses = per_sample_ce(engine.probe_logits(probe.model, "train"), ctx.labels)
    gmm = fit_loss_gmm(losses, seed=ctx.seed, max_iter=100, tol=1e-4)
    rate = float(1.0 - np.mean(gmm.posterior))
    return rate, {"probe_test_acc_last": probe.test_acc_last, **gmm.summary()}


def resolve_forget_rate(option: float | str | None, ctx: CellContext, name: str, *, nominal_scale: dict | None = None
                        ) -> tuple[float, dict]:
    """(τ, how it was obtained) for a forget_rate option: a number; 'nominal' (the cell's nominal noise rate,
    the codes' forget_rate = noise_rate, times ``nominal_scale[noise model]`` where a code scales it);
    'estimate' (``estimate_noise_rate``); None: 'nominal' under synthetic noise, 'estimate' under real noise
    (noise 'none') or when the nominal noise is unknown."""
    if option is None:
        option = "nominal" if ctx.noise is not None and ctx.noise.model != "none" else "estimate"
    if not isinstance(option, str):
        return float(option), {"forget_rate_rule": "given"}
    if option == "nominal":
        if ctx.noise is None or ctx.noise.model == "none":
            raise ConfigError(f"{name}: forget_rate 'nominal' needs a synthetic nominal noise rate; this cell has "
                              f"{'none' if ctx.noise is None else 'real noise'} (use 'estimate' or a number)")
        scale = (nominal_scale or {}).get(ctx.noise.model, 1.0)
        return float(ctx.noise.rate * scale), {"forget_rate_rule": "nominal", "nominal_scale": scale}
    rate, details = estimate_noise_rate(ctx)
    ctx.log(f"{name}: noise rate estimated at {rate:.4f} from a linear probe's losses")
    return rate, {"forget_rate_rule": "estimate", "estimate": details}


def check_common(method, name: str) -> None:
    """Ranges shared by Co-teaching, Co-teaching+ and JoCoR."""
    if isinstance(method.forget_rate, str):
        if method.forget_rate not in FORGET_RATE_RULES:
            raise ConfigError(f"unknown {name} forget_rate {method.forget_rate!r}; expected a number in [0, 1) or "
                              f"one of: {', '.join(FORGET_RATE_RULES)}")
    elif method.forget_rate is not None:
        check_forget_rate(method.forget_rate, name)
    if method.num_gradual is not None and (isinstance(method.num_gradual, bool) or method.num_gradual < 1):
        raise ConfigError(f"{name} num_gradual must be an integer ≥ 1; got {method.num_gradual!r}")
    if method.schedule not in FORGET_SCHEDULES:
        raise ConfigError(f"unknown {name} schedule {method.schedule!r}; expected one of: "
                          f"{', '.join(FORGET_SCHEDULES)}")
    if method.predict not in PREDICTIONS:
        raise ConfigError(f"unknown {name} predict {method.predict!r}; expected one of: {', '.join(PREDICTIONS)}")
    if method.epochs is not None and method.epochs < 1:
        raise ConfigError(f"{name} epochs must be ≥ 1; got {method.epochs}")
    if method.views < 1:
        raise ConfigError(f"{name} views (K) must be ≥ 1; got {method.views}")


class SmallLossRun:
    """What a Co-teaching-family run resolves once: the pair, the budget, T_k, τ and the epoch bookkeeping
    (each network's selected samples of the epoch, its summed loss)."""

    def __init__(self, method, ctx: CellContext, name: str, *, nominal_scale: dict | None = None) -> None:
        cfg = ctx.engine.config
        self.ctx, self.name = ctx, name
        self.epochs = method.epochs or (cfg.lp_epochs if ctx.mode == "lp" else cfg.fft_epochs)
        self.num_gradual = scaled_num_gradual(self.epochs, method.num_gradual)
        # The probe of 'estimate' runs before the pair is built: the pair's seeded draws stay the same.
        self.tau, self.tau_source = resolve_forget_rate(method.forget_rate, ctx, name, nominal_scale=nominal_scale)
        if not 0.0 <= self.tau < 1.0:
            raise ConfigError(f"{name}: forget rate τ = {self.tau} is outside [0, 1)")
        self.schedule = method.schedule
        self.pair = NetworkPair(ctx.engine, ctx.mode, views=method.views if method.augment else 0,
                                epochs=self.epochs)
        self.device = self.pair.device

    def forget(self, epoch: int) -> float:
        return forget_rate(epoch, self.tau, self.num_gradual, self.schedule)

    def new_epoch(self, networks: int = 2) -> None:
        n = self.ctx.num_train
        self.selected = [np.zeros(n, dtype=bool) for _ in range(networks)]
        self.loss_sum = [0.0] * networks
        self.loss_count = [0] * networks

    def note(self, k: int, ids: torch.Tensor, positions: torch.Tensor, loss: torch.Tensor) -> None:
        """Network k's selection (batch ``positions`` of the samples ``ids``) and the loss it produced."""
        self.selected[k][ids[positions.cpu()].numpy()] = True
        self.loss_sum[k] += float(loss.detach()) * len(positions)
        self.loss_count[k] += len(positions)

    def end_epoch(self, epoch: int, phases: list[str]) -> list[float]:
        for mask, phase in zip(self.selected, phases, strict=True):
            self.ctx.log_selection(mask, epoch=epoch, phase=phase)
        return [s / c if c else float("nan") for s, c in zip(self.loss_sum, self.loss_count, strict=True)]

    def extra(self, state: dict) -> dict:
        return {**self.pair.cost_summary(), "epochs": self.epochs, "forget_rate": round(self.tau, 6),
                **self.tau_source, "num_gradual": self.num_gradual, "forget_schedule": self.schedule,
                "forget_rates": state["forget_rates"], "selected_sizes": state["selected_sizes"]}


def coteaching_step(run: SmallLossRun, ids: torch.Tensor, logits: list[torch.Tensor], labels: torch.Tensor,
                    forget: float, ce=None) -> None:
    """One Co-teaching update on a batch: per-sample CE of each network, the small-loss exchange, then
    network 1 steps on the mean CE of network 2's picks and vice versa. ``ce``: the per-sample loss
    (Co-teaching+'s code passes softmax outputs); plain CE on the logits by default."""
    ce = ce or (lambda z, y: F.cross_entropy(z, y, reduction="none"))
    losses = [ce(z, labels) for z in logits]
    train_1, train_2 = coteaching_exchange(losses[0], losses[1], forget)
    for k, positions in enumerate((train_1, train_2)):
        loss = losses[k][positions].mean()
        run.note(1 - k, ids, positions, loss)  # network 1 − k picked the samples network k trains on
        run.pair.step(k, loss)


@dataclass(frozen=True)
class SmallLossMethod(Method):
    """The options the Co-teaching family shares, with the official codes' defaults (JoCoR halves the nominal
    rate under asymmetric noise, as its code does)."""

    forget_rate: float | str | None = None  # None: 'nominal' (code: forget_rate = noise_rate), real noise 'estimate'
    num_gradual: int | None = None  # T_k; None: code's 10 (of 200 epochs) scaled to the budget
    schedule: str = "code"  # code's linspace table; 'paper': R(T) = 1 − min(T/T_k·τ, τ)
    epochs: int | None = None  # None: the grid's lp_epochs / fft_epochs
    augment: bool = False  # code: transforms.ToTensor() only
    views: int = 2  # K cached augmented feature views in lp mode, with augment
    predict: str = "net1"  # code evaluates each network; 'mean': both networks' mean logits


@register_method("coteaching", modes=("fft", "lp"), label="CoT", order=110,
                 source="Han et al., NeurIPS 2018; github.com/bhanML/Co-teaching",
                 fft_passes=2.0)  # two networks, each trained on every batch
@dataclass(frozen=True)
class CoTeaching(SmallLossMethod):
    """Co-teaching: two networks see the same batches; each ranks the batch by its own per-sample CE and
    keeps its (1 − forget)·B smallest-loss samples, on which its peer takes a step (mean CE). The forget
    rate ramps from 0 to τ over T_k epochs (``nlbench.engine.small_loss.forget_rate``).

    τ (``forget_rate``): a number, 'nominal' (the cell's nominal noise rate: the code's forget_rate =
    noise_rate when none is given) or 'estimate' (1 − the clean fraction of a GMM on a linear probe's
    losses); default 'nominal' under synthetic noise, 'estimate' under real noise. T_k (``num_gradual``):
    the code's 10 of 200 epochs scaled to this budget (round(E/20), at least 1), as DivideMix's warm-up is.
    ``schedule``: 'code' (the code's linspace table read from epoch 1) or 'paper' (min(T/T_k, 1)·τ).

    From the code where the paper is silent: no augmentation (transforms.ToTensor() only; ``augment``
    turns the engine's crop/flip, or the K cached views in lp mode, on), batches of B with the incomplete
    last batch dropped, both networks in train mode. The loss is the mean CE of the picked samples: the
    code divides that mean by the number kept once more, a constant factor its Adam all but ignores and
    the engine's SGD (fft) would not (docs/fidelity.md). Optimiser, rate and B are the engine's. Test
    prediction (``predict``): network 1 (the code evaluates both networks separately; 'mean' averages
    their logits).
    """


    def __post_init__(self) -> None:
        check_common(self, "Co-teaching")

    def run(self, ctx: CellContext) -> Fit:
        run = SmallLossRun(self, ctx, "Co-teaching")
        pair = run.pair

        def epoch_fn(epoch: int, state: dict) -> list[float]:
            forget = run.forget(epoch)
            run.new_epoch()
            pair.train_both()
            for ids in pair.epoch_batches():
                (x,) = pair.draw(ids, 1)
                logits = [pair.forward(k, x, grad=True) for k in (0, 1)]
                coteaching_step(run, ids, logits, pair.labels[ids.to(run.device)], forget)
            state["forget_rates"].append(round(forget, 6))
            state["selected_sizes"].append([int(m.sum()) for m in run.selected])
            return run.end_epoch(epoch, ["net1", "net2"])

        fit, state = pair.run_epochs("coteaching", "Co-teaching", epoch_fn,
                                     {"forget_rates": [], "selected_sizes": []}, predict=self.predict)
        fit.extra.update(run.extra(state))
        return fit
