"""The Co-teaching family's forget rate τ and its ramp against the reference codes, with values derived by hand.

References (commits as in docs/fidelity.md):
- Co-teaching, bhanML/Co-teaching @ 7c7fbe2: ``main.py`` 112-115 (τ = noise_rate when no forget_rate is given),
  134-135 (``rate_schedule``: ``np.linspace(0, τ, num_gradual)`` then τ), 287 (``for epoch in range(1,
  n_epoch)``: epoch 0 only evaluates, so 199 epochs train and the first reads index 1); ``data/utils.py``
  125-137 (pair-flip P) and 149-162 (symmetric P: n/(C − 1) off the diagonal, 1 − n on it).
- Co-teaching+, xingruiyu/coteaching_plus @ a68ed61: ``main.py`` 155-158 (τ = noise_rate), 180-183 (the same
  table), 366 (the same loop).
- JoCoR, hongxin001/JoCoR @ 86db359: ``algorithm/jocor.py`` 20-24 (τ = noise_rate / 2 for 'asymmetric'),
  41-42 (the table); ``data/utils.py`` 229-262 (CIFAR-10 asymmetric: 9→1, 2→0, 3↔5, 4→7, five of ten classes
  move with prob. n), 192-226 (MNIST: 7→1, 2→7, 5↔6, 3→8, also five), 264-286 with 98-112 (CIFAR-100: every
  class to the next of its block of 5).
"""

from __future__ import annotations

import numpy as np
import pytest

from nlbench.engine.small_loss import REF_EPOCHS, REF_NUM_GRADUAL, forget_rate, forget_rate_at_step
from nlbench.errors import ConfigError
from nlbench.noise import apply_noise, expected_flip_rate


def pairflip(c: int, n: float) -> np.ndarray:
    """Co-teaching ``noisify_pairflip``'s P: each class to the next, cyclically, with prob. n."""
    p = (1.0 - n) * np.eye(c)
    p[np.arange(c), (np.arange(c) + 1) % c] = n
    return p


def symmetric_other(c: int, n: float) -> np.ndarray:
    """Co-teaching ``noisify_multiclass_symmetric``'s P: n/(C − 1) to every other class."""
    return np.full((c, c), n / (c - 1)) * (1 - np.eye(c)) + (1.0 - n) * np.eye(c)


def jocor_cifar10_asym(n: float) -> np.ndarray:
    p = np.eye(10)
    for src, dst in {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}.items():
        p[src, src], p[src, dst] = 1.0 - n, n
    return p


def jocor_cifar100_asym(n: float) -> np.ndarray:
    p = np.zeros((100, 100))
    for b in range(20):
        p[5 * b:5 * b + 5, 5 * b:5 * b + 5] = pairflip(5, n)
    return p


def test_expected_flip_rate_is_the_codes_tau_on_the_noise_they_ran():
    # Co-teaching / Co-teaching+: τ = noise_rate, and their noise flips exactly that share in expectation.
    assert expected_flip_rate(pairflip(10, 0.45)) == 0.45
    assert expected_flip_rate(symmetric_other(10, 0.5)) == 0.5 and expected_flip_rate(symmetric_other(100, 0.2)) == 0.2
    # JoCoR's halving under asymmetric noise: CIFAR-10's map moves 5 of 10 classes, so n/2 is its flip rate...
    assert expected_flip_rate(jocor_cifar10_asym(0.4)) == 0.2 == 0.4 / 2
    # ...while on CIFAR-100 every class moves: the code's n/2 is half of what its noise flips.
    assert expected_flip_rate(jocor_cifar100_asym(0.4)) == 0.4


@pytest.mark.parametrize("model, rate, options, dataset, classes, expected", [
    ("sym", 0.6, {"convention": "exclusive"}, None, 10, 0.6),     # n/(C−1) to the others: the rate itself
    ("sym", 0.6, {"convention": "reference"}, None, 10, 0.54),    # redrawn from all C: 0.6 · (1 − 1/10)
    ("sym", 0.2, {"convention": "reference"}, None, 100, 0.198),  # 0.2 · (1 − 1/100)
    ("asym", 0.4, {}, "cifar10", 10, 0.2),                        # 5 of 10 classes move: 0.4 · 5/10
    ("asym", 0.4, {}, "fashion_mnist", 10, 0.24),                 # 6 of 10: 0.4 · 6/10
    ("asym", 0.4, {}, "digits", 10, 0.32),                        # 8 of 10 (0 and 2 stay): 0.4 · 8/10
    ("asym", 0.4, {}, "cifar100", 100, 0.4),                      # 'block': every class moves
    ("asym", 0.3, {"convention": "next"}, None, 10, 0.3),
    ("none", 0.0, {}, None, 10, 0.0),
])
def test_expected_flip_rate_of_each_noise_model(model, rate, options, dataset, classes, expected):
    clean = np.repeat(np.arange(classes), 20)
    noisy = apply_noise(model, clean, rate=rate, seed=0, num_classes=classes, dataset=dataset, **options)
    assert expected_flip_rate(noisy.expected_transition) == pytest.approx(expected, abs=1e-12)


def test_expected_flip_rate_of_instance_noise_is_its_mean_flip_probability():
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(4), 50)
    noisy = apply_noise("inst", clean, rate=0.3, seed=1, num_classes=4, inputs=rng.random((200, 6)).astype(np.float32))
    # Balanced classes: the uniform prior over the rows is the mean over samples of 1 − p(y_i | x_i).
    assert expected_flip_rate(noisy.expected_transition) == pytest.approx(float(noisy.flip_probability.mean()))


def test_expected_flip_rate_skips_empty_rows_and_takes_a_prior():
    t = np.array([[0.6, 0.4, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 0.0]])  # class 2 absent from the draw
    assert expected_flip_rate(t) == pytest.approx((0.4 + 0.2) / 2)
    assert expected_flip_rate(t, prior=np.array([0.75, 0.25, 0.0])) == pytest.approx(0.75 * 0.4 + 0.25 * 0.2)
    with pytest.raises(ConfigError, match="summing to 1"):
        expected_flip_rate(t, prior=np.array([0.5, 0.2, 0.1]))
    with pytest.raises(ConfigError, match="must be square"):
        expected_flip_rate(np.ones((2, 3)))


def test_step_ramp_at_the_reference_budget_is_the_codes_table_per_epoch():
    # 199 trained epochs of 3 batches: step s stands at reference epoch ⌊s·199/597⌋ = ⌊s/3⌋, the code's
    # rate_schedule[epoch] with T_k = 10 (forget_rate reads index epoch + 1).
    assert (REF_EPOCHS, REF_NUM_GRADUAL) == (200, 10)
    for s in range(597):
        assert forget_rate_at_step(s, 597, 0.45) == forget_rate(s // 3, 0.45, 10)
    # By hand: linspace(0, .45, 10) = 0, .05, .10, …, .45; the first trained epoch reads .05, the ninth .45.
    assert [forget_rate_at_step(3 * e, 597, 0.45) for e in range(10)] == pytest.approx(
        [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.45])


def test_step_ramp_keeps_its_share_at_the_engines_budget():
    # 20 LP epochs of 9 batches = 180 steps: step s reads reference epoch ⌊199·s/180⌋: s = 0 → 0, 1 → 1,
    # 7 → 7 (1393/180 = 7.7), 8 → 8 (1592/180 = 8.8): τ/9, 2τ/9, …, 8τ/9, then τ from step 8 on (8/180 = 4.4 %
    # of the run, the code's 8/199 = 4.0 % to within a step), where the epoch ramp (T_k = round(20/20) = 1)
    # applies τ from the first batch.
    tau = 0.45
    assert [forget_rate_at_step(s, 180, tau) for s in range(10)] == pytest.approx(
        [0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.45])
    assert forget_rate_at_step(179, 180, tau) == tau and forget_rate(0, tau, 1) == tau
    # The paper's min(T/T_k, 1)·τ with T = 200·s/S reference epochs: τ at 5 % of the run, 9 of 180 steps.
    assert [forget_rate_at_step(s, 180, tau, "paper") for s in (0, 3, 6, 9, 100)] == pytest.approx(
        [0.0, tau / 3, 2 * tau / 3, tau, tau])
    with pytest.raises(ConfigError, match="outside a run of 180 steps"):
        forget_rate_at_step(180, 180, tau)
