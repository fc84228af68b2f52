"""The semi-supervised pieces of DivideMix and UNICON against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nlbench.engine.semisup import (
    co_guess,
    co_refine,
    contrastive_loss,
    linear_rampup,
    mix,
    mixup_lambda,
    negative_entropy,
    scaled_schedule,
    semi_losses,
    sharpen,
    uniform_prior_penalty,
)

LN3 = math.log(3.0)  # logits (0, ln 3) give p = (1/4, 3/4)


def test_sharpen_squares_and_renormalises_at_t_half():
    p = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    out = sharpen(p, 0.5)
    # (1/16, 9/16) / (10/16) = (0.1, 0.9); a uniform row stays uniform
    assert torch.allclose(out, torch.tensor([[0.1, 0.9], [0.5, 0.5]]))
    assert torch.allclose(sharpen(p, 1.0), p)


def test_co_refinement_weights_label_by_clean_probability():
    y = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    w = torch.tensor([0.8, 0.0])
    p = torch.tensor([[0.5, 0.5], [0.3, 0.7]])
    refined = co_refine(y, w, p)
    assert torch.allclose(refined, torch.tensor([[0.1, 0.9], [0.3, 0.7]]))  # 0.8·y + 0.2·p; w = 0 → p
    # DivideMix's target: the refined label sharpened with T = 0.5: (0.01, 0.81)/0.82
    assert torch.allclose(sharpen(refined, 0.5)[0], torch.tensor([0.01 / 0.82, 0.81 / 0.82]))


def test_co_guessing_averages_both_networks_over_views_then_sharpens():
    net1 = [torch.tensor([[0.6, 0.4]]), torch.tensor([[0.8, 0.2]])]
    net2 = [torch.tensor([[0.2, 0.8]]), torch.tensor([[0.4, 0.6]])]
    q = co_guess(net1 + net2)
    assert torch.allclose(q, torch.tensor([[0.5, 0.5]]))
    q = co_guess([torch.tensor([[0.9, 0.1]])] * 3 + [torch.tensor([[0.5, 0.5]])])  # (0.8, 0.2)
    assert torch.allclose(sharpen(q, 0.5), torch.tensor([[0.64 / 0.68, 0.04 / 0.68]]))


def test_mixup_lambda_is_max_of_beta_draw_and_its_complement():
    draws = np.random.default_rng(7).beta(4.0, 4.0, size=200)
    rng = np.random.default_rng(7)
    got = [mixup_lambda(4.0, rng) for _ in range(200)]
    assert np.allclose(got, np.maximum(draws, 1 - draws))
    assert min(got) >= 0.5


def test_mix_combines_inputs_and_targets_with_the_same_partner():
    x = torch.tensor([[0.0], [10.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mx, mt = mix(x, t, 0.75, torch.tensor([1, 0]))
    assert torch.allclose(mx, torch.tensor([[2.5], [7.5]]))
    assert torch.allclose(mt, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_semi_losses_soft_ce_and_mse_over_samples_and_classes():
    lx, lu = semi_losses(torch.tensor([[0.0, LN3]]), torch.tensor([[0.0, 1.0]]),
                         torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))
    assert lx.item() == pytest.approx(-math.log(0.75))
    assert lu.item() == pytest.approx(0.25)  # ((0.5)² + (0.5)²) / 2 classes
    _, empty = semi_losses(torch.tensor([[0.0, LN3]]), torch.tensor([[0.0, 1.0]]), torch.zeros(0, 2),
                           torch.zeros(0, 2))
    assert empty.item() == 0.0


def test_uniform_prior_penalty_and_confidence_penalty():
    logits = torch.tensor([[0.0, LN3], [LN3, 0.0], [0.0, LN3], [0.0, LN3]])  # batch mean p = (0.375, 0.625)
    expected = 0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)
    assert uniform_prior_penalty(logits).item() == pytest.approx(expected)
    one = torch.tensor([[LN3, 0.0]])  # batch mean (3/4, 1/4)
    assert uniform_prior_penalty(one).item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2.0))
    assert uniform_prior_penalty(torch.zeros(3, 4)).item() == pytest.approx(0.0)
    assert negative_entropy(one).item() == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75))


def test_contrastive_loss_on_a_tiny_batch():
    e = torch.eye(2)
    # Views agree: each anchor's positive has similarity 1, its two negatives 0.
    assert contrastive_loss(e, e, 0.5).item() == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-5)
    # Views swapped: the positive is orthogonal, one negative identical.
    swapped = e.flip(0)
    assert contrastive_loss(e, swapped, 0.5).item() == pytest.approx(math.log(2 + math.exp(2.0)), rel=1e-5)
    # Scale does not matter (embeddings are normalised).
    assert contrastive_loss(3 * e, e, 1.0).item() == pytest.approx(math.log(1 + 2 * math.exp(-1.0)), rel=1e-5)


def test_linear_rampup_and_scaled_schedule():
    assert linear_rampup(1.0, 2, 1.0, 150.0) == 0.0
    assert linear_rampup(2.5, 2, 1.0, 150.0) == pytest.approx(75.0)
    assert linear_rampup(9.0, 2, 1.0, 150.0) == 150.0
    assert linear_rampup(2.0, 2, 0.0, 30.0) == 30.0
    # 30 of 300 warm-up epochs and a 16-epoch ramp scaled to a 20-epoch budget
    assert scaled_schedule(20, ref_epochs=300, ref_warmup=30, ref_rampup=16, warmup=None, rampup=None) == \
        (2, pytest.approx(20 * 16 / 300))
    # a 3-epoch budget keeps one warm-up epoch (round(0.3) = 0 is clipped up) and leaves 2 to train
    assert scaled_schedule(3, ref_epochs=300, ref_warmup=30, ref_rampup=16, warmup=None, rampup=None)[0] == 1
    assert scaled_schedule(20, ref_epochs=300, ref_warmup=30, ref_rampup=16, warmup=5, rampup=0.5) == (5, 0.5)
