"""DivideMix (Li, Socher, Hoi, ICLR 2020): learning with noisy labels as semi-supervised learning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nlbench.errors import ConfigError
from nlbench.network_pair import NetworkPair
from nlbench.registry import register_method
from nlbench.selection import gmm_clean_probability
from nlbench.semisup import check_unit_interval, scaled_schedule
from nlbench.train import per_sample_ce

# λ_u per nominal noise rate for CIFAR-100, as the issue that specified this method gives it (the
# paper picks λ_u from {0, 25, 50, 150} on a validation set, per setting): the entry of the largest
# tabulated rate ≤ the cell's rate applies, so sym 0.6 gets 25 and asym/inst 0.4 get 0.
LAMBDA_U_BY_RATE: tuple[tuple[float, float], ...] = ((0.9, 150.0), (0.5, 25.0), (0.2, 0.0))

# The reference schedule the warm-up and ramp are scaled from (CIFAR-100, training from scratch).
REF_EPOCHS, REF_WARMUP, REF_RAMPUP = 300, 30, 16


def lambda_u_for_rate(rate: float) -> float:
    """λ_u of ``LAMBDA_U_BY_RATE`` for a nominal noise rate (0 below the smallest tabulated rate)."""
    for tabulated, value in LAMBDA_U_BY_RATE:
        if rate >= tabulated - 1e-9:
            return value
    return 0.0


def co_divide(clean_prob_1: np.ndarray, clean_prob_2: np.ndarray, p_threshold: float
              ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((labelled mask, w) of network 1, (labelled mask, w) of network 2).

    Co-divide: each network trains on the division made by the *other* network's GMM, so network 1's
    labelled set is {i : clean_prob_2[i] > p_threshold} with co-refinement weights w = clean_prob_2,
    and vice versa (DivideMix Algorithm 1, lines 4-8).
    """
    clean_prob_1, clean_prob_2 = np.asarray(clean_prob_1), np.asarray(clean_prob_2)
    return (clean_prob_2 > p_threshold, clean_prob_2), (clean_prob_1 > p_threshold, clean_prob_1)


@register_method("dividemix", modes=("fft", "lp"))
@dataclass(frozen=True)
class DivideMix:
    """DivideMix: two networks, GMM co-divide, MixMatch with co-refinement and co-guessing.

    Per epoch after a CE warm-up (Algorithm 1): each network's per-sample CE on the un-augmented
    training set, min-max normalised to [0, 1], is fitted by a 2-component GMM (max_iter 10, tol 1e-2,
    reg_covar 5e-4); network k trains on the division of the other network (labelled: clean
    probability > p_threshold, weighted by it in co-refinement; unlabelled: the rest) with MixMatch
    (M = 2 views, sharpening T, mixup λ' = max(λ, 1 − λ), λ ~ Beta(α, α)), loss L_X + λ_u(t)·L_U + L_reg,
    λ_u ramped linearly over ``rampup_epochs`` after the warm-up. Test prediction: the mean of both
    networks' logits. Formulas: ``nlbench.semisup``.

    Schedule rule: the reference warm-up (30 of 300 epochs on CIFAR-100) and ramp (16 epochs) keep their
    share of this run's budget E (``epochs``, default the grid's lp_epochs or fft_epochs): warm-up =
    round(E/10) clipped to [1, E − 1], ramp = 16·E/300 epochs; E = 20 gives 2 and 1.07. The rule keeps
    the *share* of the budget, so the budget itself must be large enough in optimiser steps: on CIFAR-100
    a warm-up epoch is hundreds of steps, on a 1,257-image set five (the record's ``warmup_steps``).

    From the reference code, where the paper is silent: at 90 % noise the GMM's input is the mean of the
    last 5 epochs' normalised losses (``loss_window``). Optimiser, learning rate and batch size B are the
    engine's (``[train]``), so LP-DivideMix and LP-CE differ only in the method; the rate schedule steps
    once per epoch.
    """

    p_threshold: float = 0.5  # paper / reference code: τ = 0.5
    T: float = 0.5  # paper: sharpening temperature 0.5
    alpha: float = 4.0  # paper: Beta(4, 4) on CIFAR
    lambda_u: float | None = None  # None: LAMBDA_U_BY_RATE at the cell's nominal noise rate
    warmup_epochs: int | None = None  # None: the schedule rule above (paper: 30 of 300 on CIFAR-100)
    rampup_epochs: float | None = None  # None: the schedule rule above (reference code: 16 epochs)
    epochs: int | None = None  # None: the grid's lp_epochs / fft_epochs
    views: int = 2  # K cached augmented feature views per image in lp mode (M = 2 views are drawn from them)
    confidence_penalty: bool | None = None  # None: on for asymmetric noise (paper §3.3), during warm-up
    loss_window: int | None = None  # None: 5 at a nominal rate ≥ 0.9 (reference code), else 1

    def __post_init__(self) -> None:
        check_unit_interval("p_threshold", self.p_threshold, "DivideMix")
        _validate_common(self, "DivideMix")

    def clean_probability(self, pair: NetworkPair, k: int, seed: int, history: list[np.ndarray], window: int
                          ) -> np.ndarray:
        """(N,) GMM clean probability of each training sample from network k's per-sample CE loss.

        The loss is min-max normalised and appended to ``history`` (which keeps the last ``window``
        entries); the GMM sees their mean (the reference code's smoothing at 90 % noise, where one epoch's losses are too
        noisy to split).
        """
        losses = per_sample_ce(pair.eval_logits(k, "train"), pair.trainer.labels)
        span = losses.max() - losses.min()
        history.append((losses - losses.min()) / span if span > 0 else np.zeros_like(losses))
        del history[:-window]  # older epochs never reach a GMM again
        return gmm_clean_probability(np.mean(history, axis=0), seed=seed)

    def run(self, trainer, mode: str):
        epochs, warmup, rampup, lambda_u, penalty = resolve_schedule(self, trainer, mode, REF_EPOCHS, REF_WARMUP,
                                                                     REF_RAMPUP, "DivideMix")
        window = self.loss_window or (5 if trainer.nominal_noise and trainer.nominal_noise[1] >= 0.9 - 1e-9 else 1)
        pair = NetworkPair(trainer, mode, views=self.views, epochs=epochs)
        fit = pair.fit()
        first, saved = pair.resume(fit, "dividemix")
        labelled_sizes = list(saved.get("labelled_sizes", []))
        histories = tuple([h.cpu().numpy() for h in saved.get(f"loss_history{k}", [])] for k in (0, 1))
        for epoch in pair.epoch_range(first, "DivideMix"):
            if epoch < warmup:
                losses = [pair.warmup_epoch(k, confidence_penalty=penalty) for k in (0, 1)]
            else:
                pair.end_warmup("DivideMix")
                probs = [self.clean_probability(pair, k, trainer.seed, histories[k], window) for k in (0, 1)]
                divisions = co_divide(probs[0], probs[1], self.p_threshold)
                losses, sizes = [], []
                for k, (mask, w) in enumerate(divisions):
                    trainer.log_selection(mask, epoch=epoch, phase=f"net{k + 1}")
                    labelled = np.flatnonzero(mask)
                    sizes.append(len(labelled))
                    losses.append(pair.mixmatch_epoch(
                        k, labelled=labelled, weights=w[labelled], unlabelled=np.flatnonzero(~mask), T=self.T,
                        alpha=self.alpha, lambda_u=lambda_u, epoch=epoch, warmup=warmup, rampup=rampup))
                labelled_sizes.append(sizes)
            pair.end_epoch()
            finite = [v for v in losses if np.isfinite(v)]
            trainer.record_epoch(fit, epoch, float(np.mean(finite)) if finite else float("nan"), pair.mean_logits,
                                 last=epoch == epochs - 1)
            pair.finish_epoch(fit, epoch, "dividemix", {
                "labelled_sizes": labelled_sizes,
                **{f"loss_history{k}": [torch.from_numpy(h) for h in histories[k]] for k in (0, 1)}})
        fit.extra.update({**pair.cost_summary(), "lambda_u": lambda_u, "warmup_epochs": warmup,
                          "rampup_epochs": round(rampup, 4),
                          "epochs": epochs, "views": self.views if mode == "lp" else None,
                          "confidence_penalty": penalty, "loss_window": window, "labelled_sizes": labelled_sizes})
        return fit


def _validate_common(method, name: str) -> None:
    """Ranges shared by DivideMix and UNICON."""
    if method.T <= 0:
        raise ConfigError(f"{name} T must be > 0; got {method.T}")
    if method.alpha <= 0:
        raise ConfigError(f"{name} alpha must be > 0; got {method.alpha}")
    if method.lambda_u is not None and method.lambda_u < 0:
        raise ConfigError(f"{name} lambda_u must be ≥ 0; got {method.lambda_u}")
    if method.views < 1:
        raise ConfigError(f"{name} views (K) must be ≥ 1; got {method.views}")
    if method.epochs is not None and method.epochs < 1:
        raise ConfigError(f"{name} epochs must be ≥ 1; got {method.epochs}")
    if method.warmup_epochs is not None and method.warmup_epochs < 0:
        raise ConfigError(f"{name} warmup_epochs must be ≥ 0; got {method.warmup_epochs}")
    if method.warmup_epochs is not None and method.epochs is not None and method.warmup_epochs >= method.epochs:
        raise ConfigError(f"{name} warmup_epochs ({method.warmup_epochs}) must be < epochs ({method.epochs})")
    if method.rampup_epochs is not None and method.rampup_epochs < 0:
        raise ConfigError(f"{name} rampup_epochs must be ≥ 0; got {method.rampup_epochs}")
    if getattr(method, "loss_window", None) is not None and method.loss_window < 1:
        raise ConfigError(f"{name} loss_window must be ≥ 1; got {method.loss_window}")


def resolve_schedule(method, trainer, mode: str, ref_epochs: int, ref_warmup: int, ref_rampup: float, name: str
                     ) -> tuple[int, int, float, float, bool]:
    """(epochs, warm-up epochs, ramp epochs, λ_u, confidence penalty) of a run, defaults resolved."""
    cfg = trainer.config
    epochs = method.epochs or (cfg.lp_epochs if mode == "lp" else cfg.fft_epochs)
    warmup, rampup = scaled_schedule(epochs, ref_epochs=ref_epochs, ref_warmup=ref_warmup, ref_rampup=ref_rampup,
                                     warmup=method.warmup_epochs, rampup=method.rampup_epochs)
    noise = trainer.nominal_noise
    lambda_u = method.lambda_u
    if lambda_u is None:
        if noise is None:
            raise ConfigError(f"{name}: lambda_u must be given when the nominal noise rate is unknown")
        lambda_u = lambda_u_for_rate(noise[1])
    penalty = method.confidence_penalty
    if penalty is None:
        penalty = noise is not None and noise[0] == "asym"
    if warmup >= epochs:
        trainer.log(f"{name}: warm-up takes all {epochs} epochs; no semi-supervised epoch runs")
    return epochs, warmup, rampup, float(lambda_u), bool(penalty)
