"""advise's estimators against hand-computed values: the clean accuracy trace(T⁻ᵀN) of a known T and confusion,
the confident joint of a constructed set of probabilities, the detectors, trusted-label calibration, budgets."""

from __future__ import annotations

import numpy as np
import pytest

from nlbench.advise import estimators as est
from nlbench.advise.issues import detection_scores, flag_confident_joint, suspicion
from nlbench.advise.pipeline import parse_budget
from nlbench.errors import ConfigError

T = np.array([[0.8, 0.2], [0.3, 0.7]])  # P(given = j | true = i)
M = np.array([[0.40, 0.10], [0.05, 0.45]])  # P(true = i, prediction = k): clean accuracy 0.85
# N = Tᵀ M by hand: N[j, k] = Σ_i T[i, j] M[i, k]
N = np.array([[0.8 * 0.40 + 0.3 * 0.05, 0.8 * 0.10 + 0.3 * 0.45],
              [0.2 * 0.40 + 0.7 * 0.05, 0.2 * 0.10 + 0.7 * 0.45]])


def test_hand_computed_joint_of_given_label_and_prediction():
    assert N == pytest.approx(np.array([[0.335, 0.215], [0.115, 0.335]]))
    assert np.trace(N) == pytest.approx(0.67)  # what K-fold accuracy on the given labels reports


def test_clean_accuracy_of_a_known_transition_and_confusion():
    assert est.clean_joint(T, N) == pytest.approx(M)
    assert est.clean_accuracy(T, N) == pytest.approx(0.85)
    # The other orientation (T⁻¹N) is not the clean joint: the transpose matters.
    assert np.trace(np.linalg.solve(T, N)) != pytest.approx(0.85, abs=1e-3)


def test_clean_accuracy_on_sampled_class_conditional_noise():
    """Draw true labels, predictions from a confusion and given labels from T independently of the prediction:
    trace(T⁻ᵀN) of the empirical N recovers the accuracy against the true labels."""
    rng = np.random.default_rng(0)
    t3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    confusion = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]])  # P(prediction | true)
    n = 200_000
    y = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    u = rng.random(n)
    pred = (u[:, None] > np.cumsum(confusion[y], 1)).sum(1)
    noisy = (rng.random(n)[:, None] > np.cumsum(t3[y], 1)).sum(1)
    true_acc = float((pred == y).mean())
    nj = est.prediction_joint(noisy, pred, 3)
    assert est.clean_accuracy(t3, nj) == pytest.approx(true_acc, abs=0.01)
    assert abs(np.trace(nj) - true_acc) > 0.1  # the noisy-label accuracy is far off


# Constructed confident joint: labels [0, 0, 0, 1, 1, 1], p(class 1) per sample; thresholds t0 = t1 = 0.6, so
# samples 0, 1 count in C[0, 0], 2 in C[0, 1], 3, 4 in C[1, 1] and 5 in C[1, 0].
LABELS = np.array([0, 0, 0, 1, 1, 1])
P1 = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.3])
PROBS = np.stack([1 - P1, P1], 1)


def test_confident_joint_by_hand():
    assert est.confident_joint(LABELS, PROBS) == pytest.approx(np.array([[2, 1], [1, 2]]))
    q = est.calibrated_joint(LABELS, PROBS)
    assert q == pytest.approx(np.array([[2, 1], [1, 2]]) / 6)
    assert est.noise_rate(q) == pytest.approx(1 / 3)
    assert est.transition_from_joint(q) == pytest.approx(np.array([[2 / 3, 1 / 3], [1 / 3, 2 / 3]]))
    assert est.per_class_noise(q) == pytest.approx([1 / 3, 1 / 3])


def test_calibration_rescales_rows_to_the_given_counts():
    # Four samples labelled 0 of which only two are confident (both of class 0), two labelled 1 (one flips).
    labels = np.array([0, 0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.1, 0.45, 0.45, 0.9, 0.2])
    # t0 = mean(.9, .9, .55, .55) = 0.725: samples 0, 1 confident in 0; 2, 3 below t0 and below t1 = 0.55.
    probs = np.stack([1 - p1, p1], 1)
    assert est.confident_joint(labels, probs) == pytest.approx(np.array([[2, 0], [1, 1]]))
    q = est.calibrated_joint(labels, probs)
    assert q == pytest.approx(np.array([[4, 0], [1, 1]]) / 6)  # row 0 scaled to its 4 given labels
    assert est.noise_rate(q) == pytest.approx(1 / 6)


def test_confident_joint_detector_flags_the_off_diagonal_samples():
    q = est.calibrated_joint(LABELS, PROBS)
    assert np.flatnonzero(flag_confident_joint(LABELS, PROBS, q)).tolist() == [2, 5]
    score, suggested, p = suspicion(LABELS, PROBS)
    assert score == pytest.approx([0.1, 0.2, 0.9, 0.2, 0.3, 0.7])
    assert suggested.tolist() == [1, 1, 1, 0, 0, 0]
    truth = np.array([False, False, True, False, False, False])
    assert detection_scores(flag_confident_joint(LABELS, PROBS, q), truth) == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "flagged": 2})


def test_trusted_transition_blends_counts_with_the_prior():
    true = np.array([0, 0, 0, 0, 1, 1])
    given = np.array([0, 0, 0, 1, 1, 1])
    prior = np.array([[0.5, 0.5], [0.5, 0.5]])
    # Row 0: counts (3, 1) + 2 × (0.5, 0.5) over 4 + 2; row 1: (0, 2) + (1, 1) over 4.
    assert est.trusted_transition(true, given, prior, strength=2.0) == pytest.approx(
        np.array([[4 / 6, 2 / 6], [1 / 4, 3 / 4]]))


def test_wilson_interval():
    lo, hi = est.wilson(30, 300)
    assert lo < 0.1 < hi and hi - lo < 0.06
    lo_small, hi_small = est.wilson(3, 30)
    assert hi_small - lo_small > hi - lo
    assert est.wilson(0, 10)[0] == 0.0


def test_confused_pairs_and_condition():
    q = np.array([[0.3, 0.1, 0.0], [0.0, 0.3, 0.05], [0.0, 0.0, 0.25]])
    pairs = est.confused_pairs(q, 1000)
    assert [(p["given"], p["true"], p["count"]) for p in pairs] == [(0, 1, 100), (1, 2, 50)]
    assert est.condition_number(np.eye(3)) == pytest.approx(1.0)
    assert est.condition_number(np.array([[0.5, 0.5], [0.49, 0.51]])) > est.CONDITION_LIMIT


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("90s", 90), ("1h30m", 5400), ("2", 120)])
def test_budget(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["soon", "15x", "0m", "-3m"])
def test_bad_budget(text):
    with pytest.raises(ConfigError, match="--budget"):
        parse_budget(text)


def test_singular_transition_gives_a_least_squares_estimate_and_a_huge_condition_number():
    singular = np.array([[0.5, 0.5], [0.5, 0.5]])  # the given label says nothing about the class
    assert est.condition_number(singular) > 1e12 * est.CONDITION_LIMIT
    assert 0.0 <= est.clean_accuracy(singular, N) <= 1.0


def test_budget_cost_model():
    """The budget's estimates: an LP candidate costs the K-fold CE probe's time × its relative cost plus the
    augmented feature views not cached yet; TURN fine-tunes, in each of the K folds, on (K − 1)/K × the clean
    share of the images."""
    from nlbench.advise.portfolio import Candidate, candidate_views, estimate_seconds, parse_backbones
    from nlbench.registry import METHODS

    b = parse_backbones(None, 32)[0]
    common = {"lp_ce_seconds": 10.0, "feature_seconds_per_image": 0.01, "n": 1000, "folds": 5, "noise_rate": 0.3}
    assert estimate_seconds(Candidate("ce", "lp", b), **common) == pytest.approx(10.0)
    dmix = Candidate("dividemix", "lp", b)
    views = candidate_views(dmix)
    assert views == 2
    fresh = estimate_seconds(dmix, **common)
    assert fresh - estimate_seconds(dmix, **common, views_available=2) == pytest.approx(views * 1000 * 0.01)
    passes = METHODS.entry("turn").meta["fft_passes"]
    # 10 s of probe + (5 folds · 1000 · 4/5 · 0.7 clean · 5 epochs · passes · 3 for forward + backward
    # + 1000 held out) × 0.01
    expected = 10.0 + (5 * 1000 * 0.8 * 0.7 * 5 * passes * 3 + 1000) * 0.01
    assert estimate_seconds(Candidate("turn", "lp-fft", b), **common) == pytest.approx(expected)


def test_without_cleanlab_advise_uses_its_own_detectors(monkeypatch):
    """cleanlab is an optional extra: without it the portfolio has no CL candidate and the cleanlab detector says
    how to install it; the default detector needs nothing."""
    from nlbench.advise import issues
    from nlbench.advise.portfolio import candidates, parse_backbones

    b = parse_backbones(None, 32)
    assert "cl" in {c.method for c in candidates(b, cleanlab=True)}
    assert "cl" not in {c.method for c in candidates(b, cleanlab=False)}
    monkeypatch.setattr(issues, "cleanlab_available", lambda: False)
    q = est.calibrated_joint(LABELS, PROBS)
    with pytest.raises(ConfigError, match=r"pip install 'nlbench\[cl\]'"):
        issues.flag("cleanlab", LABELS, PROBS, q)
    assert issues.DEFAULT_DETECTOR != "cleanlab"
    assert issues.flag(issues.DEFAULT_DETECTOR, LABELS, PROBS, q).tolist() == [False, False, True, False, False, True]


# ------------------------------------------------------------------ the anchor-point noise estimator (default)
def test_anchor_rows_are_the_mean_prediction_over_each_class_top_share_by_hand():
    # 100 images, top 3 % = 3 images per class. Class 0's three most confident images are rows 0, 1, 2
    # (p0 = 0.9, 0.8, 0.7), class 1's rows 3, 4, 5 (p1 = 0.95, 0.85, 0.75); every other image has p = (0.5, 0.5).
    probs = np.full((100, 2), 0.5)
    probs[:6] = [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.05, 0.95], [0.15, 0.85], [0.25, 0.75]]
    t = est.anchor_mean_transition(probs, top_share=0.03)
    assert t == pytest.approx(np.array([[0.8, 0.2], [0.15, 0.85]]))


def test_clean_prior_and_joint_from_a_known_transition():
    prior = np.array([0.6, 0.4])
    # Given-label prior Tᵀπ by hand: (0.6·0.8 + 0.4·0.3, 0.6·0.2 + 0.4·0.7) = (0.6, 0.4); 1,000 labels in that ratio.
    noisy = np.array([0] * 600 + [1] * 400)
    assert est.clean_prior(T, noisy, solve=True) == pytest.approx(prior)
    # The default weights T's rows with the given labels' prior itself; solving recovers π where they differ:
    # π = (0.2, 0.8) gives Tᵀπ = (0.2·0.8 + 0.8·0.3, 0.2·0.2 + 0.8·0.7) = (0.4, 0.6).
    shifted = np.array([0] * 400 + [1] * 600)
    assert est.clean_prior(T, shifted) == pytest.approx([0.4, 0.6])
    assert est.clean_prior(T, shifted, solve=True) == pytest.approx([0.2, 0.8])
    q = est.joint_from_transition(T, prior)
    # Q[i, j] = P(given = i, true = j) = π_j T[j, i]
    assert q == pytest.approx(np.array([[0.6 * 0.8, 0.4 * 0.3], [0.6 * 0.2, 0.4 * 0.7]]))
    assert est.noise_rate(q) == pytest.approx(1 - 0.48 - 0.28)


def test_temperature_scaling_recovers_the_temperature_of_an_overconfident_probe():
    """Labels drawn from softmax(z); the probe reports softmax(3z): the fitted τ is about 3 and undoes it."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20_000, 4))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in p_true])
    sharp = np.exp(3 * z) / np.exp(3 * z).sum(1, keepdims=True)
    scaled, tau = est.temperature_scale(labels, sharp)
    assert tau == pytest.approx(3.0, rel=0.05)
    assert np.abs(scaled - p_true).max() < 0.05


def _weak_probe_world(seed: int = 0):
    """Three classes; 20 % of the images are unambiguous (their clean posterior one-hot: anchors), the rest
    ambiguous (posterior 0.5 on their class, 0.25 on each other). Given labels from T, independent of the image
    given its class; the probe is perfect: it reports the exact noisy posterior Tᵀ p(y | x)."""
    rng = np.random.default_rng(seed)
    t = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
    n = 30_000
    y = rng.integers(0, 3, n)
    clean_post = np.full((n, 3), 0.25)
    clean_post[np.arange(n), y] = 0.5
    anchors = rng.random(n) < 0.2
    clean_post[anchors] = np.eye(3)[y[anchors]]
    # The true class is drawn from the posterior, so the posterior is right: re-draw y from it.
    y = np.array([rng.choice(3, p=p) for p in clean_post])
    noisy = np.array([rng.choice(3, p=t[k]) for k in y])
    return t, y, noisy, clean_post @ t


def test_anchor_estimator_recovers_t_and_the_rate_where_the_confident_joint_runs_high():
    t, y, noisy, probs = _weak_probe_world()
    realized = float((noisy != y).mean())
    q, t_hat = est.estimate_joint(noisy, probs, "anchor")
    assert np.abs(t_hat - t).max() < 0.03
    assert abs(est.noise_rate(q) - realized) < 0.02
    # The confident joint counts the probe's confusion on the ambiguous images as label errors.
    q_cj, _ = est.estimate_joint(noisy, probs, "confident-joint")
    assert est.noise_rate(q_cj) - realized > 0.1
    with pytest.raises(ValueError, match="expected one of: anchor, confident-joint"):
        est.estimate_joint(noisy, probs, "oracle")


def test_an_estimate_outside_zero_one_is_reported_as_clipped():
    """T overstating the noise: T = [[0.6, 0.4], [0.4, 0.6]] against a candidate that agrees with every given label
    (N = diag(0.5, 0.5)). By hand T⁻¹ = 5·[[0.6, −0.4], [−0.4, 0.6]] (symmetric, so T⁻ᵀ too), M = T⁻ᵀN =
    2.5·[[0.6, −0.4], [−0.4, 0.6]], trace 3.0: no clean joint gives it; the clipped 1.0 is a bound."""
    from nlbench.advise.pipeline import _bound_note

    t = np.array([[0.6, 0.4], [0.4, 0.6]])
    n = np.diag([0.5, 0.5])
    assert est.clean_accuracy_raw(t, n) == pytest.approx(3.0)
    assert est.clean_accuracy(t, n) == 1.0
    assert "trace(T⁻ᵀN) = 3.00 was clipped to 100%" in _bound_note(3.0)
    assert _bound_note(0.85) == ""


def test_consistency_problems_name_a_non_dominant_diagonal_and_a_probe_the_estimate_cannot_explain():
    names = ["a", "b", "c"]
    # 30 images, 10 per true class; the probe predicts the true class; each class keeps 8 labels and gives one to
    # each other class: T = 0.8 on the diagonal, 0.1 off it, and N = Tᵀ diag(1/3) exactly, so trace(T⁻ᵀN) = 1.
    true = np.repeat([0, 1, 2], 10)
    noisy = true.copy()
    for k in range(3):
        noisy[10 * k + 8], noisy[10 * k + 9] = (k + 1) % 3, (k + 2) % 3
    sound = np.full((3, 3), 0.1) + np.eye(3) * 0.7
    assert est.clean_accuracy_raw(sound, est.prediction_joint(noisy, true, 3)) == pytest.approx(1.0)
    assert est.consistency_problems(sound, noisy, true, names) == []
    # Class b's given label is b for 0.3 of its images and a for 0.5: b is not identifiable.
    weak_b = np.array([[0.8, 0.1, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    problems = est.consistency_problems(weak_b, noisy, true, names)
    assert "true class b:" in problems[0] and "true classes" not in problems[0]
    # T = 0.1 I + 0.3 J (J all ones): T⁻¹ = 10 (I − 0.3 J), diagonal 7; a probe agreeing with every given label
    # gives N = diag(1/3) and trace(T⁻ᵀN) = Σ (T⁻¹)ᵢᵢ / 3 = 7.0: no clean labelling explains it.
    flat = np.full((3, 3), 0.3) + np.eye(3) * 0.1
    problems = est.consistency_problems(flat, noisy, noisy, names)
    assert len(problems) == 1 and "trace(T⁻ᵀN) is 7.00" in problems[0]
    # Within the margin an estimate past 1 is sampling error, not a contradiction.
    near = est.clean_accuracy_raw(sound * 0.99 + 0.01 / 3, est.prediction_joint(noisy, true, 3))
    assert 1.0 < near < 1.0 + est.CONSISTENCY_MARGIN
    assert est.consistency_problems(sound * 0.99 + 0.01 / 3, noisy, true, names) == []
