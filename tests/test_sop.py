"""SOP (sparse over-parameterisation): the loss, its gradients and one SGD step of u, v by hand; the engine's
after_step hook; an interrupted fine-tuning with SOP resumes exactly; one run per mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_dividemix import tiny_context, tiny_trainer
from test_resume import CLASSES, N_TRAIN, Interrupted, make_trainer

from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.methods.sop import SOPLoss

LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2]])
LABELS = np.array([0, 2])
INDEX = np.array([1, 3])
U = np.array([0.5, 0.7])  # u of samples 1 and 3
V = np.array([[0.1, 0.2, 0.1], [0.4, 0.5, 0.9]])  # v of samples 1 and 3 (the label's entry is unused)


def hand_loss_and_gradients() -> tuple[float, np.ndarray, np.ndarray]:
    """SOP's loss (reference model/loss.py) with every clamp inactive, and its gradients wrt u and v:
    r = softmax + u²·y − v²·(1 − y), q = r / Σr, CE = −log q_y, MSE = Σ_c (h_c + u²y_c − v_c²(1 − y_c) − y_c)²,
    h the one-hot argmax; loss = mean CE + Σ MSE / B."""
    b = len(LABELS)
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
    y = np.eye(3)[LABELS]
    h = np.eye(3)[LOGITS.argmax(1)]
    u_sq = U[:, None] ** 2 * y
    v_sq = V**2 * (1 - y)
    r = p + u_sq - v_sq
    assert (r > 1e-4).all() and (u_sq <= 1).all() and (v_sq <= 1).all()  # the clamps stay inactive
    s = r.sum(1)
    r_y = r[np.arange(b), LABELS]
    residual = h + u_sq - v_sq - y
    loss = np.mean(-np.log(r_y / s)) + (residual**2).sum() / b
    # d(−log(r_y/S))/du = (−1/r_y + 1/S)·2u; d MSE/du = 2·residual_y·2u (only the label's entry holds u²).
    grad_u = ((-1 / r_y + 1 / s) + 2 * residual[np.arange(b), LABELS]) * 2 * U / b
    # v enters the CE detached: only the MSE, d/dv_c = 2·residual_c·(−2 v_c) off the label, 0 at it.
    grad_v = 2 * residual * (-2 * V) * (1 - y) / b
    return loss, grad_u, grad_v


def sop_with(u: np.ndarray, v: np.ndarray, *, lr_u: float = 1.0, lr_v: float = 10.0) -> SOPLoss:
    loss = SOPLoss(4, 3, lr_u=lr_u, lr_v=lr_v, seed=0)
    state = loss.state_dict()
    state["u"][INDEX, 0] = torch.tensor(u, dtype=torch.float32)
    state["v"][INDEX] = torch.tensor(v, dtype=torch.float32)
    loss.load_state_dict(state)
    return loss


def test_loss_gradients_and_one_sgd_step_of_u_v_match_the_hand_values():
    criterion = sop_with(U, V)
    before_u, before_v = criterion.u.detach().clone(), criterion.v.detach().clone()
    logits = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    loss = criterion(logits, torch.tensor(LABELS), torch.tensor(INDEX))
    hand, grad_u, grad_v = hand_loss_and_gradients()
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    loss.backward()
    assert criterion.u.grad[INDEX, 0].numpy() == pytest.approx(grad_u, rel=1e-4, abs=1e-7)
    assert criterion.v.grad[INDEX].numpy() == pytest.approx(grad_v, rel=1e-4, abs=1e-7)
    # Rows outside the batch get no gradient.
    assert torch.count_nonzero(criterion.u.grad[[0, 2]]) == 0 and torch.count_nonzero(criterion.v.grad[[0, 2]]) == 0
    criterion.after_step()
    # Plain SGD (no momentum, no weight decay): u ← u − 1·∇u, v ← v − 10·∇v; other rows unchanged.
    assert criterion.u.detach()[INDEX, 0].numpy() == pytest.approx(U - 1.0 * grad_u, rel=1e-5)
    assert criterion.v.detach()[INDEX].numpy() == pytest.approx(V - 10.0 * grad_v, rel=1e-5, abs=1e-7)
    assert torch.equal(criterion.u.detach()[[0, 2]], before_u[[0, 2]])
    assert torch.equal(criterion.v.detach()[[0, 2]], before_v[[0, 2]])
    assert criterion.u.grad is None and criterion.v.grad is None  # zeroed for the next step


def test_the_reference_clamps_u_square_to_one_which_stops_its_gradient():
    criterion = sop_with(np.array([1.5, 0.7]), V)
    loss = criterion(torch.tensor(LOGITS, dtype=torch.float32), torch.tensor(LABELS), torch.tensor(INDEX))
    loss.backward()
    assert criterion.u.grad[1, 0].item() == 0.0 and criterion.u.grad[3, 0].item() != 0.0


def test_init_draws_tiny_u_v_from_the_seed():
    a, b, c = (SOPLoss(10, 3, lr_u=1, lr_v=10, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.u, b.u) and torch.equal(a.v, b.v) and not torch.equal(a.u, c.u)
    assert a.u.shape == (10, 1) and a.v.shape == (10, 3)
    assert 0 < a.v.abs().max().item() < 1e-7  # N(0, 1e-8²): non-zero, or u², v² could never move


class CountingCriterion:
    """Cross-entropy that records the order of loss calls and after_step calls."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, logits, labels, index):
        self.events.append("loss")
        return torch.nn.functional.cross_entropy(logits, labels)

    def after_step(self) -> None:
        self.events.append("step")


@pytest.mark.parametrize("phase", ["linear_probe", "fine_tune"])
def test_engine_calls_after_step_once_after_every_optimiser_step(tmp_path, phase):
    trainer = tiny_trainer(tmp_path)  # 150 samples, batches of 32, 2 epochs
    criterion = CountingCriterion()
    getattr(trainer, phase)(criterion)
    steps = 2 * math.ceil(150 / 32)
    assert criterion.events == ["loss", "step"] * steps


def test_fine_tune_with_sop_resumed_after_interrupt_equals_uninterrupted(tmp_path):
    def run(trainer):
        criterion = SOPLoss(N_TRAIN, CLASSES, lr_u=1.0, lr_v=10.0, init_std=0.1, seed=0)
        return trainer.fine_tune(criterion), criterion

    plain = make_trainer(tmp_path, None)
    fit, criterion = run(plain)
    initial = SOPLoss(N_TRAIN, CLASSES, lr_u=1.0, lr_v=10.0, init_std=0.1, seed=0)
    assert not torch.equal(criterion.u, initial.u) and not torch.equal(criterion.v, initial.v)  # u, v trained

    broken = make_trainer(tmp_path, tmp_path / "ckpt", interrupt=(1, 2))  # killed mid second epoch
    with pytest.raises(Interrupted):
        run(broken)
    resumed_trainer = make_trainer(tmp_path, tmp_path / "ckpt")
    resumed, resumed_criterion = run(resumed_trainer)
    assert resumed_trainer.resumed_from == [{"call": 0, "epoch": 1}]
    assert resumed.history == fit.history
    for key, value in fit.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(resumed_criterion.u, criterion.u) and torch.equal(resumed_criterion.v, criterion.v)


@pytest.mark.parametrize("mode", ["lp", "fft", "lp-fft"])
def test_one_run_per_mode_trains_u_v_and_records_the_learning_rates(tmp_path, mode):
    ctx = tiny_context(tmp_path, mode)
    fit = build_method("sop", mode).run(ctx)
    assert len(fit.history) == 2 and math.isfinite(fit.test_acc_last)
    assert fit.extra["lr_u"] == 1.0 and fit.extra["lr_v"] == 10.0 and fit.extra["ratio_balance"] == 0.0
    assert fit.extra["lr_setting"].startswith("reference README, CIFAR-100 sym")
    if mode == "lp-fft":
        assert math.isfinite(fit.extra["lp_test_acc_last"])


def test_asymmetric_noise_takes_the_readme_learning_rates_and_explicit_values_win(tmp_path):
    ctx = tiny_context(tmp_path, "lp", noise="asym", rate=0.4)
    method = build_method("sop", "lp")
    assert (method.resolved(ctx).lr_u, method.resolved(ctx).lr_v) == (0.1, 100.0)
    assert method.resolved(ctx).seed == ctx.seed
    explicit = build_method("sop", "lp", {"lr_u": 2.0}).resolved(ctx)
    assert (explicit.lr_u, explicit.lr_v) == (2.0, 100.0)


def test_balance_term_adds_the_reference_class_balance_penalty():
    plain, balanced = sop_with(U, V), sop_with(U, V)
    balanced.ratio_balance = 0.1
    logits, labels, index = torch.tensor(LOGITS, dtype=torch.float32), torch.tensor(LABELS), torch.tensor(INDEX)
    # Hand: q averaged over the batch, penalty −Σ_c (1/C)·log q̄_c.
    p = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
    y = np.eye(3)[LABELS]
    r = p + U[:, None] ** 2 * y - V**2 * (1 - y)
    q_bar = (r / r.sum(1, keepdims=True)).mean(0)
    penalty = -(np.log(q_bar) / 3).sum()
    assert (balanced(logits, labels, index) - plain(logits, labels, index)).item() == pytest.approx(0.1 * penalty,
                                                                                                 rel=1e-5)


@pytest.mark.parametrize("params", [{"lr_u": 0.0}, {"lr_v": -1.0}, {"init_std": 0.0}, {"ratio_balance": -0.1}])
def test_bad_values_are_refused(params):
    with pytest.raises(ConfigError, match="SOP"):
        build_method("sop", "fft", params)
