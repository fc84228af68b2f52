"""Issue 23, points 1, 4 and 5: Forward-T's estimator epoch and anchor filter, CORES²'s learning-rate scaling,
each against its reference with the expected values derived by hand on small constructed inputs.

References (the commits docs/fidelity.md names):
- giorgiop/loss-correction @ 15a79de: ``models.py`` 94-98 (``ModelCheckpoint(monitor='val_loss',
  save_best_only=True)``), 132-133 (reload "the model that reached the lowest loss"), 436-449 (the anchors);
  ``experiment.py`` 58-62 (``filter_outlier`` False on CIFAR-100 only), 122-141 (``est_forward`` loads the CE
  run's saved file); ``loss.py`` 6-10 (the clipped CE that ``val_loss`` is).
- UCSC-REAL/cores @ cf0945e: ``phase1.py`` 44-47 (``adjust_learning_rate``: lr = alpha_plan[epoch] / (1 +
  f_beta(epoch))), 172 (plain SGD), 189 (alpha_plan), 208 (called before every epoch); ``loss.py`` 23-62
  (``loss_cores`` returns the loss unscaled; ``f_beta``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_dividemix import tiny_context, tiny_trainer  # tests/ is on sys.path (pytest's default prepend mode)
from torch import nn

import nlbench.engine.train as train_module
from nlbench.engine.losses import cross_entropy
from nlbench.engine.method_api import CellContext, DatasetFacts
from nlbench.engine.training_state import Fit
from nlbench.engine.transition import anchor_transition
from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.methods.cores import CORES, CORESLoss
from nlbench.methods.forward_t import ForwardT, LowestValidationLoss, clipped_cross_entropy

# ------------------------------------------------------------------------- Forward-T: the estimator's epoch

# The CE probe's prediction p(ỹ | x) for an input of type k (one-hot features e_k) at each of its three
# epochs: under-fitted, then the fit of lowest validation loss, then over-confident (fitting the noise).
EPOCH_PREDICTIONS = [
    np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]]),
    np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]]),
    np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]]),
]
# Noisy validation set: (input type, noisy label); the last sample's label is flipped.
VAL = [(0, 0), (1, 1), (2, 2), (0, 1)]
# val_loss = mean −ln p_y: epoch 0 (3·ln(1/.6) + ln(1/.2))/4 = 0.785479; epoch 1 (3·ln(1/.8) + ln(1/.15))/4
# = 0.641637; epoch 2 (3·ln(1/.98) + ln(1/.01))/4 = 1.166445. Lowest: epoch 1.
VAL_LOSSES = [0.785479, 0.641637, 1.166445]


class ScriptedProbeEngine:
    """The Trainer's side of Forward-T's estimator with the probe's epochs given: a linear head on one-hot
    features whose weights make softmax(head(e_k)) = EPOCH_PREDICTIONS[epoch][k] (weights ln p, transposed:
    nn.Linear computes x Wᵀ), set epoch by epoch in one module as training would."""

    def __init__(self, predictions: list[np.ndarray]) -> None:
        self.predictions = predictions
        self.device = torch.device("cpu")
        self.features = {"train": torch.eye(3), "val": torch.eye(3)[[k for k, _ in VAL]]}
        self.val_labels = np.array([y for _, y in VAL])
        self.num_classes = 3

    def linear_probe(self, criterion, *, desc: str, on_epoch_end) -> Fit:
        head = nn.Linear(3, 3, bias=False)
        for epoch, probs in enumerate(self.predictions):
            with torch.no_grad():
                head.weight.copy_(torch.tensor(np.log(probs).T, dtype=torch.float32))
            on_epoch_end(epoch, head)
        return Fit(model=head, test_acc_best=50.0, test_acc_last=40.0)

    @torch.no_grad()
    def probe_logits(self, head: nn.Module, split: str) -> torch.Tensor:
        return head(self.features[split])


def scripted_context(predictions: list[np.ndarray]) -> CellContext:
    engine = ScriptedProbeEngine(predictions)
    return CellContext(mode="lp", engine=engine, dataset=DatasetFacts(name="synthetic", num_classes=3, num_train=3))


def test_t_comes_from_the_probe_epoch_of_lowest_noisy_validation_loss():
    """loss-correction @ 15a79de models.py 94-98, 132-133; experiment.py 122-141: ``est_forward`` estimates T
    with the CE network of lowest val_loss. The anchor of class i is the training input e_i (column i of each
    epoch's matrix is largest on row i), so T̂ is the chosen epoch's prediction matrix: epoch 1's by the
    reference's rule, epoch 2's (the over-confident last) by ``estimator_epoch="last"``."""
    matrix, info = ForwardT(anchor="argmax").estimate(scripted_context(EPOCH_PREDICTIONS))
    np.testing.assert_allclose(matrix, EPOCH_PREDICTIONS[1], atol=1e-6)
    assert info["anchors"] == [0, 1, 2]
    assert info["estimator_epoch"] == "lowest_val_loss" and info["estimator_probe_epoch"] == 1
    assert info["estimator_probe_val_losses"] == pytest.approx(VAL_LOSSES, abs=1e-5)
    assert info["estimator_probe_val_loss"] == pytest.approx(VAL_LOSSES[1], abs=1e-5)

    last, info = ForwardT(anchor="argmax", estimator_epoch="last").estimate(scripted_context(EPOCH_PREDICTIONS))
    np.testing.assert_allclose(last, EPOCH_PREDICTIONS[2], atol=1e-6)
    assert info["estimator_epoch"] == "last" and info["estimator_probe_epoch"] == 2
    assert info["estimator_probe_val_loss"] == pytest.approx(VAL_LOSSES[2], abs=1e-5)


def test_a_tie_keeps_the_earlier_epoch_as_keras_save_best_only_does():
    """Keras's ModelCheckpoint saves only when val_loss improves strictly (models.py 97-98): of two epochs with
    the same loss the first stays; its weights are a copy, not the head trained on afterwards."""
    context = scripted_context([EPOCH_PREDICTIONS[1], EPOCH_PREDICTIONS[1], EPOCH_PREDICTIONS[2]])
    matrix, info = ForwardT(anchor="argmax").estimate(context)
    assert info["estimator_probe_epoch"] == 0
    np.testing.assert_allclose(matrix, EPOCH_PREDICTIONS[1], atol=1e-6)


def test_validation_loss_is_the_references_clipped_cross_entropy():
    """loss-correction loss.py 6-10: −Σ y log clip(p, 1e-7, 1 − 1e-7). p = (1, 0) from logits (0, −200): the
    label 1 gives −ln 1e-7 = 16.118096 (unclipped it would be 200); label 0 gives −ln(1 − 1e-7) ≈ 1e-7."""
    logits = torch.tensor([[0.0, -200.0]])
    assert clipped_cross_entropy(logits, torch.tensor([1])) == pytest.approx(-math.log(1e-7), rel=1e-4)
    assert clipped_cross_entropy(logits, torch.tensor([0])) == pytest.approx(0.0, abs=1e-6)
    hook = LowestValidationLoss(lambda head: head(torch.eye(2)), torch.tensor([0, 1]))
    assert hook.epoch == -1 and hook.state is None


def test_the_trainers_probe_calls_the_hook_after_every_epoch_with_the_head(tmp_path):
    trainer = tiny_trainer(tmp_path, epochs=3)
    seen: list[tuple[int, torch.Tensor]] = []
    fit = trainer.linear_probe(cross_entropy,
                               on_epoch_end=lambda epoch, head: seen.append((epoch, head.weight.detach().clone())))
    assert [e for e, _ in seen] == [0, 1, 2]
    assert torch.equal(seen[-1][1], fit.model.weight)
    assert not torch.equal(seen[0][1], seen[1][1])  # the head changes between epochs


def test_forward_t_run_records_the_estimator_epoch(tmp_path):
    ctx = tiny_context(tmp_path, "lp")
    fit = build_method("forward_t", "lp").run(ctx)
    losses = fit.extra["estimator_probe_val_losses"]
    assert len(losses) == 2 and fit.extra["estimator_epoch"] == "lowest_val_loss"
    assert fit.extra["estimator_probe_epoch"] == int(np.argmin(losses))
    assert fit.extra["anchor"] == "code" and fit.extra["anchor_filter_max_classes"] == 10
    assert fit.extra["anchor_rule"] == "percentile 97"  # digits: 10 classes


def test_bad_estimator_options_are_refused():
    with pytest.raises(ConfigError, match="unknown estimator_epoch 'best'; expected one of: lowest_val_loss, last"):
        build_method("forward_t", "lp", {"estimator_epoch": "best"})
    with pytest.raises(ConfigError, match="filter_max_classes must be ≥ 0; got -1"):
        build_method("forward_t", "lp", {"filter_max_classes": -1})


# ----------------------------------------------------------------- Forward-T: the anchor filter by class count

def per_class_predictions(classes: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(probs, true classes): sample j of class i (index i·per_class + j) predicts 0.5 + 0.04·j on class i and
    the rest equally on the other classes."""
    probs, truth = [], []
    for i in range(classes):
        for j in range(per_class):
            p = 0.5 + 0.04 * j
            row = np.full(classes, (1 - p) / (classes - 1))
            row[i] = p
            probs.append(row)
            truth.append(i)
    return np.array(probs), np.array(truth)


def test_the_code_filters_only_up_to_ten_classes():
    """loss-correction experiment.py 58-62: ``filter_outlier`` on MNIST and CIFAR-10 (10 classes) and IMDB (2),
    off on CIFAR-100 (100). The code rule: the filter where C ≤ ``filter_max_classes`` (10)."""
    assert [ForwardT().anchor_percentile(c) for c in (2, 10)] == [97.0, 97.0]
    assert [ForwardT().anchor_percentile(c) for c in (11, 14, 33, 50, 100)] == [None] * 5
    assert ForwardT(filter_max_classes=50).anchor_percentile(33) == 97.0
    assert ForwardT(anchor="percentile").anchor_percentile(100) == 97.0
    assert ForwardT(anchor="argmax").anchor_percentile(2) is None


def test_the_filter_stays_in_the_class_at_ten_classes_and_leaves_it_at_forty():
    """models.py 442-446: values ≥ the column's 97th percentile ('higher') are set aside, then the arg-max.
    C = 10, 10 samples a class (N = 100): the percentile is sorted value ⌈0.97·99⌉ = 97, class i's 8th sample
    (0.78); its samples 7-9 are set aside and the anchor is sample 6 (0.74), still of class i.
    C = 40, 2 samples a class (N = 80): 3 % of N exceeds a class. Sorted value ⌈0.97·79⌉ = 77 is the largest
    other-class value, 0.5/39 (the first samples of the other classes); everything ≥ it goes, leaving the
    other classes' second samples at 0.46/39; the first of them is the anchor: sample 1 (class 0) for every
    class but 0, sample 3 (class 1) for class 0. No anchor lies in its class and diag(T̂) = 0.46/39. The code's
    rule (arg-max above 10 classes) keeps each class's own most confident sample: diag(T̂) = 0.54."""
    probs, truth = per_class_predictions(10, 10)
    estimate, anchors = anchor_transition(probs, percentile=ForwardT().anchor_percentile(10))
    assert anchors.tolist() == [10 * i + 6 for i in range(10)]
    np.testing.assert_allclose(np.diag(estimate), 0.74, atol=1e-12)

    probs, truth = per_class_predictions(40, 2)
    filtered, anchors = anchor_transition(probs, percentile=97)
    assert anchors.tolist() == [3] + [1] * 39
    assert not np.any(truth[anchors] == np.arange(40))
    np.testing.assert_allclose(np.diag(filtered), 0.46 / 39, atol=1e-12)
    by_rule, anchors = anchor_transition(probs, percentile=ForwardT().anchor_percentile(40))
    assert anchors.tolist() == [2 * i + 1 for i in range(40)]
    np.testing.assert_allclose(np.diag(by_rule), 0.54, atol=1e-12)


# ------------------------------------------------------------------------ CORES²: lr / (1 + β) per epoch

def recorded_learning_rates(monkeypatch) -> list[float]:
    """The learning rate of every optimiser step the engine takes, read from the optimiser as it steps."""
    rates: list[float] = []
    make = train_module.make_optimizer

    def recording(*args, **kwargs):
        optimizer = make(*args, **kwargs)
        optimizer.register_step_pre_hook(lambda opt, a, k: rates.append(opt.param_groups[0]["lr"]))
        return optimizer

    monkeypatch.setattr(train_module, "make_optimizer", recording)
    return rates


def test_cores_divides_the_probes_learning_rate_by_one_plus_beta_each_epoch(tmp_path, monkeypatch):
    """cores @ cf0945e phase1.py 44-47, 208: before epoch e, lr = alpha_plan[e] / (1 + f_beta(e)); loss.py
    56-62: f_beta = 0 (10 epochs), linspace(0, 2, 30), 2. A 5-epoch phase runs the reference's epochs 0, 20,
    40, 60, 80: β = 0, 2·10/29, 2, 2, 2, so the factors are 1, 29/49, 1/3, 1/3, 1/3 of the engine's constant
    rate 1e-3 (150 samples in batches of 32: 5 steps an epoch)."""
    rates = recorded_learning_rates(monkeypatch)
    trainer = tiny_trainer(tmp_path, epochs=5)
    trainer.config = dataclasses.replace(trainer.config, scheduler="constant")
    criterion = CORESLoss(trainer.labels, 10, 5)
    trainer.linear_probe(criterion)
    factors = [1.0, 29 / 49, 1 / 3, 1 / 3, 1 / 3]
    assert criterion.lr_factors() == pytest.approx(factors, abs=1e-6)
    assert rates == pytest.approx([1e-3 * f for f in factors for _ in range(5)], rel=1e-9)


def test_cores_scales_the_fine_tuning_schedule_and_unscaled_keeps_it(tmp_path, monkeypatch):
    """As above under the engine's cosine schedule in fine-tuning: step s of epoch e runs
    fft_lr·½(1 + cos(π s / S))/(1 + β_e), S = 3 epochs × 5 steps; a 3-epoch phase runs the reference's epochs
    0, 33, 66: β = 0, 2·23/29, 2, factors 1, 29/75, 1/3. ``scale_lr=False`` leaves the schedule as it is."""
    rates = recorded_learning_rates(monkeypatch)
    trainer = tiny_trainer(tmp_path, epochs=3)
    trainer.fine_tune(CORESLoss(trainer.labels, 10, 3))
    cosine = [0.01 * 0.5 * (1 + math.cos(math.pi * s / 15)) for s in range(15)]
    factors = [1.0] * 5 + [29 / 75] * 5 + [1 / 3] * 5
    assert rates == pytest.approx([c * f for c, f in zip(cosine, factors, strict=True)], rel=1e-9)
    rates.clear()
    trainer.fine_tune(CORESLoss(trainer.labels, 10, 3, scale_lr=False))
    assert rates == pytest.approx(cosine, rel=1e-9)


def test_cores_run_records_the_learning_rate_factors(tmp_path):
    ctx = tiny_context(tmp_path, "lp")
    fit = CORES().run(ctx)  # 2 LP epochs: the reference's epochs 0 and 50 (β 0, 2)
    assert fit.extra["lr_factor_per_epoch"] == pytest.approx([1.0, 1 / 3], abs=1e-6)
    assert fit.extra["lr_scaling"] == "one_plus_beta"
    fit = CORES(lr_scaling="none").run(tiny_context(tmp_path, "lp"))
    assert fit.extra["lr_factor_per_epoch"] == [1.0, 1.0] and fit.extra["lr_scaling"] == "none"
    with pytest.raises(ConfigError, match="unknown CORES lr_scaling 'loss'; expected one of: one_plus_beta, none"):
        build_method("cores", "lp", {"lr_scaling": "loss"})
