"""UNICON (Karim, Rizve, Rahnavard, Mian, Shah, CVPR 2022): uniform selection and contrastive learning."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nlbench.engine.method_api import CellContext, Method, register_method
from nlbench.engine.network_pair import NetworkPair
from nlbench.engine.selection import (
    JSD_BASES,
    UNICON_CUTOFFS,
    UNICON_WEIGHT_RULES,
    jsd_to_labels,
    refinement_weights,
    unicon_selection_ratio,
    uniform_selection,
)
from nlbench.engine.semisup import check_semisup_fields, check_unit_interval, resolve_schedule
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

# Reference schedule (CIFAR-100, from scratch): 350 epochs with a 30-epoch warm-up; λ_u ramp 16 epochs.
REF_EPOCHS, REF_WARMUP, REF_RAMPUP = 350, 30, 16


@register_method("unicon", modes=("fft", "lp"), label="UNC", order=50, paper_name="UNICON",
                 source="Karim et al., CVPR 2022; github.com/nazmul-karim170/UNICON-Noisy-Label",
                 # DivideMix's passes plus two contrastive views of the unlabelled batch: ≈ 2 networks × 3.5.
                 fft_passes=7.0)
@dataclass(frozen=True)
class UNICON(Method):
    """UNICON: JSD-based class-uniform clean selection, then MixMatch plus a contrastive loss.

    Before each network's semi-supervised epoch: the two networks' mean prediction p_i on the
    un-augmented training set; d_i = JSD(one-hot ŷ_i, p_i); a cutoff; selection ratio
    SR = |{d < cutoff}|/N (one minus the filter rate R); from each class the ⌊SR·N/C⌋ samples of lowest d
    are labelled (uniform selection), the rest unlabelled. Labelled targets are co-refined with weights w
    and sharpened; unlabelled ones co-guessed by both networks. Loss L_X + λ_u(t)·L_U + λ_c·L_C + L_reg,
    L_C the SimCLR loss (temperature κ) between two further views of the unlabelled batch. Test
    prediction: the mean of both networks' logits. Schedule rule as DivideMix's, from 30 of 350 epochs:
    warm-up = round(3·E/35) clipped to [1, E − 1], ramp = 16·E/350 epochs.

    Where the paper and the reference code (github.com/nazmul-karim170/UNICON-Noisy-Label, Train_cifar.py
    and dataloader_cifar.py) disagree, the default is the code's, the paper's reading an option
    (docs/fidelity.md):
    - ``jsd_base``: 'e' (code: natural logs, d ≤ ln 2 ≈ 0.693) or '2' (paper: bits, d ≤ 1).
    - ``cutoff``: 'mean' (code: the cutoff is d_avg; its noise-adaptive branch needs d_avg > d_u = 0.7,
      above the nats bound, so it never runs) or 'adaptive' (paper: d_avg − (d_avg − d_min)/τ when
      d_avg > d_u). d_u and τ act only under 'adaptive'.
    - ``weight_rule``: 'reference' (code: divergences below 0.5 count as 0, so w = 1 there, else 1 − d)
      or 'paper' (w = 1 − d).
    The paper's reading throughout: jsd_base='2', cutoff='adaptive', weight_rule='paper'.
    Taken from the code where the paper leaves it open: the selection is recomputed before each network's
    turn; the unlabelled batch holds ⌊B/(2·SR)⌋ samples; the projection head is Linear(D, 128) + BatchNorm.

    Mode adaptations: views come from the engine's crop/flip augmentation (fft) or the K cached feature
    views (lp); the paper's AutoAugment "strong" views are not available, so the mixed and contrasted
    views are further draws of the same augmentation. In lp mode there is no trainable encoder for a
    projection head to share, so the contrastive loss acts on the L2-normalised logits of the linear head.
    """

    d_u: float = 0.7  # paper, CIFAR-100
    tau: float = 5.0  # paper: filter coefficient τ
    lambda_u: float = 30.0  # paper / code, CIFAR-100
    lambda_c: float = 0.025  # paper / code, CIFAR-100
    T: float = 0.5  # sharpening temperature
    alpha: float = 4.0  # Beta(α, α) mixup
    contrastive_temperature: float = 0.05  # κ (reference code's SupConLoss temperature)
    projection_dim: int = 128  # fft mode only
    warmup_epochs: int | None = None  # None: the schedule rule above (code: 30 of 350 on CIFAR-100)
    rampup_epochs: float | None = None  # None: the schedule rule above (code: 16 epochs)
    epochs: int | None = None  # None: the grid's lp_epochs / fft_epochs
    views: int = 2  # K cached augmented feature views per image in lp mode
    confidence_penalty: bool | None = None  # None: on for asymmetric noise, during warm-up (code)
    jsd_base: str = "e"  # code; '2' = paper (bits)
    cutoff: str = "mean"  # code; 'adaptive' = paper (d_u, tau)
    weight_rule: str = "reference"  # code; 'paper' = w = 1 - d

    def __post_init__(self) -> None:
        check_unit_interval("d_u", self.d_u, "UNICON")
        if self.tau < 1:
            raise ConfigError(f"UNICON tau must be ≥ 1 (the cutoff then stays in [d_min, d_avg]); got {self.tau}")
        if self.lambda_c < 0:
            raise ConfigError(f"UNICON lambda_c must be ≥ 0; got {self.lambda_c}")
        if self.contrastive_temperature <= 0:
            raise ConfigError(f"UNICON contrastive_temperature must be > 0; got {self.contrastive_temperature}")
        if self.projection_dim < 1:
            raise ConfigError(f"UNICON projection_dim must be ≥ 1; got {self.projection_dim}")
        if self.jsd_base not in JSD_BASES:
            raise ConfigError(f"unknown UNICON jsd_base {self.jsd_base!r}; expected one of: {', '.join(JSD_BASES)}")
        if self.cutoff not in UNICON_CUTOFFS:
            raise ConfigError(f"unknown UNICON cutoff {self.cutoff!r}; expected one of: {', '.join(UNICON_CUTOFFS)}")
        if self.weight_rule not in UNICON_WEIGHT_RULES:
            raise ConfigError(f"unknown UNICON weight_rule {self.weight_rule!r}; expected one of: "
                              f"{', '.join(UNICON_WEIGHT_RULES)}")
        check_semisup_fields(self, "UNICON")

    def select(self, pair: NetworkPair) -> tuple[np.ndarray, np.ndarray, float]:
        """(labelled indices, JSD of every training sample, selection ratio) from both networks' mean
        prediction on the un-augmented training set."""
        trainer = pair.trainer
        probs = 0.5 * (torch.softmax(pair.eval_logits(0, "train"), 1) + torch.softmax(pair.eval_logits(1, "train"), 1))
        jsd = jsd_to_labels(probs.cpu().numpy(), trainer.labels, base=JSD_BASES[self.jsd_base])
        _, ratio = unicon_selection_ratio(jsd, d_u=self.d_u, tau=self.tau, cutoff=self.cutoff)
        return uniform_selection(jsd, trainer.labels, trainer.num_classes, ratio), jsd, ratio

    def run(self, ctx: CellContext) -> Fit:
        trainer, mode = ctx.engine, ctx.mode
        epochs, warmup, rampup, lambda_u, penalty = resolve_schedule(self, ctx, REF_EPOCHS, REF_WARMUP,
                                                                     REF_RAMPUP, "UNICON")
        pair = NetworkPair(trainer, mode, views=self.views, epochs=epochs,
                           projection_dim=self.projection_dim if mode == "fft" else None)

        def semi_supervised_epoch(epoch: int, state: dict) -> list[float]:
            losses, epoch_ratios = [], []
            for k in (0, 1):
                labelled, jsd, ratio = self.select(pair)
                epoch_ratios.append(round(ratio, 6))
                ctx.log_selection(labelled, epoch=epoch, phase=f"net{k + 1}")
                unlabelled = np.setdiff1d(np.arange(trainer.num_train), labelled)
                u_batch = int(pair.batch_size / (2 * ratio)) if ratio > 0 else pair.batch_size
                losses.append(pair.mixmatch_epoch(
                    k, labelled=labelled, weights=refinement_weights(jsd[labelled], self.weight_rule),
                    unlabelled=unlabelled, T=self.T,
                    alpha=self.alpha, lambda_u=lambda_u, epoch=epoch, warmup=warmup, rampup=rampup,
                    unlabelled_batch=max(1, u_batch), lambda_c=self.lambda_c,
                    contrastive_temperature=self.contrastive_temperature, separate_mix_views=True))
            state["selection_ratios"].append(epoch_ratios)
            return losses

        fit, state = pair.run_epochs("unicon", "UNICON", semi_supervised_epoch, {"selection_ratios": []},
                                     warmup=warmup, confidence_penalty=penalty)
        ratios = state["selection_ratios"]
        fit.extra.update({**pair.cost_summary(), "lambda_u": lambda_u, "warmup_epochs": warmup,
                          "rampup_epochs": round(rampup, 4),
                          "epochs": epochs, "views": self.views if mode == "lp" else None,
                          "confidence_penalty": penalty, "selection_ratios": ratios,
                          "jsd_base": self.jsd_base, "cutoff": self.cutoff, "weight_rule": self.weight_rule})
        return fit
