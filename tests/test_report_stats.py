"""Report statistics against hand-worked examples: ranks with ties, Friedman's statistic, Nemenyi's
critical difference, the Pareto front, k-NN accuracy of features."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nlbench.engine.distortion import SavedTestFeatures, knn_accuracy, load_test_features, save_test_features
from nlbench.report.page import pareto_front
from nlbench.report.stats import average_ranks, friedman_nemenyi, score_matrix

# 4 settings × 3 methods; setting 2 ties A and B.
TIED = pd.DataFrame([[90, 80, 70], [85, 85, 60], [70, 75, 65], [88, 82, 80]], columns=list("ABC"),
                    index=["s1", "s2", "s3", "s4"], dtype=float)


def test_average_ranks_share_ties():
    # Ranks per setting (1 = best): A 1, 1.5, 2, 1; B 2, 1.5, 1, 2; C 3, 3, 3, 3.
    ranks = average_ranks(TIED)
    assert ranks.to_dict() == {"A": 1.375, "B": 1.625, "C": 3.0}
    # Lower is better (a cost): the order flips, ties still averaged.
    assert average_ranks(TIED, higher_is_better=False).to_dict() == {"A": 2.625, "B": 2.375, "C": 1.0}


def test_friedman_statistic_without_ties():
    # 3 settings, every one ordered A > B > C: rank sums 3, 6, 9;
    # chi2 = 12 / (n k (k + 1)) * sum R_j^2 - 3 n (k + 1) = 12/36 * 126 - 36 = 6; p = exp(-6 / 2) for 2 dof.
    matrix = pd.DataFrame([[3, 2, 1], [30, 20, 10], [9, 5, 4]], columns=list("ABC"), dtype=float)
    test = friedman_nemenyi(matrix)
    assert test.statistic == pytest.approx(6.0)
    assert test.p_value == pytest.approx(math.exp(-3.0))
    assert list(test.ranks.index) == ["A", "B", "C"]


def test_friedman_statistic_with_ties_and_critical_difference():
    # Uncorrected: 12/48 * (5.5² + 6.5² + 12²) - 48 = 6.125; one tie of 2 in 4 blocks of 3 methods gives the
    # correction 1 - (2³ - 2) / (4 (3³ - 3)) = 0.9375, so chi2 = 6.125 / 0.9375.
    test = friedman_nemenyi(TIED)
    assert test.statistic == pytest.approx(6.125 / 0.9375)
    assert test.p_value == pytest.approx(math.exp(-(6.125 / 0.9375) / 2))
    # Nemenyi CD = q_0.05 sqrt(k (k + 1) / (6 N)); Demšar (2006) Table 5a: q_0.05 = 2.343 for k = 3.
    assert test.critical_difference == pytest.approx(2.343 * math.sqrt(3 * 4 / 24), abs=1e-3)
    p = test.pairwise_p
    assert p.shape == (3, 3) and np.allclose(p.to_numpy(), p.to_numpy().T)
    # A and B are 0.25 ranks apart, A and C 1.625: the closer pair is the less significant one.
    assert p.loc["A", "B"] > p.loc["A", "C"]


def test_friedman_refuses_too_few_methods_or_settings():
    assert "at least 3 methods" in friedman_nemenyi(TIED[["A", "B"]]).note
    assert math.isnan(friedman_nemenyi(TIED.iloc[:1]).statistic)
    same = pd.DataFrame([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], columns=list("ABC"))
    assert "same score" in friedman_nemenyi(same).note


def test_score_matrix_averages_seeds_and_drops_incomplete_settings():
    frame = pd.DataFrame([
        {"block": "s1", "method": "A", "value": 80.0}, {"block": "s1", "method": "A", "value": 90.0},
        {"block": "s1", "method": "B", "value": 70.0}, {"block": "s2", "method": "A", "value": 60.0},
    ])
    matrix, dropped = score_matrix(frame)
    assert dropped == ["s2"]
    assert matrix.loc["s1"].to_dict() == {"A": 85.0, "B": 70.0}


def test_pareto_front():
    cost = [1.0, 2.0, 3.0, 2.0, 5.0]
    acc = [50.0, 70.0, 65.0, 70.0, 80.0]
    # (3, 65) is dominated by (2, 70); the two (2, 70) tie and neither dominates the other.
    assert pareto_front(cost, acc).tolist() == [True, True, False, True, True]


def test_knn_accuracy_separates_clusters_not_noise():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    clustered = np.eye(3)[labels] * 10 + rng.normal(0, 0.1, size=(300, 3))
    assert knn_accuracy(clustered, labels) == 100.0
    assert knn_accuracy(rng.normal(size=(300, 3)), labels) < 50.0


def test_test_features_round_trip(tmp_path):
    features = SavedTestFeatures(before=np.ones((4, 2)), after=np.zeros((4, 2)), labels=np.array([0, 1, 0, 1]),
                            config_hash="abc")
    save_test_features(tmp_path / "f.npz", features)
    back = load_test_features(tmp_path / "f.npz")
    assert back.config_hash == "abc" and back.before.dtype == np.float32
    assert np.array_equal(back.after, features.after) and np.array_equal(back.labels, features.labels)
    assert load_test_features(tmp_path / "missing.npz") is None
    assert [p.name for p in tmp_path.iterdir()] == ["f.npz"]  # no temporary file left behind
