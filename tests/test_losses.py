"""GCE and ELR against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from nlbench.engine.losses import GCELoss, cross_entropy
from nlbench.errors import ConfigError
from nlbench.methods.elr import ELRLoss

# logits (0, ln 3) give p = (1/4, 3/4)
LOGITS = torch.tensor([[0.0, math.log(3.0)]])


def test_gce_value_by_hand():
    # label 1: (1 - 0.75^0.7) / 0.7 ; 0.75^0.7 = exp(0.7 ln 0.75) = 0.817604
    assert float(GCELoss(0.7)(LOGITS, torch.tensor([1]))) == pytest.approx((1 - 0.817604) / 0.7, abs=1e-5)
    # label 0: 0.25^0.7 = 0.378929 -> (1 - 0.378929) / 0.7 = 0.887244
    assert float(GCELoss(0.7)(LOGITS, torch.tensor([0]))) == pytest.approx(0.887244, abs=1e-5)
    # a batch is the mean of its rows
    both = GCELoss(0.7)(LOGITS.repeat(2, 1), torch.tensor([1, 0]))
    assert float(both) == pytest.approx(((1 - 0.817604) / 0.7 + 0.887244) / 2, abs=1e-5)


def test_gce_limits():
    # q = 1 is MAE on the true-class probability: 1 - 0.75
    assert float(GCELoss(1.0)(LOGITS, torch.tensor([1]))) == pytest.approx(0.25, abs=1e-6)
    # q -> 0 approaches CE = -ln 0.75
    assert float(GCELoss(1e-4)(LOGITS, torch.tensor([1]))) == pytest.approx(-math.log(0.75), abs=1e-3)
    with pytest.raises(ConfigError):
        GCELoss(0.0)


def test_cross_entropy_value():
    assert float(cross_entropy(LOGITS, torch.tensor([1]))) == pytest.approx(-math.log(0.75), abs=1e-6)


def test_elr_targets_and_loss_by_hand():
    loss_fn = ELRLoss(num_samples=2, num_classes=2, lam=7.0, beta=0.9)
    index = torch.tensor([1])
    # step 1: t = 0.1 * (0.25, 0.75) = (0.025, 0.075); <p, t> = 0.0625
    first = loss_fn(LOGITS, torch.tensor([1]), index)
    assert torch.allclose(loss_fn.targets[1], torch.tensor([0.025, 0.075]))
    assert torch.equal(loss_fn.targets[0], torch.zeros(2))  # other samples untouched
    assert float(first) == pytest.approx(-math.log(0.75) + 7 * math.log(1 - 0.0625), abs=1e-5)
    # step 2: t = 0.9 * (0.025, 0.075) + 0.1 * (0.25, 0.75) = (0.0475, 0.1425); <p, t> = 0.11875
    second = loss_fn(LOGITS, torch.tensor([1]), index)
    assert torch.allclose(loss_fn.targets[1], torch.tensor([0.0475, 0.1425]))
    assert float(second) == pytest.approx(-math.log(0.75) + 7 * math.log(1 - 0.11875), abs=1e-5)


def test_elr_targets_carry_no_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    loss_fn = ELRLoss(num_samples=1, num_classes=2, lam=3.0, beta=0.7)
    loss_fn(logits, torch.tensor([1]), torch.tensor([0])).backward()
    assert not loss_fn.targets.requires_grad
    assert logits.grad is not None
