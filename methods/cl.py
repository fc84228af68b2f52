"""Confident learning (Northcutt, Jiang, Chuang, JAIR 2021) via cleanlab: prune flagged labels, train on the rest.

cleanlab is AGPL-3.0 and optional (``pip install nlbench[cl]``); it is imported lazily, only when a
selection runs, so the core package never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nlbench.engine.losses import cross_entropy
from nlbench.engine.method_api import CellContext, Method, register_method
from nlbench.engine.selection import CL_FILTERS, cl_select, require_cleanlab
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError


@register_method("cl", modes=("fft", "lp"), label="CL", order=60,
                 source="Northcutt, Jiang & Chuang, JAIR 2021; cleanlab.filter.find_label_issues")
@dataclass(frozen=True)
class CL(Method):
    """Confident learning: cleanlab flags label issues from out-of-fold probe probabilities; CE on the rest.

    1. K-fold linear probes (CE, the engine's LP recipe) on cached features give out-of-sample
       predicted probabilities of every training sample.
    2. ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=...)`` flags likely label
       errors; the kept set is the rest (logged as the selection, epoch 0).
    3. A linear probe (lp) or full fine-tuning (fft) with CE on the kept set.
    """

    # Its fft mode trains cross-validated linear probes too: the [train] lp_* fields enter its config hash.
    probes_in_fft_mode: ClassVar[bool] = True
    folds: int = 5  # cleanlab's default cv_n_folds
    filter_by: str = "prune_by_noise_rate"  # cleanlab's default
    probe_epochs: int | None = None  # None: the grid's lp_epochs

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"CL folds must be ≥ 2; got {self.folds}")
        if self.filter_by not in CL_FILTERS:
            raise ConfigError(f"CL filter_by {self.filter_by!r}; expected one of: {', '.join(CL_FILTERS)}")
        if self.probe_epochs is not None and self.probe_epochs < 1:
            raise ConfigError(f"CL probe_epochs must be ≥ 1; got {self.probe_epochs}")
        require_cleanlab()

    def check_train_size(self, num_train: int) -> None:
        # Each fold holds out at least one image (sklearn's KFold refuses more folds than samples).
        if num_train < self.folds:
            fix = f"set params = {{ folds = {num_train} }} or give" if num_train >= 2 else "give"
            raise ConfigError(f"CL's {self.folds} folds need at least {self.folds} training images; the dataset has "
                              f"{num_train} training images: {fix} more training images")

    def run(self, ctx: CellContext) -> Fit:
        trainer, mode = ctx.engine, ctx.mode
        keep = cl_select(trainer, folds=self.folds, epochs=self.probe_epochs, filter_by=self.filter_by)
        ctx.log_selection(keep, epoch=0, phase="cl")
        index = np.flatnonzero(keep)
        if len(index) == 0:
            raise RuntimeError("confident learning flagged every training sample; nothing left to train on")
        if mode == "lp":
            fit = trainer.linear_probe(cross_entropy, index=index, desc="CL LP")
        else:
            fit = trainer.fine_tune(cross_entropy, index=index, desc="CL FFT")
        fit.extra["kept"] = int(len(index))
        return fit
