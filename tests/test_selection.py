"""TURN's clean-set selection and class balance."""

from __future__ import annotations

import numpy as np
import pytest

from nlbench.engine.selection import balanced_subset, gmm_clean_probability, select_clean
from nlbench.errors import ConfigError
from nlbench.methods import build_method


def test_balanced_subset_takes_min_count_from_each_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    clean = np.array([1, 1, 1, 1, 1, 0, 0, 1, 1, 1], dtype=bool)  # clean counts 3, 2, 3 -> n = 2
    subset = balanced_subset(clean, labels, 3, rng=np.random.default_rng(0))
    assert len(subset) == 6
    assert np.bincount(labels[subset], minlength=3).tolist() == [2, 2, 2]
    assert clean[subset].all()
    assert np.array_equal(subset, np.sort(subset))
    again = balanced_subset(clean, labels, 3, rng=np.random.default_rng(0))
    assert np.array_equal(subset, again)


def test_balanced_subset_tops_up_an_empty_class_with_lowest_losses():
    labels = np.array([0, 0, 1, 1, 1])
    clean = np.array([1, 1, 0, 0, 0], dtype=bool)
    losses = np.array([0.1, 0.2, 3.0, 0.5, 2.0])
    subset = balanced_subset(clean, labels, 2, rng=np.random.default_rng(0), losses=losses)
    assert 3 in subset  # class 1's lowest loss
    assert np.bincount(labels[subset]).tolist() == [1, 1]


def test_loss_threshold_selector():
    losses = np.array([0.1, 0.9, 1.1, 5.0])
    mask = select_clean(losses, np.zeros(4, int), 1, selector="loss", loss_threshold=1.0)
    assert mask.tolist() == [True, True, False, False]
    with pytest.raises(ConfigError, match="loss_threshold"):
        select_clean(losses, np.zeros(4, int), 1, selector="loss")


def test_gmm_per_class_separates_each_class_on_its_own_scale():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    noisy = np.zeros(200, dtype=bool)
    noisy[80:100] = noisy[180:200] = True
    losses = np.where(noisy, rng.normal(2.0, 0.1, 200), rng.normal(0.1, 0.02, 200))
    losses[100:] += 1.5  # class 1 is harder: its clean losses sit above class 0's noisy ones
    per_class = select_clean(losses, labels, 2, scope="per_class")
    assert np.array_equal(per_class, ~noisy)
    global_fit = select_clean(losses, labels, 2, scope="global")
    assert not np.array_equal(global_fit, ~noisy)  # one GMM over both scales mislabels a class


def test_gmm_probability_of_constant_losses_is_one():
    assert gmm_clean_probability(np.full(5, 0.3)).tolist() == [1.0] * 5


@pytest.mark.parametrize("params, message", [
    ({"tau": 1.5}, "tau"), ({"selector": "oracle"}, "unknown selector"), ({"gmm_scope": "x"}, "gmm_scope"),
    ({"selector": "loss"}, "loss_threshold"), ({"q": 0.0}, "q must"),
])
def test_turn_rejects_bad_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        build_method("turn", "lp-fft", params)


def test_turn_only_in_lp_fft_mode():
    with pytest.raises(ConfigError, match="does not support mode 'fft'; supported: lp-fft"):
        build_method("turn", "fft")
