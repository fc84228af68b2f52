"""Co-teaching+ (Yu et al., ICML 2019): Co-teaching on the samples where the two networks disagree."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.engine.method_api import CellContext, register_method
from nlbench.engine.small_loss import (
    SmallLossMethod,
    SmallLossRun,
    check_small_loss_fields,
    coteaching_step,
    disagreement,
)
from nlbench.engine.train import Fit
from nlbench.errors import ConfigError

# The code's init_epoch (plain Co-teaching before it) per dataset, of n_epoch = 200 (main.py): CIFAR-10 20,
# CIFAR-100 5. A dataset takes the CIFAR whose class count is nearer on a log scale (C ≤ 31: CIFAR-10), the
# rule DivideMix's published settings use in this repository.
REF_EPOCHS = 200
INIT_EPOCH = {"cifar10": 20, "cifar100": 5}
# The code's no-disagreement rule: a batch without disagreement trains on all its samples while
# epoch · i < 5000 (its ``step`` argument: the epoch times the batch index within the epoch), at its CIFAR
# budget of 200 epochs of 390 batches (50,000 // 128, drop_last). 'scaled' keeps that product as its share of
# this run's epochs × batches; 'code' applies 5000 as written (on small sets it never expires).
ALL_SAMPLES_STEPS = 5000
REF_BATCHES = 390
WHOLE_BATCH_RULES = ("scaled", "code")
LOSS_INPUTS = ("softmax", "logits")


def trains_whole_batch(epoch: int, batch: int, epochs: int, batches: int, rule: str = "scaled") -> bool:
    """Whether a batch without disagreement trains on all its samples, at 0-based ``epoch`` and ``batch`` of a
    run of ``epochs`` × ``batches``: the code's (e + 1)·i < 5000 ('code'), or the same at the reference epoch
    and batch the step stands at, (e + 1)·(200/E) · i·(390/n_b) < 5000 ('scaled')."""
    if rule == "code":
        return (epoch + 1) * batch < ALL_SAMPLES_STEPS
    return (epoch + 1) * batch * REF_EPOCHS * REF_BATCHES < ALL_SAMPLES_STEPS * epochs * batches


@register_method("coteaching_plus", modes=("fft", "lp"), label="CoT+", order=120,
                 source="Yu et al., ICML 2019; github.com/xingruiyu/coteaching_plus",
                 fft_passes=2.0)  # two networks, each trained on every batch
@dataclass(frozen=True)
class CoTeachingPlus(SmallLossMethod):
    """Co-teaching+: until ``init_epoch`` plain Co-teaching; after it, per batch, only the samples on which
    the two networks' predictions (argmax) differ enter the small-loss exchange, whose kept share is
    (1 − forget rate) of the disagreement set. Forget rate, τ and T_k as Co-teaching's (``coteaching``).

    From the code (loss.py, main.py) where the paper is silent or differs:
    - ``init_epoch``: None = the code's per-dataset value (CIFAR-10 20, CIFAR-100 5 of 200 epochs) keeping
      its share of this budget (round(E·init/200)); the code's epoch counter starts at 1, so epoch e (0-based)
      is plain Co-teaching while e + 1 < init_epoch.
    - ``loss_input``: 'softmax' (code: the disagreement branch passes softmax outputs to F.cross_entropy, which
      applies a second softmax) or 'logits' (paper: CE on the logits).
    - A batch without disagreement: both networks step on all its samples while (e + 1)·i < 5000 (i the batch
      index in the epoch; the code's ``step = epoch*i``), and skip it after. ``whole_batch_rule``: 'scaled'
      (default: the product at the reference epoch and batch this step stands at, its 200 × 390 budget kept
      as a share of this run's) or 'code' (5000 as written: never expires on a run of fewer steps).
    - ``pair_views``: 'shared' (the code: both networks see the same images) or 'own' (with ``augment``).
    - The code's extra division of the mean loss by the number kept is not applied (see ``coteaching``).
    """

    init_epoch: int | None = None  # None: code's 20 (CIFAR-10) / 5 (CIFAR-100) of 200 epochs, scaled
    loss_input: str = "softmax"  # code: CE of softmax outputs; 'logits': paper
    whole_batch_rule: str = "scaled"  # code's epoch·i < 5000 at its 200 × 390 budget, as a share; 'code': as written

    def __post_init__(self) -> None:
        check_small_loss_fields(self, "Co-teaching+")
        if self.init_epoch is not None and (isinstance(self.init_epoch, bool) or self.init_epoch < 0):
            raise ConfigError(f"Co-teaching+ init_epoch must be an integer ≥ 0; got {self.init_epoch!r}")
        if self.loss_input not in LOSS_INPUTS:
            raise ConfigError(f"unknown Co-teaching+ loss_input {self.loss_input!r}; expected one of: "
                              f"{', '.join(LOSS_INPUTS)}")
        if self.whole_batch_rule not in WHOLE_BATCH_RULES:
            raise ConfigError(f"unknown Co-teaching+ whole_batch_rule {self.whole_batch_rule!r}; expected one of: "
                              f"{', '.join(WHOLE_BATCH_RULES)}")

    def resolved_init_epoch(self, ctx: CellContext, epochs: int) -> tuple[int, str]:
        if self.init_epoch is not None:
            return self.init_epoch, "given"
        family = "cifar10" if ctx.num_classes <= 31 else "cifar100"
        return round(epochs * INIT_EPOCH[family] / REF_EPOCHS), f"{family} {INIT_EPOCH[family]} of {REF_EPOCHS}"

    def run(self, ctx: CellContext) -> Fit:
        run = SmallLossRun(self, ctx, "Co-teaching+")
        pair = run.pair
        init_epoch, init_source = self.resolved_init_epoch(ctx, run.epochs)
        if self.loss_input == "softmax":
            def ce(z, y):
                return F.cross_entropy(torch.softmax(z, 1), y, reduction="none")
        else:
            def ce(z, y):
                return F.cross_entropy(z, y, reduction="none")

        def epoch_fn(epoch: int, state: dict) -> list[float]:
            run.new_epoch()
            pair.train_both()
            disagreeing, whole = 0, 0
            for i, ids in enumerate(pair.epoch_batches()):
                forget = run.forget(epoch, i)
                logits = run.logits(ids)
                labels = pair.labels[ids.to(run.device)]
                if epoch + 1 < init_epoch:  # the code's plain Co-teaching phase (plain CE)
                    coteaching_step(run, ids, logits, labels, forget)
                    continue
                where = torch.nonzero(disagreement(logits[0].detach(), logits[1].detach())).flatten()
                disagreeing += len(where)
                if len(where):
                    coteaching_step(run, ids[where.cpu()], [z[where] for z in logits], labels[where], forget, ce)
                elif trains_whole_batch(epoch, i, run.epochs, run.batches, self.whole_batch_rule):
                    whole += 1
                    every = torch.arange(len(ids), device=run.device)
                    for k in (0, 1):
                        loss = ce(logits[k], labels).mean()
                        run.note(k, ids, every, loss)
                        pair.step(k, loss)
            state["forget_rates"].append(run.epoch_forget_rate())
            state["selected_sizes"].append([int(m.sum()) for m in run.selected])
            state["disagreement_sizes"].append(disagreeing if epoch + 1 >= init_epoch else None)
            state["whole_batches"].append(whole)
            return run.end_epoch(epoch, ["net1", "net2"])

        fit, state = pair.run_epochs("coteaching_plus", "Co-teaching+", epoch_fn,
                                     {"forget_rates": [], "selected_sizes": [], "disagreement_sizes": [],
                                      "whole_batches": []},
                                     predict=self.predict)
        fit.extra.update({**run.extra(state), "init_epoch": init_epoch, "init_epoch_source": init_source,
                          "loss_input": self.loss_input, "whole_batch_rule": self.whole_batch_rule,
                          "disagreement_sizes": state["disagreement_sizes"],
                          "whole_batches": state["whole_batches"]})
        return fit
