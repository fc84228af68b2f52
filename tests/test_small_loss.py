"""Small-loss selection of two networks: the forget schedule, the exchange, disagreement and JoCoR's joint
loss on hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from nlbench.engine.small_loss import (
    coteaching_exchange,
    disagreement,
    forget_rate,
    jocor_loss,
    num_remember,
    scaled_num_gradual,
    small_loss_indices,
    symmetric_kl,
)
from nlbench.errors import ConfigError


def test_code_schedule_is_the_linspace_table_read_from_epoch_one():
    # np.linspace(0, 0.5, 5) = [0, .125, .25, .375, .5]; the code's first trained epoch reads index 1.
    assert [forget_rate(e, 0.5, 5) for e in range(6)] == [0.125, 0.25, 0.375, 0.5, 0.5, 0.5]
    assert forget_rate(0, 0.4, 1) == 0.4 and forget_rate(0, 0.4, 2) == 0.4  # T_k ≤ 2: no ramp left


def test_paper_schedule_is_one_minus_r_of_t():
    # 1 − R(T) = min(T/T_k·τ, τ), T = epochs already trained
    assert [forget_rate(e, 0.5, 5, "paper") for e in range(7)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    with pytest.raises(ConfigError, match="expected one of: code, paper"):
        forget_rate(0, 0.5, 5, "linear")


def test_num_gradual_keeps_its_share_of_the_budget():
    assert scaled_num_gradual(200) == 10 and scaled_num_gradual(100) == 5 and scaled_num_gradual(30) == 2
    assert scaled_num_gradual(10) == 1 and scaled_num_gradual(1) == 1 and scaled_num_gradual(10, 7) == 7


def test_num_remember_truncates_and_never_keeps_nothing():
    assert num_remember(5, 0.5) == 2 and num_remember(128, 0.2) == 102 and num_remember(3, 0.9) == 3


def test_each_network_trains_on_its_peers_small_loss_samples():
    loss_1 = torch.tensor([0.1, 0.9, 0.3, 0.5])
    loss_2 = torch.tensor([0.8, 0.2, 0.4, 0.1])
    train_1, train_2 = coteaching_exchange(loss_1, loss_2, 0.5)
    assert train_1.tolist() == [3, 1]  # network 2's two smallest losses
    assert train_2.tolist() == [0, 2]  # network 1's two smallest losses
    assert small_loss_indices(torch.tensor([1.0, 0.0, 1.0, 0.0]), 0.25).tolist() == [1, 3, 0]  # ties: batch order


def test_disagreement_marks_samples_whose_predictions_differ():
    a = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    assert disagreement(a, b).tolist() == [False, True, True]


def test_jocor_joint_loss_by_hand():
    z1 = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)  # p1 = (1/4, 3/4)
    z2 = torch.tensor([[0.0, 0.0]], requires_grad=True)  # p2 = (1/2, 1/2)
    y = torch.tensor([0])
    kl_21 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_12 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert symmetric_kl(z1, z2).item() == pytest.approx(kl_21 + kl_12, rel=1e-6)
    expected = 0.3 * (math.log(4.0) + math.log(2.0)) + 0.7 * (kl_21 + kl_12)
    loss = jocor_loss(z1, z2, y, 0.7)
    assert loss.shape == (1,) and loss.item() == pytest.approx(expected, rel=1e-6)
    # Pure co-regularisation pulls the two predictions together through both networks: descending it lowers
    # network 1's class-1 logit (p1 = 3/4 > 1/2) and raises network 2's.
    jocor_loss(z1, z2, y, 1.0).sum().backward()
    assert z1.grad[0, 1] > 0 > z2.grad[0, 1]
    assert z1.grad.sum().item() == pytest.approx(0.0, abs=1e-7)  # softmax logits: gradients sum to zero
