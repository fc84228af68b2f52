"""``nlbench advise --fit`` keeps one module that predicts as the K-fold evaluation did, for two-network
candidates too (a recommended LP DivideMix could not be saved before: "returns a CoNet")."""

from __future__ import annotations

import torch
from torch import nn

from nlbench.advise.model import single_model
from nlbench.engine.network_pair import CoNet
from nlbench.engine.train import Classifier


def _pair(encoder_1: nn.Module | None = None, encoder_2: nn.Module | None = None) -> nn.ModuleList:
    torch.manual_seed(0)
    return nn.ModuleList([CoNet(encoder_1, nn.Linear(6, 3)), CoNet(encoder_2, nn.Linear(6, 3))])


def test_an_lp_pair_becomes_the_head_of_mean_weights_whose_logits_are_the_pairs_mean():
    pair = _pair()
    x = torch.randn(5, 6)
    merged = single_model(pair, "mean")
    assert isinstance(merged, nn.Linear)
    assert torch.allclose(merged(x), 0.5 * (pair[0](x) + pair[1](x)), atol=1e-6)
    # By hand for one weight: the mean of the two heads' weights.
    assert torch.isclose(merged.weight[1, 2], 0.5 * (pair[0].head.weight[1, 2] + pair[1].head.weight[1, 2]))


def test_a_pair_that_predicts_with_network_1_keeps_its_head():
    pair = _pair()
    assert single_model(pair, "net1") is pair[0].head


def test_an_fft_pair_keeps_network_1_as_a_classifier_with_the_same_outputs():
    pair = _pair(nn.Linear(4, 6), nn.Linear(4, 6))
    x = torch.randn(5, 4)
    kept = single_model(pair, "mean")
    assert isinstance(kept, Classifier)
    assert torch.equal(kept(x), pair[0](x))


def test_a_single_model_is_returned_as_it_is():
    head = nn.Linear(6, 3)
    assert single_model(head) is head
