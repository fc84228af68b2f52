"""Co-teaching, Co-teaching+ and JoCoR end to end on the tiny context (both modes), the forget rate each
records, their selections per epoch, bad options, and an fft Co-teaching run that resumes exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_dividemix import tiny_context  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.method_api import CellContext
from nlbench.engine.network_pair import NetworkPair
from nlbench.engine.small_loss import SmallLossRun, forget_rate, forget_rate_at_step, num_remember
from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.methods.coteaching_plus import trains_whole_batch
from nlbench.methods.jocor import published_co_lambda
from nlbench.noise import apply_noise

N_TRAIN, B = 150, 32  # tiny_context: 150 training samples, batches of 32 → 4 full batches, 22 dropped


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["lp", "fft"])
@pytest.mark.parametrize("method", ["coteaching", "jocor"])
def test_each_epoch_keeps_the_scheduled_share_of_every_batch(method, mode, tmp_path):
    ctx = tiny_context(tmp_path, mode, epochs=3)
    fit = build_method(method, mode, {"num_gradual": 3}).run(ctx)
    tau = 0.6  # the cell's nominal rate (sym 0.6): the codes' forget_rate = noise_rate
    rates = [forget_rate(e, tau, 3) for e in range(3)]
    assert fit.extra["forget_rate"] == tau and fit.extra["forget_rate_rule"] == "nominal"
    assert fit.extra["forget_rates"] == [round(r, 6) for r in rates] == [0.3, 0.6, 0.6]
    phases = ["net1", "net2"] if method == "coteaching" else ["joint"]
    selections = ctx.engine.selections
    assert [(s["phase"], s["epoch"]) for s in selections] == [(p, e) for e in range(3) for p in phases]
    # Each sample is in one batch per epoch: an epoch's selection is 4 batches' num_remember picks.
    assert [int(s["mask"].sum()) for s in selections] == [4 * num_remember(B, r) for r in rates for _ in phases]
    assert len(fit.history) == 3 and math.isfinite(fit.test_acc_best)
    assert fit.extra["optimizer_steps"] == [12, 12]
    if mode == "fft":
        assert ctx.engine.counters["backbones_built"] == 2
        assert ctx.engine.counters["backbone_backward_images"] == 2 * 3 * 4 * B  # both networks, every batch


@pytest.mark.parametrize("mode", ["lp", "fft"])
def test_coteaching_plus_exchanges_only_disagreeing_samples(mode, tmp_path):
    ctx = tiny_context(tmp_path, mode, epochs=2)
    fit = build_method("coteaching_plus", mode, {"init_epoch": 2, "loss_input": "logits"}).run(ctx)
    sizes, disagree = fit.extra["selected_sizes"], fit.extra["disagreement_sizes"]
    whole = fit.extra["whole_batches"]  # batches without disagreement, trained on all their samples
    assert disagree[0] is None and whole[0] == 0
    # Epoch 0 < init_epoch: plain Co-teaching, its 4 batches at the step ramp's rates (2 epochs × 4 steps).
    assert sizes[0] == [sum(num_remember(B, forget_rate_at_step(i, 8, 0.6)) for i in range(4))] * 2
    # After it, a network picks from the disagreeing samples only (or whole batches where none disagree).
    assert 0 <= disagree[1] <= 4 * B
    assert all(whole[1] * B <= size <= disagree[1] + whole[1] * B for size in sizes[1])
    assert fit.extra["init_epoch"] == 2 and fit.extra["loss_input"] == "logits"
    assert [(s["phase"], s["epoch"]) for s in ctx.engine.selections] == [("net1", 0), ("net2", 0), ("net1", 1),
                                                                         ("net2", 1)]


def test_coteaching_plus_defaults_follow_the_code(tmp_path):
    ctx = tiny_context(tmp_path, "lp", epochs=2)
    fit = build_method("coteaching_plus", "lp").run(ctx)
    # 10 classes: CIFAR-10's init_epoch 20 of 200, scaled to 2 epochs → 0; CE on softmax outputs as loss.py.
    assert fit.extra["init_epoch"] == 0 and fit.extra["init_epoch_source"] == "cifar10 20 of 200"
    assert fit.extra["loss_input"] == "softmax" and fit.extra["disagreement_sizes"][0] is not None


def test_real_noise_estimates_the_forget_rate_and_jocor_halves_nominal_asym(tmp_path):
    ctx = tiny_context(tmp_path / "real", "lp", noise="none", rate=0.0)
    fit = build_method("coteaching", "lp").run(ctx)
    assert fit.extra["forget_rate_rule"] == "estimate" and 0.0 <= fit.extra["forget_rate"] < 1.0
    assert set(fit.extra["estimate"]) == {"probe_test_acc_last", "n_iter", "converged"}
    with pytest.raises(ConfigError, match="needs a synthetic nominal noise rate"):
        build_method("jocor", "lp", {"forget_rate": "nominal"}).run(tiny_context(tmp_path / "r2", "lp", noise="none",
                                                                                   rate=0.0))
    asym = build_method("jocor", "lp", {"epochs": 1}).run(tiny_context(tmp_path / "asym", "lp", noise="asym",
                                                                        rate=0.4))
    assert asym.extra["forget_rate"] == 0.2 and asym.extra["nominal_scale"] == 0.5  # code: noise_rate / 2
    assert asym.extra["co_lambda"] == 0.9 and asym.extra["co_lambda_source"].startswith("cifar10 asym 0.4")


def digits_asym_context(tmp_path, rate: float = 0.4):
    """The tiny context under the cell's view of asym noise on digits: its expected transition matrix, as a
    cell hands it (``nlbench.run.cell.oracle_transition``)."""
    matrix = apply_noise("asym", np.arange(10), rate=rate, seed=0, num_classes=10, dataset="digits").expected_transition
    trainer = tiny_context(tmp_path, "lp", noise="asym", rate=rate).engine
    return CellContext.of(trainer, "lp", dataset="digits", noise=("asym", rate), oracle_transition=matrix)


@pytest.mark.parametrize("method", ["coteaching", "coteaching_plus", "jocor"])
def test_tau_is_the_expected_flip_rate_and_nominal_keeps_the_codes_reading(method, tmp_path):
    """One rule for the family (Co-teaching main.py 112-115, Co-teaching+ main.py 155-158, JoCoR
    algorithm/jocor.py 20-24): digits' asym map moves 8 of 10 classes, so asym 0.4 flips 0.4 · 8/10 = 0.32
    in expectation; 'nominal' is 0.4, halved by JoCoR's code to 0.2."""
    fit = build_method(method, "lp", {"epochs": 1}).run(digits_asym_context(tmp_path / "e"))
    assert fit.extra["forget_rate"] == 0.32 and fit.extra["forget_rate_rule"] == "expected"
    assert fit.extra["expected_flip_rate"] == 0.32 and fit.extra["nominal_rate"] == 0.4
    nominal = build_method(method, "lp", {"epochs": 1, "forget_rate": "nominal"}).run(
        digits_asym_context(tmp_path / "n"))
    assert nominal.extra["forget_rate"] == (0.2 if method == "jocor" else 0.4)
    assert nominal.extra["forget_rate_rule"] == "nominal"


def test_the_step_ramp_is_recorded(tmp_path):
    """The codes' T_k = 10 of n_epoch = 200 (Co-teaching main.py 24, 134-135) as a share of the steps: 2 epochs
    of 4 batches = 8 steps; step s reads the table at reference epoch ⌊199·s/8⌋ = 0, 24, … so τ/9 = 0.0356
    (digits asym 0.4: τ = 0.32) at step 0 and τ from step 1 on; epoch means (0.0356 + 3·0.32)/4, 0.32."""
    fit = build_method("coteaching", "lp").run(digits_asym_context(tmp_path))
    assert fit.extra["forget_ramp"] == "steps" and fit.extra["ramp_steps"] == 1 and fit.extra["total_steps"] == 8
    assert fit.extra["forget_rates"] == [round((0.32 / 9 + 3 * 0.32) / 4, 6), 0.32]
    epochs = build_method("coteaching", "lp", {"ramp": "epochs"}).run(digits_asym_context(tmp_path / "e"))
    assert epochs.extra["forget_ramp"] == "epochs" and epochs.extra["num_gradual"] == 1
    assert epochs.extra["forget_rates"] == [0.32, 0.32]  # T_k = round(2/20) → 1: τ from the first batch


def test_published_co_lambda():
    assert published_co_lambda(10, "sym", 0.2)[0] == 0.9 and published_co_lambda(10, "sym", 0.9)[0] == 0.65
    assert published_co_lambda(10, "sym", 0.65)[0] == 0.65  # a tie goes to the heavier rate
    assert published_co_lambda(100, "sym", 0.2)[0] == 0.85 and published_co_lambda(10, None, 0.0)[0] == 0.9


@pytest.mark.parametrize("params, message", [
    ({"forget_rate": "bogus"}, "expected a number in \\[0, 1\\) or one of: expected, nominal, estimate"),
    ({"ramp": "linear"}, "expected one of: steps, epochs"),
    ({"ramp": "steps", "num_gradual": 3}, "num_gradual .* needs ramp 'epochs'"),
    ({"forget_rate": 1.0}, "forget_rate must be a number in \\[0, 1\\)"),
    ({"schedule": "linear"}, "expected one of: code, paper"),
    ({"num_gradual": 0}, "num_gradual must be an integer ≥ 1"),
    ({"predict": "net2"}, "expected one of: mean, net1"),
])
def test_bad_options_name_the_valid_choices(params, message):
    with pytest.raises(ConfigError, match=message):
        build_method("coteaching", "lp", params)


class Interrupted(Exception):
    pass


def run_fft(tmp_path, checkpoint_dir, *, interrupt_at=None, monkeypatch=None, logs=None):
    ctx = tiny_context(tmp_path, "fft", epochs=4)
    trainer = ctx.engine
    trainer.checkpoint_dir = checkpoint_dir
    if logs is not None:
        trainer.log = logs.append
    if interrupt_at is not None:
        calls = {"n": 0}
        real = NetworkPair.epoch_batches

        def batches_then_die(self):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise Interrupted
            return real(self)

        monkeypatch.setattr(NetworkPair, "epoch_batches", batches_then_die)
    return build_method("coteaching", "fft", {"num_gradual": 3, "augment": True}).run(ctx), trainer


def test_resumed_fft_coteaching_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    reference, ref_trainer = run_fft(tmp_path, None)
    with pytest.raises(Interrupted):  # killed as epoch 3 (0-based 2) starts
        run_fft(tmp_path, tmp_path / "ckpt", interrupt_at=3, monkeypatch=monkeypatch)
    monkeypatch.undo()
    logs: list[str] = []
    resumed, trainer = run_fft(tmp_path, tmp_path / "ckpt", logs=logs)
    assert trainer.resumed_from == [{"call": "coteaching", "epoch": 2}]
    assert any("resumed from" in line and "after epoch 2 of 4" in line for line in logs)
    assert resumed.history == reference.history and resumed.extra == reference.extra
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [(s["phase"], s["epoch"], s["mask"].tolist()) for s in trainer.selections] == \
        [(s["phase"], s["epoch"], s["mask"].tolist()) for s in ref_trainer.selections]
    assert trainer.counters == ref_trainer.counters and len(trainer.fft_epoch_seconds) == 4


def test_whole_batch_rule_keeps_the_codes_share_of_the_budget():
    """Co-teaching+ loss.py 60 (``step < 5000``) with main.py 255 (``step = epoch*i``), at its CIFAR budget of
    200 epochs × 390 batches. 'scaled' at that budget is the code's rule; at 20 epochs × 9 batches it is
    (e + 1)·i·200·390 < 5000·20·9, i.e. (e + 1)·i ≤ 11, where the code's (e + 1)·i ≤ 8·20 < 5000 never expires."""
    for e, i in [(0, 389), (19, 249), (19, 250), (199, 24), (199, 25), (12, 384), (12, 385)]:
        assert trains_whole_batch(e, i, 200, 390) == ((e + 1) * i < 5000)
    assert [trains_whole_batch(e, i, 20, 9) for e, i in [(0, 8), (1, 5), (1, 6), (5, 1), (5, 2), (10, 1), (11, 0)]] \
        == [True, True, False, True, False, True, True]
    assert trains_whole_batch(10, 1, 20, 9) and not trains_whole_batch(11, 1, 20, 9)
    assert all(trains_whole_batch(e, i, 20, 9, "code") for e in range(20) for i in range(9))


def test_note_disagreement_counts_differing_argmax():
    pair = NetworkPair.__new__(NetworkPair)  # the counter only
    pair._disagreeing = [0, 0]
    a = torch.tensor([[2.0, 1.0], [0.0, 1.0], [5.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    pair.note_disagreement(a, b)
    pair.note_disagreement(b[:1], b[:1])
    assert pair.take_disagreement() == round(1 / 4, 6) and pair.take_disagreement() is None


@pytest.mark.parametrize("method", ["coteaching", "coteaching_plus", "jocor"])
def test_pair_disagreement_is_recorded_and_own_views_differ(method, tmp_path):
    shared = build_method(method, "lp", {"augment": True}).run(tiny_context(tmp_path / "s", "lp", epochs=2))
    own = build_method(method, "lp", {"augment": True, "pair_views": "own"}).run(
        tiny_context(tmp_path / "o", "lp", epochs=2))
    for fit, views in ((shared, "shared"), (own, "own")):
        assert fit.extra["pair_views"] == views
        assert len(fit.extra["pair_disagreement"]) == 2 and all(0.0 <= d <= 1.0 for d in fit.extra["pair_disagreement"])
    # What each network sees: with 'own' the two views of a sample are distinct cached views (K = 2), with
    # 'shared' one draw for both.
    for views, same in (("shared", True), ("own", False)):
        run = SmallLossRun(build_method(method, "lp", {"augment": True, "pair_views": views}),
                           tiny_context(tmp_path / f"v{views}", "lp", epochs=2), method)
        x1, x2 = run.inputs(torch.arange(8))
        assert torch.equal(x1, x2) is same
        if not same:
            assert all(not torch.equal(a, b) for a, b in zip(x1, x2, strict=True))
    with pytest.raises(ConfigError, match="pair_views 'own' .* needs augment = true"):
        build_method(method, "lp", {"pair_views": "own"})


def test_dividemix_records_disagreement_after_its_warmup(tmp_path):
    fit = build_method("dividemix", "lp", {"warmup_epochs": 1}).run(tiny_context(tmp_path, "lp", epochs=2))
    first, second = fit.extra["pair_disagreement"]
    assert first is None and 0.0 <= second <= 1.0  # warm-up: each network on its own batches, nothing to compare
