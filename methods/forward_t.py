"""Forward loss correction (Patrini, Rozza, Menon, Nock, Qu, CVPR 2017: "Making Deep Neural Networks Robust
to Label Noise: a Loss Correction Approach"). Official code: github.com/giorgiop/loss-correction
(``loss.py: robust('forward')``, ``models.py: NoiseEstimator``, ``experiment.py``: the ``est_forward`` run)."""

from __future__ import annotations

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


_ANCHORS = ("code", "percentile", "argmax")
_TRANSITIONS = ("estimate", "oracle")


@register_method("forward_t", modes=("fft", "lp", "lp-fft"), label="Fwd-T", order=100,
                 source="Patrini et al., CVPR 2017; github.com/giorgiop/loss-correction")
@dataclass(frozen=True)
class ForwardT(Method):
    """Forward-corrected CE with a transition matrix T estimated from anchor points, or the cell's true one.

    ``transition="estimate"``: a linear probe trained with CE on the noisy labels (cached features) predicts
    p(ỹ | x) on the training set; T's row i is the prediction at class i's anchor (``nlbench.engine.transition``).
    ``transition="oracle"``: T is the cell's expected transition matrix of its synthetic noise (an error
    under real noise, where none exists).

    Modes: 'lp' trains a fresh head with the corrected loss (the code re-builds its model before the
    corrected run); 'fft' fine-tunes the whole model with it; 'lp-fft' probes with it, then fine-tunes from
    the corrected probe (Kumar et al., ICLR 2022). The record keeps T̂, its anchors and, where the cell's
    noise is synthetic, how far T̂ lies from the true T.
    """

    transition: str = "estimate"  # issue 14: the paper's estimator; "oracle": the cell's expected T
    anchor: str = "code"  # code: 97th-percentile filter, arg-max on CIFAR-100 (experiment.py 59-62); "argmax": paper
    percentile: float = 97.0  # models.py 442-443: np.percentile(..., 97, interpolation='higher')

    def __post_init__(self) -> None:
        if self.transition not in _TRANSITIONS:
            raise ConfigError(f"unknown transition {self.transition!r}; expected one of: {', '.join(_TRANSITIONS)}")
        if self.anchor not in _ANCHORS:
            raise ConfigError(f"unknown anchor {self.anchor!r}; expected one of: {', '.join(_ANCHORS)}")
        if not 0.0 < self.percentile < 100.0:
            raise ConfigError(f"forward_t percentile must lie in (0, 100); got {self.percentile}")

    def anchor_percentile(self, dataset: str) -> float | None:
        """The percentile of the anchor filter, None for the plain arg-max. 'code' follows experiment.py
        59-62: arg-max on CIFAR-100 (and CIFAR-100N, the same images), the filter on every other dataset."""
        if self.anchor == "argmax" or (self.anchor == "code" and dataset in ("cifar100", "cifar100n")):
            return None
        return self.percentile

    def estimate(self, ctx: CellContext) -> tuple[np.ndarray, dict]:
        """(T̂, what the record keeps of the estimation): a CE probe's training-set predictions at the anchors."""
        engine = ctx.engine
        probe = engine.linear_probe(cross_entropy, desc="Fwd-T: CE probe for T")
        probs = torch.softmax(engine.probe_logits(probe.model, "train"), dim=1).cpu().numpy()
        percentile = self.anchor_percentile(ctx.dataset.name)
        matrix, anchors = anchor_transition(probs, percentile=percentile)
        info = {"anchor_rule": "argmax" if percentile is None else f"percentile {percentile:g}",
                "anchors": [int(a) for a in anchors],
                "estimator_probe_test_acc_best": probe.test_acc_best,
                "estimator_probe_test_acc_last": probe.test_acc_last}
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
