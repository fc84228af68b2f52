"""Small-loss selection of two networks (Co-teaching, Co-teaching+, JoCoR): the forget-rate schedule, the
exchange of small-loss samples, the disagreement filter and JoCoR's joint loss, as pure functions; then what
the three methods share on top of them: their options (``SmallLossMethod``) and checks, the forget rate τ
('nominal' or estimated from a probe), the run's bookkeeping (``SmallLossRun``) and one Co-teaching step.

Sources: Co-teaching (Han et al., NeurIPS 2018; github.com/bhanML/Co-teaching, loss.py and main.py),
Co-teaching+ (Yu et al., ICML 2019; github.com/xingruiyu/coteaching_plus, loss.py), JoCoR (Wei et al., CVPR
2020; github.com/hongxin001/JoCoR, algorithm/loss.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.engine.method_api import CellContext, Method
from nlbench.engine.network_pair import PREDICTIONS, NetworkPair
from nlbench.engine.selection import fit_loss_gmm
from nlbench.engine.train import per_sample_ce
from nlbench.errors import ConfigError
from nlbench.noise import expected_flip_rate

# 'code': the official codes' table np.linspace(0, τ, T_k) followed by τ, read at index epoch + 1 (their
# training loop runs epochs 1 .. n_epoch − 1 after evaluating the untrained networks at epoch 0).
# 'paper': R(T) = 1 − min(T/T_k · τ, τ) with T the epochs already trained (0 for the first epoch).
FORGET_SCHEDULES = ("code", "paper")

# The reference budget the codes' T_k = num_gradual = 10 belongs to: n_epoch = 200 (all three codes).
REF_EPOCHS, REF_NUM_GRADUAL = 200, 10


def forget_rate(epoch: int, tau: float, num_gradual: int, schedule: str = "code") -> float:
    """Fraction of each batch dropped as large-loss in 0-based training ``epoch`` (1 − R(T))."""
    if schedule not in FORGET_SCHEDULES:
        raise ConfigError(f"unknown forget schedule {schedule!r}; expected one of: {', '.join(FORGET_SCHEDULES)}")
    if num_gradual < 1:
        raise ConfigError(f"num_gradual (T_k) must be ≥ 1; got {num_gradual}")
    if schedule == "paper":
        return float(min(epoch / num_gradual, 1.0) * tau)
    index = epoch + 1
    if index >= num_gradual:
        return float(tau)
    return float(np.linspace(0.0, tau, num_gradual)[index])


# How the ramp meets this run: 'steps' keeps the codes' ramp as its share of the run, per step (T_k = 10 of
# 200 epochs); 'epochs': T_k whole epochs of this run (``num_gradual``, or round(E/20) ≥ 1).
FORGET_RAMPS = ("steps", "epochs")


def forget_rate_at_step(step: int, total_steps: int, tau: float, schedule: str = "code") -> float:
    """Fraction of a batch dropped at 0-based ``step`` of ``total_steps``, the codes' ramp kept as its share of
    the run: the step stands where the codes' run of REF_EPOCHS − 1 = 199 trained epochs (n_epoch = 200, epoch
    0 only evaluates) stands at the same fraction. 'code': the linspace table (T_k = 10) read at that
    reference epoch, a staircase — τ/9 over the first 1/199 of the steps, 2τ/9 over the next, …, τ from
    8/199 of the steps on; at a budget of 199 epochs it is ``forget_rate`` read per epoch. 'paper':
    min(T/T_k, 1)·τ with T the reference epoch (of REF_EPOCHS = 200) the step stands at, unrounded: τ from
    5 % of the steps on."""
    if total_steps < 1 or not 0 <= step < total_steps:
        raise ConfigError(f"step {step} is outside a run of {total_steps} steps")
    if schedule == "paper":
        return float(tau * min(step * REF_EPOCHS / (REF_NUM_GRADUAL * total_steps), 1.0))
    return forget_rate(step * (REF_EPOCHS - 1) // total_steps, tau, REF_NUM_GRADUAL, schedule)


def scaled_num_gradual(epochs: int, num_gradual: int | None = None) -> int:
    """T_k for a run of ``epochs``: given, or the codes' 10 of 200 epochs keeping its share of the budget
    (round(E/20), at least 1) — the rule DivideMix's warm-up is scaled by in this repository."""
    if num_gradual is not None:
        return int(num_gradual)
    return max(1, round(epochs * REF_NUM_GRADUAL / REF_EPOCHS))


def num_remember(batch_size: int, forget: float) -> int:
    """Samples kept of a batch: int((1 − forget)·B), as the codes truncate; all of them where that is 0
    (Co-teaching+'s loss.py: an empty selection would leave nothing to train on)."""
    kept = int((1.0 - forget) * batch_size)
    return batch_size if kept == 0 else kept


def small_loss_indices(losses: torch.Tensor, forget: float) -> torch.Tensor:
    """Positions (in the batch) of the ``num_remember`` smallest losses, smallest first (a stable sort: ties
    keep batch order)."""
    order = torch.argsort(losses.detach(), stable=True)
    return order[: num_remember(len(losses), forget)]


def coteaching_exchange(loss_1: torch.Tensor, loss_2: torch.Tensor, forget: float
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch positions network 1 trains on, positions network 2 trains on): each network picks its
    small-loss samples and its peer trains on them (Co-teaching, Algorithm 1, steps 4-6)."""
    picked_by_1 = small_loss_indices(loss_1, forget)
    picked_by_2 = small_loss_indices(loss_2, forget)
    return picked_by_2, picked_by_1


def disagreement(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the samples whose two predictions (argmax) differ (Co-teaching+'s update set)."""
    return logits_1.argmax(1) != logits_2.argmax(1)


def symmetric_kl(logits_1: torch.Tensor, logits_2: torch.Tensor) -> torch.Tensor:
    """(B,) KL(p₂‖p₁) + KL(p₁‖p₂) of the two networks' softmax predictions, differentiable in both (JoCoR's
    co-regularisation: its kl_loss_compute detaches neither side)."""
    log_p1, log_p2 = F.log_softmax(logits_1, 1), F.log_softmax(logits_2, 1)
    p1, p2 = log_p1.exp(), log_p2.exp()
    return (p2 * (log_p2 - log_p1)).sum(1) + (p1 * (log_p1 - log_p2)).sum(1)


def jocor_loss(logits_1: torch.Tensor, logits_2: torch.Tensor, labels: torch.Tensor, co_lambda: float
               ) -> torch.Tensor:
    """(B,) JoCoR's joint loss per sample: (1 − λ)(CE₁ + CE₂) + λ·(KL(p₂‖p₁) + KL(p₁‖p₂))."""
    ce = F.cross_entropy(logits_1, labels, reduction="none") + F.cross_entropy(logits_2, labels, reduction="none")
    return (1.0 - co_lambda) * ce + co_lambda * symmetric_kl(logits_1, logits_2)


def check_forget_rate(value: float, method: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value < 1.0):
        raise ConfigError(f"{method} forget_rate must be a number in [0, 1), 'expected', 'nominal' or 'estimate'; "
                          f"got {value!r}")


# --------------------------------------------------------------------------- the methods' shared base
# What the two networks see of a batch: 'shared' (the codes: the same images) or 'own' (each its own augmented
# view: in lp mode one of the K cached feature views each, distinct per sample; in fft a fresh augmentation).
PAIR_VIEWS = ("shared", "own")
# τ when none is given: 'expected' (what the cell's noise model flips in expectation), 'nominal' (the codes'
# forget_rate = noise_rate, JoCoR's halved under asymmetric noise), 'estimate' (from a probe's losses).
FORGET_RATE_RULES = ("expected", "nominal", "estimate")


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
    """(τ, how it was obtained) for a forget_rate option.

    A number: τ as given. 'expected': the share of samples the cell's noise model flips in expectation,
    ``nlbench.noise.expected_flip_rate`` of its expected transition matrix (``ctx.oracle_transition``), a
    uniform class prior — the one rule for the family: the codes set τ = noise_rate for noise whose rate is
    its flip rate (symmetric over the other C − 1 classes, pair-flip) and JoCoR halves it for its CIFAR-10/
    MNIST asymmetric maps, which move 5 of 10 classes, so both are the expected flip rate of their own noise.
    'nominal': the cell's nominal rate, times ``nominal_scale[noise model]`` where a code scales it (JoCoR:
    asym ½). 'estimate': ``estimate_noise_rate``. None: 'expected' under synthetic noise ('nominal' where the
    cell has no expected matrix, e.g. a hand-built context), 'estimate' under real noise (noise 'none')."""
    synthetic = ctx.noise is not None and ctx.noise.model != "none"
    if option is None:
        option = ("expected" if ctx.oracle_transition is not None else "nominal") if synthetic else "estimate"
    if not isinstance(option, str):
        return float(option), {"forget_rate_rule": "given"}
    if option in ("expected", "nominal") and not synthetic:
        raise ConfigError(f"{name}: forget_rate {option!r} needs a synthetic nominal noise rate; this cell has "
                          f"{'none' if ctx.noise is None else 'real noise'} (use 'estimate' or a number)")
    if option == "expected":
        if ctx.oracle_transition is None:
            raise ConfigError(f"{name}: forget_rate 'expected' needs the noise model's expected transition "
                              "matrix, which this cell does not have (use 'nominal', 'estimate' or a number)")
        rate = expected_flip_rate(ctx.oracle_transition)
        return rate, {"forget_rate_rule": "expected", "nominal_rate": ctx.noise.rate,
                      "expected_flip_rate": round(rate, 6), "noise_model": ctx.noise.model}
    if option == "nominal":
        scale = (nominal_scale or {}).get(ctx.noise.model, 1.0)
        return float(ctx.noise.rate * scale), {"forget_rate_rule": "nominal", "nominal_rate": ctx.noise.rate,
                                               "nominal_scale": scale, "noise_model": ctx.noise.model}
    rate, details = estimate_noise_rate(ctx)
    ctx.log(f"{name}: noise rate estimated at {rate:.4f} from a linear probe's losses")
    return rate, {"forget_rate_rule": "estimate", "estimate": details}


def check_small_loss_fields(method: SmallLossMethod, name: str) -> None:
    """Ranges of the fields Co-teaching, Co-teaching+ and JoCoR share (``SmallLossMethod``); raise ConfigError
    naming ``name``."""
    if isinstance(method.forget_rate, str):
        if method.forget_rate not in FORGET_RATE_RULES:
            raise ConfigError(f"unknown {name} forget_rate {method.forget_rate!r}; expected a number in [0, 1) or "
                              f"one of: {', '.join(FORGET_RATE_RULES)}")
    elif method.forget_rate is not None:
        check_forget_rate(method.forget_rate, name)
    if method.num_gradual is not None and (isinstance(method.num_gradual, bool) or method.num_gradual < 1):
        raise ConfigError(f"{name} num_gradual must be an integer ≥ 1; got {method.num_gradual!r}")
    if method.ramp is not None and method.ramp not in FORGET_RAMPS:
        raise ConfigError(f"unknown {name} ramp {method.ramp!r}; expected one of: {', '.join(FORGET_RAMPS)}")
    if method.ramp == "steps" and method.num_gradual is not None:
        raise ConfigError(f"{name}: num_gradual (T_k in this run's epochs) needs ramp 'epochs'; ramp 'steps' keeps "
                          "the codes' T_k = 10 of 200 epochs as a share of the steps")
    if method.schedule not in FORGET_SCHEDULES:
        raise ConfigError(f"unknown {name} schedule {method.schedule!r}; expected one of: "
                          f"{', '.join(FORGET_SCHEDULES)}")
    if method.predict not in PREDICTIONS:
        raise ConfigError(f"unknown {name} predict {method.predict!r}; expected one of: {', '.join(PREDICTIONS)}")
    if method.epochs is not None and method.epochs < 1:
        raise ConfigError(f"{name} epochs must be ≥ 1; got {method.epochs}")
    if method.pair_views not in PAIR_VIEWS:
        raise ConfigError(f"unknown {name} pair_views {method.pair_views!r}; expected one of: {', '.join(PAIR_VIEWS)}")
    if method.pair_views == "own" and not method.augment:
        raise ConfigError(f"{name}: pair_views 'own' (each network its own augmented view) needs augment = true")
    if method.views < 1:
        raise ConfigError(f"{name} views (K) must be ≥ 1; got {method.views}")


class SmallLossRun:
    """What a Co-teaching-family run resolves once: the pair, the budget, T_k, τ and the epoch bookkeeping
    (each network's selected samples of the epoch, its summed loss)."""

    def __init__(self, method: SmallLossMethod, ctx: CellContext, name: str, *,
                 nominal_scale: dict | None = None) -> None:
        cfg = ctx.engine.config
        self.ctx, self.name = ctx, name
        self.epochs = method.epochs or (cfg.lp_epochs if ctx.mode == "lp" else cfg.fft_epochs)
        # A given T_k is in this run's epochs; otherwise the codes' ramp keeps its share of the steps.
        self.ramp = method.ramp or ("epochs" if method.num_gradual is not None else "steps")
        self.num_gradual = scaled_num_gradual(self.epochs, method.num_gradual)
        # The probe of 'estimate' runs before the pair is built: the pair's seeded draws stay the same.
        self.tau, self.tau_source = resolve_forget_rate(method.forget_rate, ctx, name, nominal_scale=nominal_scale)
        if not 0.0 <= self.tau < 1.0:
            raise ConfigError(f"{name}: forget rate τ = {self.tau} is outside [0, 1)")
        self.schedule = method.schedule
        self.pair = NetworkPair(ctx.engine, ctx.mode, views=method.views if method.augment else 0,
                                epochs=self.epochs)
        self.device = self.pair.device
        self.batches = self.pair.batches_per_epoch()
        self.total_steps = self.epochs * self.batches
        self.epoch_rates: list[float] = []
        self.own_views = method.pair_views == "own"

    def forget(self, epoch: int, batch: int) -> float:
        """The forget rate of batch ``batch`` (0-based, in the epoch) of 0-based ``epoch``, by the run's ramp."""
        if self.ramp == "epochs":
            rate = forget_rate(epoch, self.tau, self.num_gradual, self.schedule)
        else:
            rate = forget_rate_at_step(epoch * self.batches + batch, self.total_steps, self.tau, self.schedule)
        self.epoch_rates.append(rate)
        return rate

    def epoch_forget_rate(self) -> float:
        """The mean forget rate of the epoch's batches (what its record shows)."""
        return round(float(np.mean(self.epoch_rates)), 6) if self.epoch_rates else float("nan")

    def ramp_record(self) -> dict:
        """How the ramp met this run: 'epochs' (T_k epochs) or 'steps' (the step τ is first reached at)."""
        if self.ramp == "epochs":
            return {"forget_ramp": "epochs", "num_gradual": self.num_gradual}
        reached = next((s for s in range(self.total_steps)
                        if forget_rate_at_step(s, self.total_steps, self.tau, self.schedule) >= self.tau),
                       self.total_steps)
        return {"forget_ramp": "steps", "ramp_steps": reached, "total_steps": self.total_steps,
                "ramp_share": f"{REF_NUM_GRADUAL} of {REF_EPOCHS} epochs"}

    def inputs(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """What each network sees of the batch ``ids`` (one draw for both, or one each with pair_views 'own');
        both networks' predictions on it are counted for the record's ``pair_disagreement`` by the caller."""
        return self.pair.draw(ids, 2) if self.own_views else self.pair.draw(ids, 1) * 2

    def logits(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """Both networks' logits on the batch ``ids`` (with gradients), their disagreement noted."""
        xs = self.inputs(ids)
        logits = [self.pair.forward(k, xs[k], grad=True) for k in (0, 1)]
        self.pair.note_disagreement(logits[0], logits[1])
        return logits

    def new_epoch(self, networks: int = 2) -> None:
        self.epoch_rates = []
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
                **self.tau_source, **self.ramp_record(), "forget_schedule": self.schedule,
                "pair_views": "own" if self.own_views else "shared",
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
    """The options the Co-teaching family shares, with the official codes' defaults (τ: the expected flip rate
    of the cell's noise, which is what the codes' forget_rate = noise_rate, and JoCoR's halving under its
    asymmetric noise, amount to on the noise they ran; ``resolve_forget_rate``)."""

    forget_rate: float | str | None = None  # None: 'expected' flip rate of the noise model; real noise 'estimate'
    num_gradual: int | None = None  # T_k in epochs (ramp 'epochs'); None: round(E/20) ≥ 1
    ramp: str | None = None  # None: 'steps' (code's 10 of 200 epochs as a share of the steps), 'epochs' if T_k given
    schedule: str = "code"  # code's linspace table; 'paper': R(T) = 1 − min(T/T_k·τ, τ)
    epochs: int | None = None  # None: the grid's lp_epochs / fft_epochs
    augment: bool = False  # code: transforms.ToTensor() only
    views: int = 2  # K cached augmented feature views in lp mode, with augment
    pair_views: str = "shared"  # code: both networks see the same images; 'own': each its own view (augment)
    predict: str = "net1"  # code evaluates each network; 'mean': both networks' mean logits
