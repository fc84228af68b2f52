"""UNICON: JSD values, the noise-adaptive cutoff, the per-class uniform quota, bad input, lp/fft runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_dividemix import tiny_context  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.selection import jsd_to_labels, unicon_selection_ratio, uniform_selection
from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid

QUIET = {"log": lambda s: None}


def test_jsd_to_one_hot_labels_in_bits_and_nats():
    probs = np.array([[1.0, 0.0, 0.0],   # the label itself
                      [0.0, 1.0, 0.0],   # all mass on another class
                      [0.5, 0.25, 0.25],  # p_y = 1/2
                      [0.5, 0.5, 0.0]])  # p_y = 1/2 again: only p_y matters against a one-hot label
    labels = np.array([0, 0, 0, 0])
    d = jsd_to_labels(probs, labels, base=2)
    # p_y = 1/2: ½[log2(2/(1+p)) + p·log2(2p/(1+p)) + (1 − p)] = ½[log2(4/3) + ½·log2(2/3) + ½]
    half = 0.5 * (math.log2(4 / 3) + 0.5 * math.log2(2 / 3) + 0.5)
    assert d == pytest.approx([0.0, 1.0, half, half])
    assert half == pytest.approx(0.3112781)
    # In nats (the reference code's, the default) the bound is ln 2 < d_u = 0.7.
    assert jsd_to_labels(probs, labels) == pytest.approx([0.0, math.log(2), half * math.log(2), half * math.log(2)])


def test_selection_ratio_uses_the_mean_unless_noise_is_heavy():
    jsd = np.array([0.1, 0.2, 0.9, 0.3, 0.05, 0.6, 0.7, 0.8])  # mean 0.45625 ≤ d_u
    cutoff, ratio = unicon_selection_ratio(jsd, d_u=0.7, tau=5)
    assert cutoff == pytest.approx(0.45625) and ratio == pytest.approx(4 / 8)
    heavy = np.array([0.9, 0.8, 0.95, 0.5])  # mean 0.7875 > d_u: cutoff 0.7875 − (0.7875 − 0.5)/5 = 0.73
    cutoff, ratio = unicon_selection_ratio(heavy, d_u=0.7, tau=5)
    assert cutoff == pytest.approx(0.73) and ratio == pytest.approx(1 / 4)
    # cutoff='mean' (the reference code's behaviour) keeps the mean even then: for [0.9, 0.75, 0.95, 0.5]
    # (mean 0.775) 'adaptive' cuts at 0.775 − 0.275/5 = 0.72 (one sample below), 'mean' at 0.775 (two).
    heavy = np.array([0.9, 0.75, 0.95, 0.5])
    assert unicon_selection_ratio(heavy, d_u=0.7, tau=5, cutoff="adaptive") == pytest.approx((0.72, 1 / 4))
    assert unicon_selection_ratio(heavy, d_u=0.7, tau=5, cutoff="mean") == pytest.approx((0.775, 2 / 4))


def test_uniform_quota_takes_the_same_number_from_every_class():
    jsd = np.array([0.1, 0.2, 0.9, 0.3, 0.05, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # ratio 1/2 of N = 8 over C = 2 classes: 2 per class, the lowest divergences of each class, even
    # where they lie above the cutoff (sample 5: 0.6)
    assert uniform_selection(jsd, labels, 2, 0.5).tolist() == [0, 1, 4, 5]
    assert uniform_selection(jsd, labels, 2, 0.3).tolist() == [0, 4]  # ⌊0.3·8/2⌋ = 1
    # a class with fewer samples than the quota gives all it has
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert uniform_selection(jsd, labels, 2, 0.75).tolist() == [0, 1, 4, 6, 7]  # quota 3; class 1 has 2


@pytest.mark.parametrize("params, match", [
    ({"d_u": 1.0}, "d_u"),
    ({"d_u": 0.0}, "d_u"),
    ({"tau": 0.5}, "tau"),
    ({"views": 0}, "views"),
    ({"lambda_c": -0.1}, "lambda_c"),
    ({"contrastive_temperature": 0.0}, "contrastive_temperature"),
    ({"jsd_base": "10"}, "jsd_base"),
    ({"cutoff": "median"}, "cutoff"),
    ({"weight_rule": "soft"}, "weight_rule"),
])
def test_bad_hyperparameters_raise(params, match):
    with pytest.raises(ConfigError, match=match):
        build_method("unicon", "lp", params)
    with pytest.raises(ConfigError, match="supported: fft, lp"):
        build_method("unicon", "lp-fft")


def test_lp_run_selects_class_uniform_sets_before_each_network(write_grid, tmp_path):
    grid = write_grid(methods=[{"method": "unicon", "mode": "lp"}], train={"lp_epochs": 3})
    record = run_cell(expand(load_grid(grid))[0], tmp_path / "r", tmp_path / "cache", **QUIET)
    assert [(s["phase"], s["epoch"]) for s in record["selection"]] == [("net1", 1), ("net2", 1), ("net1", 2),
                                                                       ("net2", 2)]
    ratios = record["extra"]["selection_ratios"]
    for s, ratio in zip(record["selection"], [r for pair in ratios for r in pair], strict=True):
        # every class fills its quota ⌊SR·N/C⌋ (each digits class holds > 100 noisy labels)
        assert s["size"] == 10 * int(ratio * 1257 / 10)
    assert len(record["history"]) == 3 and math.isfinite(record["test_acc_best"])
    assert record["cost"]["backbone_backward_images"] == 0
    # The reference code's reading is the default, and the record says so.
    assert (record["extra"]["jsd_base"], record["extra"]["cutoff"], record["extra"]["weight_rule"]) == (
        "e", "mean", "reference")


def test_fft_run_with_projection_head(tmp_path):
    ctx = tiny_context(tmp_path, "fft", noise="asym", rate=0.4)
    trainer = ctx.engine
    fit = build_method("unicon", "fft", {"warmup_epochs": 1, "projection_dim": 4}).run(ctx)
    n = trainer.num_train
    assert trainer.counters["backbones_built"] == 2
    assert all(net.projection[0].out_features == 4 for net in fit.model)
    assert len(fit.history) == 2 and math.isfinite(fit.test_acc_best)
    assert fit.extra["confidence_penalty"] is True and fit.extra["lambda_u"] == 30.0
    sizes = [int(s["mask"].sum()) for s in trainer.selections]
    assert [s["phase"] for s in trainer.selections] == ["net1", "net2"] and min(sizes) > 0
    # Per network and step: two contrasted views of the unlabelled batch (B/(2·SR) samples) and the mixed
    # batch (two views of the labelled and of the unlabelled batch) are backpropagated.
    expected = 2 * (n - (1 if n % 64 == 1 else 0))
    for x, ratio in zip(sizes, fit.extra["selection_ratios"][0], strict=True):
        ub = min(max(1, int(32 / (2 * ratio))), n - x)
        expected += 2 * x + math.ceil(x / 32) * (2 * ub + 2 * ub)
    assert trainer.counters["backbone_backward_images"] == expected
