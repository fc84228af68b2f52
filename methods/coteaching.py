"""Co-teaching (Han et al., NeurIPS 2018): two networks, each trains on the small-loss samples of its peer."""

from __future__ import annotations

from dataclasses import dataclass

from nlbench.engine.method_api import CellContext, register_method
from nlbench.engine.small_loss import SmallLossMethod, SmallLossRun, check_small_loss_fields, coteaching_step
from nlbench.engine.train import Fit


@register_method("coteaching", modes=("fft", "lp"), label="CoT", order=110,
                 source="Han et al., NeurIPS 2018; github.com/bhanML/Co-teaching",
                 fft_passes=2.0)  # two networks, each trained on every batch
@dataclass(frozen=True)
class CoTeaching(SmallLossMethod):
    """Co-teaching: two networks see the same batches; each ranks the batch by its own per-sample CE and
    keeps its (1 − forget)·B smallest-loss samples, on which its peer takes a step (mean CE). The forget
    rate ramps from 0 to τ (``nlbench.engine.small_loss.forget_rate_at_step``).

    τ (``forget_rate``): a number, 'expected' (the share of samples the cell's noise model flips in
    expectation: the code's forget_rate = noise_rate on the noise it ran, whose rate is its flip rate),
    'nominal' (the cell's nominal rate as given) or 'estimate' (1 − the clean fraction of a GMM on a linear
    probe's losses); default 'expected' under synthetic noise, 'estimate' under real noise. ``ramp``: 'steps'
    (default: the code's T_k = 10 of 200 epochs kept as its share of this run's steps, per step) or 'epochs'
    (T_k = ``num_gradual`` epochs of this run, or round(E/20) ≥ 1). ``schedule``: 'code' (the code's
    linspace table read from epoch 1) or 'paper' (min(T/T_k, 1)·τ).

    From the code where the paper is silent: no augmentation (transforms.ToTensor() only; ``augment``
    turns the engine's crop/flip, or the K cached views in lp mode, on), batches of B with the incomplete
    last batch dropped, both networks in train mode. The loss is the mean CE of the picked samples: the
    code divides that mean by the number kept once more, a constant factor its Adam all but ignores and
    the engine's SGD (fft) would not (docs/fidelity.md). Optimiser, rate and B are the engine's. Test
    prediction (``predict``): network 1 (the code evaluates both networks separately; 'mean' averages
    their logits).
    """


    def __post_init__(self) -> None:
        check_small_loss_fields(self, "Co-teaching")

    def run(self, ctx: CellContext) -> Fit:
        run = SmallLossRun(self, ctx, "Co-teaching")
        pair = run.pair

        def epoch_fn(epoch: int, state: dict) -> list[float]:
            run.new_epoch()
            pair.train_both()
            for i, ids in enumerate(pair.epoch_batches()):
                logits = run.logits(ids)
                coteaching_step(run, ids, logits, pair.labels[ids.to(run.device)], run.forget(epoch, i))
            state["forget_rates"].append(run.epoch_forget_rate())
            state["selected_sizes"].append([int(m.sum()) for m in run.selected])
            return run.end_epoch(epoch, ["net1", "net2"])

        fit, state = pair.run_epochs("coteaching", "Co-teaching", epoch_fn,
                                     {"forget_rates": [], "selected_sizes": []}, predict=self.predict)
        fit.extra.update(run.extra(state))
        return fit
