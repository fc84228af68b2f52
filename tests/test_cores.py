"""CORES² (phase 1): the confidence-regularised loss and the sieve's statistic by hand, β's schedule, the sieve
on a constructed example (which samples stay, the loss, the prior update), resume, one run per mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_dividemix import tiny_context
from test_resume import CLASSES, Interrupted, make_trainer

from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.methods.cores import CORESLoss, beta_schedule, class_prior, cores_terms


def test_regularised_loss_and_sieve_statistic_match_the_hand_values():
    logits = np.array([[1.0, 0.0, -2.0], [0.2, 0.4, 2.0]])
    labels = np.array([1, 0])
    prior = np.array([0.5, 0.3, 0.2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ce = -np.log(p[np.arange(2), labels])
    ce_all = -np.log(p + 1e-8)  # reference loss.py: -log(softmax + 1e-8)
    regularised, sieve = cores_terms(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels),
                                     torch.tensor(prior, dtype=torch.float32), 1.5)
    assert regularised.numpy() == pytest.approx(ce - 1.5 * (prior * ce_all).sum(1), rel=1e-5)
    assert sieve.numpy() == pytest.approx(ce - ce_all.mean(1), rel=1e-4)
    # Kept iff log p_y ≥ mean_j log p_j, i.e. z_y ≥ mean_j z_j: 0 ≥ −1/3 (kept), 0.2 < 0.867 (sieved out).
    assert (sieve.numpy() <= 0).tolist() == [True, False]


def test_beta_schedule_is_the_reference_f_beta_and_stretches_to_the_phase():
    reference = np.concatenate((np.linspace(0.0, 0.0, 10), np.linspace(0.0, 2, 30), np.linspace(2, 2, 60)))
    assert [beta_schedule(t) for t in range(100)] == pytest.approx(reference.tolist())
    assert beta_schedule(11) == pytest.approx(2 / 29)
    criterion = CORESLoss(np.array([0, 1]), 2, epochs=10)  # epoch e runs the reference's epoch 10e
    assert [criterion.code_epoch(e) for e in range(10)] == list(range(0, 100, 10))
    assert [criterion.beta(e) for e in range(5)] == pytest.approx([0, 0, 20 / 29, 40 / 29, 2])
    assert [criterion.sieving(e) for e in range(10)] == [False] * 4 + [True] * 6  # reference: epoch ≤ 30 keeps all


# A constructed epoch: per sample the predicted probabilities and the noisy label. The sieve keeps i where
# CE_y ≤ mean_j CE_j, i.e. log p_y ≥ mean_j log p_j.
PROBS = np.array([[0.5, 0.3, 0.2],     # label 0: log .5 = −0.69 ≥ −1.17   kept
                  [0.5, 0.3, 0.2],     # label 1: log .3 = −1.20 < −1.17   sieved out
                  [0.2, 0.2, 0.6],     # label 2: −0.51 ≥ −1.24            kept
                  [0.1, 0.8, 0.1],     # label 0: −2.30 < −1.61            sieved out
                  [0.3, 0.4, 0.3],     # label 1: −0.92 ≥ −1.11            kept
                  [0.4, 0.35, 0.25]])  # label 0: −0.92 ≥ −1.11            kept
LABELS = np.array([0, 1, 2, 0, 1, 0])
KEPT = [True, False, True, False, True, True]


def test_sieve_keeps_the_hand_picked_samples_weights_the_loss_and_updates_the_prior():
    logged: list[tuple[int, list[bool]]] = []
    criterion = CORESLoss(LABELS, 3, epochs=2, on_epoch_end=lambda kept, epoch: logged.append((epoch, kept.tolist())))
    labels = torch.tensor(LABELS)
    # Epoch 0 (the reference's epoch 0: β = 0, no sieve), in two batches: the epoch closes after 6 samples.
    uniform = torch.zeros(3, 3)
    criterion(uniform, labels[:3], torch.arange(3))
    assert logged == [] and criterion.epoch == 0
    criterion(uniform, labels[3:], torch.arange(3, 6))
    assert logged == [(0, [True] * 6)] and criterion.epoch == 1
    assert criterion.prior.numpy() == pytest.approx([3 / 6, 2 / 6, 1 / 6])  # nothing sieved out

    # Epoch 1 (the reference's epoch 50: β = 2, sieving), one batch in a shuffled order.
    order = np.array([4, 1, 5, 0, 3, 2])
    logits = torch.tensor(np.log(PROBS[order]), dtype=torch.float32, requires_grad=True)
    loss = criterion(logits, labels[order], torch.tensor(order))
    assert logged[1] == (1, KEPT)
    p = PROBS[order]
    ce = -np.log(p[np.arange(6), LABELS[order]])
    regularised = ce - 2.0 * (np.array([3, 2, 1]) / 6 * -np.log(p + 1e-8)).sum(1)
    kept = np.array(KEPT)[order]
    # Mean over the kept samples, unscaled: 1 + β divides the learning rate (lr_factor), not the loss.
    assert loss.item() == pytest.approx(regularised[kept].mean(), rel=1e-5)
    loss.backward()
    assert torch.count_nonzero(logits.grad[~torch.tensor(kept)]) == 0
    assert torch.count_nonzero(logits.grad[torch.tensor(kept)]) > 0
    # Reference phase1.py: prior·N minus the sieved-out count per noisy class (labels 1 and 0), renormalised.
    assert criterion.prior.numpy() == pytest.approx([2 / 4, 1 / 4, 1 / 4])


def test_a_batch_with_nothing_kept_gives_zero_loss_and_no_gradient():
    criterion = CORESLoss(LABELS, 3, epochs=2)
    criterion.load_state_dict({**criterion.state_dict(), "epoch": 1})
    logits = torch.tensor(np.log(PROBS[[1, 3]]), dtype=torch.float32, requires_grad=True)
    loss = criterion(logits, torch.tensor(LABELS[[1, 3]]), torch.tensor([1, 3]))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_lr_scaling_changes_the_learning_rate_factor_not_the_loss():
    scaled, unscaled = CORESLoss(LABELS, 3, epochs=2), CORESLoss(LABELS, 3, epochs=2, scale_lr=False)
    for criterion in (scaled, unscaled):
        criterion.load_state_dict({**criterion.state_dict(), "epoch": 1})
    args = (torch.tensor(np.log(PROBS), dtype=torch.float32), torch.tensor(LABELS), torch.arange(6))
    assert unscaled(*args).item() == pytest.approx(scaled(*args).item(), rel=1e-6)
    assert scaled.lr_factors() == pytest.approx([1.0, 1 / 3])  # β 0, then 2 (the reference's epoch 50)
    assert unscaled.lr_factors() == [1.0, 1.0]


def test_an_epoch_that_does_not_cover_the_training_set_once_is_refused():
    criterion = CORESLoss(LABELS, 3, epochs=2)
    criterion(torch.zeros(4, 3), torch.tensor(LABELS[:4]), torch.arange(4))
    with pytest.raises(RuntimeError, match="every epoch to cover the training set once"):
        criterion(torch.zeros(4, 3), torch.tensor(LABELS[:4]), torch.arange(4))


def test_class_prior_counts_the_noisy_labels():
    assert class_prior(np.array([0, 2, 2, 2]), 4).tolist() == [0.25, 0.0, 0.75, 0.0]


def test_fine_tune_with_cores_resumed_after_interrupt_equals_uninterrupted(tmp_path):
    def run(trainer):
        criterion = CORESLoss(trainer.labels, CLASSES, 3, code_epochs=3, warmup_epochs=0, zero_epochs=0,
                              ramp_epochs=2, on_epoch_end=lambda kept, e: trainer.log_selection(kept, epoch=e,
                                                                                               phase="sieve"))
        return trainer.fine_tune(criterion), criterion

    plain = make_trainer(tmp_path, None)
    fit, criterion = run(plain)
    assert [s["epoch"] for s in plain.selections] == [0, 1, 2]
    broken = make_trainer(tmp_path, tmp_path / "ckpt", interrupt=(1, 2))
    with pytest.raises(Interrupted):
        run(broken)
    again = make_trainer(tmp_path, tmp_path / "ckpt")
    resumed, resumed_criterion = run(again)
    assert again.resumed_from == [{"call": 0, "epoch": 1}]
    assert resumed.history == fit.history
    assert torch.equal(resumed_criterion.prior, criterion.prior) and resumed_criterion.epoch == criterion.epoch == 3
    assert [(s["epoch"], s["mask"].tolist()) for s in again.selections] == \
        [(s["epoch"], s["mask"].tolist()) for s in plain.selections]


@pytest.mark.parametrize("mode", ["lp", "fft", "lp-fft"])
def test_one_run_per_mode_logs_the_sieved_set_every_epoch(tmp_path, mode):
    ctx = tiny_context(tmp_path, mode)
    fit = build_method("cores", mode).run(ctx)
    assert len(fit.history) == 2 and math.isfinite(fit.test_acc_last)
    phases = {"lp": ["sieve"], "fft": ["sieve"], "lp-fft": ["lp-sieve", "sieve"]}[mode]
    selections = ctx.engine.selections
    assert [(s["phase"], s["epoch"]) for s in selections] == [(p, e) for p in phases for e in (0, 1)]
    n = ctx.num_train
    for s in selections:
        assert s["mask"].shape == (n,)
        if s["epoch"] == 0:  # the reference's epoch 0: every sample kept
            assert s["mask"].all()
        else:  # the reference's epoch 50: the sieve removes some samples
            assert 0 < s["mask"].sum() < n
    assert fit.extra["beta_max"] == 2.0 and fit.extra["warmup_epochs"] == 30 and fit.extra["code_epochs"] == 100


@pytest.mark.parametrize("params", [{"beta_max": -1.0}, {"code_epochs": 0}, {"warmup_epochs": -1}])
def test_bad_values_are_refused(params):
    with pytest.raises(ConfigError, match="CORES"):
        build_method("cores", "fft", params)
