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
        raise ConfigError(f"{method} forget_rate must be a number in [0, 1), 'nominal' or 'estimate'; got {value!r}")


# --------------------------------------------------------------------------- the methods' shared base
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

    def __init__(self, method: SmallLossMethod, ctx: CellContext, name: str, *,
                 nominal_scale: dict | None = None) -> None:
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
