"""Fine-tuning candidates run some of the K folds (``--fine-tune-folds``): the held-out images of those folds are
scored, by hand-computed T⁻ᵀN and trusted-label accuracy; the cost model scales with the folds run; a partial run
is cached and read back as such."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlbench.advise.data import AdviseData
from nlbench.advise.pipeline import score_candidates
from nlbench.advise.portfolio import Candidate, CandidateResult, estimate_seconds, evaluate, parse_backbones
from nlbench.engine.config import TrainConfig
from nlbench.errors import ConfigError

GIVEN = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
T = np.array([[0.8, 0.2], [0.2, 0.8]])


def _data(labels: np.ndarray) -> AdviseData:
    return AdviseData(source="csv:x", paths=[f"{i}.png" for i in range(len(labels))], labels=labels,
                      class_names=["a", "b"], identity={"test": 1})


def _one_hot(preds: list[int]) -> np.ndarray:
    return np.eye(2)[preds]


def _results(partial_rows: list[int], partial_preds: list[int]) -> dict[str, CandidateResult]:
    choice = parse_backbones(None, 32)[0]
    full = _one_hot([0, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    partial = np.full((10, 2), np.nan)
    partial[partial_rows] = _one_hot(partial_preds)
    return {"full": CandidateResult(Candidate("ce", "lp", choice), full, 1.0, False),
            "part": CandidateResult(Candidate("turn", "lp-fft", choice), partial, 1.0, False, folds_run=1)}


def _noise() -> dict:
    return {"transition_used": T.tolist(), "estimator": "anchor"}


def _probe() -> np.ndarray:
    return np.where(GIVEN[:, None] == np.arange(2), 0.9, 0.1)


def test_a_partial_candidate_is_scored_on_its_held_out_images_only():
    rows = score_candidates(_data(GIVEN), _results([0, 1, 5, 6], [0, 1, 1, 1]), _probe(), None, _noise(), seed=0)
    part = next(r for r in rows if r["candidate"] == "part")
    # N over the 4 scored images: (0,0) 1/4, (0,1) 1/4, (1,1) 2/4; T⁻¹ = [[4/3, -1/3], [-1/3, 4/3]];
    # T⁻ᵀN = [[1/3, 1/6], [-1/12, 7/12]], trace 11/12.
    assert part["noisy_acc"] == 0.75
    assert part["clean_acc"]["value"] == round(11 / 12, 4)
    assert part["held_out_images"] == 4
    assert "on the 4 images of 1 held-out fold" in part["estimator"]
    full = next(r for r in rows if r["candidate"] == "full")
    # All 10: N = [[4, 1], [1, 4]] / 10; T⁻ᵀN's trace = (4/3·0.4 − 1/3·0.1) + (−1/3·0.1 + 4/3·0.4) = 1.0
    assert full["noisy_acc"] == 0.8 and full["clean_acc"]["value"] == 1.0 and full["held_out_images"] == 10
    assert "held-out fold" not in full["estimator"]
    # Every bootstrap round scores the partial candidate on its own rows: its interval stays inside [0, 1] and
    # differs from the full candidate's.
    assert 0.0 <= part["clean_acc"]["low"] <= part["clean_acc"]["high"] <= 1.0
    assert part["clean_acc"] != full["clean_acc"]


def test_trusted_labels_score_a_partial_candidate_on_the_trusted_images_it_held_out():
    trusted = (np.array([0, 5, 7]), np.array([0, 1, 1]))
    rows = score_candidates(_data(GIVEN), _results([0, 1, 5, 6], [0, 1, 1, 1]), _probe(), trusted, _noise(), seed=0)
    part = next(r for r in rows if r["candidate"] == "part")
    assert part["clean_acc"]["value"] == 1.0  # images 0 and 5 are held out and predicted right; 7 is not scored
    assert "on the 2 trusted labels" in part["estimator"]
    full = next(r for r in rows if r["candidate"] == "full")
    assert full["clean_acc"]["value"] == round(2 / 3, 4)  # 0 → 0 right, 5 → 1 right, 7 → 0 wrong


def test_a_partial_candidate_without_trusted_images_keeps_the_transition_estimate():
    trusted = (np.array([2, 3]), np.array([0, 0]))
    rows = score_candidates(_data(GIVEN), _results([0, 1, 5, 6], [0, 1, 1, 1]), _probe(), trusted, _noise(), seed=0)
    part = next(r for r in rows if r["candidate"] == "part")
    assert part["clean_acc"]["value"] == round(11 / 12, 4)
    assert "none of the trusted images is in its held-out folds" in part["assumption"]


def test_the_cost_of_a_fine_tuning_candidate_scales_with_the_folds_it_runs():
    choice = parse_backbones(None, 32)[0]
    fft = Candidate("ce", "fft", choice)
    kwargs = dict(lp_ce_seconds=10.0, feature_seconds_per_image=0.01, n=1000, folds=5, noise_rate=0.4)
    # One fold: a fifth of LP CE's K-fold time + 5 epochs × 800 training images × 3 passes + 200 held out.
    assert estimate_seconds(fft, **kwargs, folds_run=1) == pytest.approx(10 / 5 + (5 * 800 * 3 + 200) * 0.01)
    assert estimate_seconds(fft, **kwargs) == pytest.approx(5 * estimate_seconds(fft, **kwargs, folds_run=1))
    turn = Candidate("turn", "lp-fft", choice)
    assert estimate_seconds(turn, **kwargs, folds_run=2) == pytest.approx(
        2 / 5 * estimate_seconds(turn, **kwargs, folds_run=5))


class ArrayFeatures:
    """Stand-in for ``FullFeatures``: fixed feature rows (an LP candidate reads nothing else)."""

    def __init__(self, features: torch.Tensor) -> None:
        self.features = features
        self.choice = parse_backbones(None, 32)[0]
        self.digest = "array-features"
        self.seconds_per_image = 0.001

    def view(self, view: int) -> torch.Tensor:
        return self.features


def test_evaluate_runs_the_first_folds_caches_them_and_keeps_the_k_fold_result_apart(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = torch.as_tensor(rng.normal(size=(60, 8)) + 3 * labels[:, None], dtype=torch.float32)
    full, data = ArrayFeatures(features), _data(labels)
    folds = np.arange(60) % 3
    cand = Candidate("ce", "lp", full.choice)
    kwargs = dict(config=TrainConfig(lp_epochs=3), cache=tmp_path, seed=0, nominal_rate=0.0, log=lambda _m: None)
    one = evaluate(cand, full, data, folds, folds_run=1, **kwargs)
    assert np.array_equal(one.scored, folds == 0) and not one.resumed and one.folds_run == 1
    again = evaluate(cand, full, data, folds, folds_run=1, **kwargs)
    assert again.resumed and np.array_equal(again.probs, one.probs, equal_nan=True)
    every = evaluate(cand, full, data, folds, **kwargs)
    assert every.scored.all() and not every.resumed and every.folds_run == 0
    # Fold 0 trains on the same folds either way: the same predictions.
    assert np.allclose(every.probs[folds == 0], one.probs[folds == 0])
    with pytest.raises(ConfigError, match="folds to run 4; expected 1 to 3"):
        evaluate(cand, full, data, folds, folds_run=4, **kwargs)
