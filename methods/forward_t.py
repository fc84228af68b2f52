"""Forward loss correction (Patrini, Rozza, Menon, Nock, Qu, CVPR 2017: "Making Deep Neural Networks Robust
to Label Noise: a Loss Correction Approach"). Official code: github.com/giorgiop/loss-correction
(``loss.py: robust('forward')``, ``models.py: NoiseEstimator``, ``experiment.py``: the ``est_forward`` run)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nlbench.engine.losses import cross_entropy
from nlbench.engine.method_api import CellContext, Method, register_method
from nlbench.engine.train import Fit
from nlbench.engine.transition import anchor_transition, transition_error
from nlbench.errors import ConfigError

# Keras's epsilon: the code clips the prediction to [ε, 1 − ε] before multiplying by T (loss.py 27-29).
_EPSILON = 1e-7
# Transition matrices up to this many classes go into the record whole (CIFAR-100's would be 10⁴ numbers).
_RECORD_MATRIX_UP_TO = 20


class ForwardCorrectedLoss:
    """CE of the noisy label under the corrected prediction: −log (p̂ᵀ T)_ỹ, with p̂ = softmax(z) clipped to
    [1e-7, 1 − 1e-7] (loss.py 23-29), averaged over the batch."""

    def __init__(self, transition: np.ndarray) -> None:
        matrix = np.asarray(transition, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ConfigError(f"forward correction needs a square (C, C) transition matrix; got shape {matrix.shape}")
        if np.any(matrix < 0) or not np.allclose(matrix.sum(axis=1), 1.0, atol=1e-6):
            raise ConfigError("forward correction needs a row-stochastic transition matrix (entries ≥ 0, rows sum 1)")
        self.transition = torch.as_tensor(matrix, dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if self.transition.device != logits.device:
            self.transition = self.transition.to(logits.device)
        p = F.softmax(logits.float(), dim=1).clamp(_EPSILON, 1.0 - _EPSILON)
        noisy = p @ self.transition
        return -torch.log(noisy.gather(1, labels[:, None]).squeeze(1)).mean()


def clipped_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean −log clip(softmax(z), 1e-7, 1 − 1e-7)_y: the reference's CE (loss.py 6-10), the ``val_loss`` its
    checkpoint monitors."""
    p = F.softmax(logits.float(), dim=1).clamp(_EPSILON, 1.0 - _EPSILON)
    return float(-torch.log(p.gather(1, labels[:, None].long()).squeeze(1)).mean())


class LowestValidationLoss:
    """``on_epoch_end`` hook of the probe that estimates T: keeps a copy of the head at the epoch of lowest
    validation loss, as the reference's ``ModelCheckpoint(monitor='val_loss', save_best_only=True)`` keeps the
    CE network (models.py 94-98, reloaded at 132-133). Keras saves only on a strict improvement, so a tie keeps
    the earlier epoch."""

    def __init__(self, val_logits, val_labels: torch.Tensor) -> None:
        self.val_logits, self.val_labels = val_logits, val_labels
        self.losses: list[float] = []
        self.epoch, self.loss, self.state = -1, math.inf, None

    def __call__(self, epoch: int, head: torch.nn.Module) -> None:
        loss = clipped_cross_entropy(self.val_logits(head), self.val_labels)
        self.losses.append(loss)
        if loss < self.loss:
            self.epoch, self.loss = epoch, loss
            self.state = {k: v.detach().clone() for k, v in head.state_dict().items()}


_ANCHORS = ("code", "percentile", "argmax")
_TRANSITIONS = ("estimate", "oracle")
_ESTIMATOR_EPOCHS = ("lowest_val_loss", "last")
# Reference experiment.py 58-62: the filter on MNIST, CIFAR-10 (10 classes) and IMDB (2), off on CIFAR-100.
CODE_FILTER_MAX_CLASSES = 10


@register_method("forward_t", modes=("fft", "lp", "lp-fft"), label="Fwd-T", order=100,
                 source="Patrini et al., CVPR 2017; github.com/giorgiop/loss-correction")
@dataclass(frozen=True)
class ForwardT(Method):
    """Forward-corrected CE with a transition matrix T estimated from anchor points, or the cell's true one.

    ``transition="estimate"``: a linear probe trained with CE on the noisy labels (cached features) predicts
    p(ỹ | x) on the training set; T's row i is the prediction at class i's anchor (``nlbench.engine.transition``).
    The probe is taken at its epoch of lowest validation loss (``estimator_epoch="lowest_val_loss"``, the
    code's checkpoint) or at its last epoch (``"last"``).
    ``transition="oracle"``: T is the cell's expected transition matrix of its synthetic noise (an error
    under real noise, where none exists).

    Modes: 'lp' trains a fresh head with the corrected loss (the code re-builds its model before the
    corrected run); 'fft' fine-tunes the whole model with it; 'lp-fft' probes with it, then fine-tunes from
    the corrected probe (Kumar et al., ICLR 2022). The record keeps T̂, its anchors and, where the cell's
    noise is synthetic, how far T̂ lies from the true T.
    """

    transition: str = "estimate"  # issue 14: the paper's estimator; "oracle": the cell's expected T
    anchor: str = "code"  # code: the percentile filter where C ≤ filter_max_classes, else arg-max; "argmax": paper
    percentile: float = 97.0  # models.py 442-443: np.percentile(..., 97, interpolation='higher')
    filter_max_classes: int = CODE_FILTER_MAX_CLASSES  # experiment.py 58-62: filter at C ≤ 10, off at C = 100
    estimator_epoch: str = "lowest_val_loss"  # models.py 94-98, 132-133; "last": the probe's last epoch

    def __post_init__(self) -> None:
        if self.transition not in _TRANSITIONS:
            raise ConfigError(f"unknown transition {self.transition!r}; expected one of: {', '.join(_TRANSITIONS)}")
        if self.anchor not in _ANCHORS:
            raise ConfigError(f"unknown anchor {self.anchor!r}; expected one of: {', '.join(_ANCHORS)}")
        if not 0.0 < self.percentile < 100.0:
            raise ConfigError(f"forward_t percentile must lie in (0, 100); got {self.percentile}")
        if self.filter_max_classes < 0:
            raise ConfigError(f"forward_t filter_max_classes must be ≥ 0; got {self.filter_max_classes}")
        if self.estimator_epoch not in _ESTIMATOR_EPOCHS:
            raise ConfigError(f"unknown estimator_epoch {self.estimator_epoch!r}; expected one of: "
                              f"{', '.join(_ESTIMATOR_EPOCHS)}")

    def anchor_percentile(self, num_classes: int) -> float | None:
        """The percentile of the anchor filter, None for the plain arg-max. 'code' follows experiment.py
        58-62, which filters on its 2- and 10-class datasets and not on CIFAR-100: the filter where
        C ≤ ``filter_max_classes``. Above, a balanced class holds 1/C of the set, and once that falls
        below the 3 % the filter sets aside (C > 33) the anchors leave their class."""
        if self.anchor == "argmax" or (self.anchor == "code" and num_classes > self.filter_max_classes):
            return None
        return self.percentile

    def estimator_probe(self, ctx: CellContext) -> tuple[torch.nn.Module, dict]:
        """The CE probe that estimates T, at its epoch of lowest validation loss or at its last, and what the
        record keeps of that choice."""
        engine = ctx.engine
        val_labels = torch.as_tensor(engine.val_labels, device=engine.device)
        lowest = LowestValidationLoss(lambda head: engine.probe_logits(head, "val"), val_labels)
        probe = engine.linear_probe(cross_entropy, desc="Fwd-T: CE probe for T", on_epoch_end=lowest)
        head, epoch = probe.model, len(lowest.losses) - 1
        if self.estimator_epoch == "lowest_val_loss":
            if lowest.state is None:  # no finite validation loss: the probe diverged; keep its last epoch
                ctx.log("Fwd-T: no epoch of the CE probe had a finite validation loss; T from its last epoch")
            else:
                head.load_state_dict(lowest.state)
                epoch = lowest.epoch
        info = {"estimator_epoch": self.estimator_epoch, "estimator_probe_epoch": epoch,
                "estimator_probe_val_loss": round(lowest.losses[epoch], 6),
                "estimator_probe_val_losses": [round(v, 6) for v in lowest.losses],
                "estimator_probe_test_acc_best": probe.test_acc_best,
                "estimator_probe_test_acc_last": probe.test_acc_last}
        return head, info

    def estimate(self, ctx: CellContext) -> tuple[np.ndarray, dict]:
        """(T̂, what the record keeps of the estimation): a CE probe's training-set predictions at the anchors."""
        engine = ctx.engine
        head, probe_info = self.estimator_probe(ctx)
        probs = torch.softmax(engine.probe_logits(head, "train"), dim=1).cpu().numpy()
        percentile = self.anchor_percentile(ctx.num_classes)
        matrix, anchors = anchor_transition(probs, percentile=percentile)
        info = {"anchor_rule": "argmax" if percentile is None else f"percentile {percentile:g}",
                "anchor": self.anchor, "anchor_filter_max_classes": self.filter_max_classes,
                "anchors": [int(a) for a in anchors], **probe_info}
        if ctx.oracle_transition is not None:
            info["transition_error"] = transition_error(matrix, ctx.oracle_transition)
        return matrix, info

    def run(self, ctx: CellContext) -> Fit:
        if self.transition == "oracle":
            if ctx.oracle_transition is None:
                raise ConfigError("forward_t transition='oracle' needs the cell's synthetic-noise transition matrix, "
                                  "and this cell has real noise (none exists); use transition='estimate'")
            matrix, info = np.asarray(ctx.oracle_transition, dtype=np.float64), {}
        else:
            matrix, info = self.estimate(ctx)
        engine, loss = ctx.engine, ForwardCorrectedLoss(matrix)
        if ctx.mode == "lp":
            fit = engine.linear_probe(loss, desc="LP Fwd-T")
        elif ctx.mode == "fft":
            fit = engine.fine_tune(loss, desc="FFT Fwd-T")
        else:
            probe = engine.linear_probe(loss, desc="LP-FT Fwd-T: LP")
            fit = engine.fine_tune(loss, head=probe.model, desc="LP-FT Fwd-T: FT")
            fit.extra.update(lp_test_acc_best=probe.test_acc_best, lp_test_acc_last=probe.test_acc_last)
        fit.extra.update(info)
        fit.extra["transition"] = self.transition
        fit.extra["transition_diag_mean"] = float(np.diag(matrix).mean())
        if matrix.shape[0] <= _RECORD_MATRIX_UP_TO:
            fit.extra["transition_matrix"] = np.round(matrix, 6).tolist()
        return fit
