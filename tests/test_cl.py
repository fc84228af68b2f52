"""Confident learning: cleanlab on out-of-fold probe probabilities, as a method and as TURN's selector."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import numpy as np
import pytest
from test_dividemix import tiny_context, tiny_trainer  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.selection import confident_clean, out_of_fold_probs, select_clean
from nlbench.errors import ConfigError
from nlbench.methods import build_method
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid


def _three_flipped():
    true = np.repeat([0, 1, 2], 10)
    labels = true.copy()
    labels[[0, 10, 20]] = (true[[0, 10, 20]] + 1) % 3  # three wrong labels
    probs = np.full((30, 3), 0.05)
    probs[np.arange(30), true] = 0.9  # a confident model that knows the true classes
    return labels, probs


def test_confident_learning_drops_exactly_the_confidently_wrong_labels():
    labels, probs = _three_flipped()
    keep = confident_clean(labels, probs)
    assert np.flatnonzero(~keep).tolist() == [0, 10, 20]
    assert np.array_equal(select_clean(np.zeros(30), labels, 3, selector="cl", pred_probs=probs), keep)
    with pytest.raises(ConfigError, match="pred_probs"):
        select_clean(np.zeros(30), labels, 3, selector="cl")
    with pytest.raises(ConfigError, match="filter_by"):
        confident_clean(labels, probs, filter_by="prune")


def test_missing_cleanlab_gives_the_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cleanlab" else real(name, *a))
    for name, mode, params in (("cl", "lp", {}), ("turn", "lp-fft", {"selector": "cl"})):
        with pytest.raises(ConfigError, match=r"pip install nlbench\[cl\]"):
            build_method(name, mode, params)
    labels, probs = _three_flipped()
    with pytest.raises(ConfigError, match=r"pip install nlbench\[cl\]"):
        confident_clean(labels, probs)


def test_core_never_imports_cleanlab():
    code = ("import sys, nlbench.run.runner, nlbench.methods, nlbench.engine.selection, nlbench.cli.main; "
            "from nlbench.methods import build_method; build_method('cl', 'lp'); print('cleanlab' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("params, match", [({"folds": 1}, "folds"), ({"filter_by": "x"}, "filter_by"),
                                           ({"probe_epochs": 0}, "probe_epochs")])
def test_bad_hyperparameters_raise(params, match):
    with pytest.raises(ConfigError, match=match):
        build_method("cl", "lp", params)


def test_out_of_fold_probabilities_are_distributions_and_seeded(tmp_path):
    trainer = tiny_trainer(tmp_path)
    a = out_of_fold_probs(trainer, folds=3, epochs=2)
    b = out_of_fold_probs(trainer, folds=3, epochs=2)
    assert a.shape == (trainer.num_train, 10) and np.allclose(a.sum(1), 1.0)
    assert np.array_equal(a, b)
    assert trainer.counters["backbone_backward_images"] == 0


def test_cl_lp_cell_records_the_kept_set(write_grid, tmp_path):
    cell = expand(load_grid(write_grid(methods=[{"method": "cl", "mode": "lp"}])))[0]
    record = run_cell(cell, tmp_path / "r", tmp_path / "cache", log=lambda s: None)
    (sel,) = record["selection"]
    assert sel["phase"] == "cl" and sel["epoch"] == 0
    assert sel["size"] == record["extra"]["kept"] and 0 < sel["size"] < 1257
    assert 0 <= sel["precision"] <= 100 and 0 <= sel["recall"] <= 100
    assert len(record["history"]) == 2 and math.isfinite(record["test_acc_best"])


def test_cl_fft_trains_on_the_kept_set(tmp_path):
    ctx = tiny_context(tmp_path, "fft", epochs=1)
    trainer = ctx.engine
    fit = build_method("cl", "fft", {"folds": 3}).run(ctx)
    kept = int(trainer.selections[0]["mask"].sum())
    assert fit.extra["kept"] == kept
    assert trainer.counters["backbone_backward_images"] == kept  # one FFT epoch over the kept set


def test_turn_with_cl_selector(tmp_path):
    ctx = tiny_context(tmp_path, "lp-fft", epochs=1)
    trainer = ctx.engine
    fit = build_method("turn", "lp-fft", {"selector": "cl", "lp_epochs": 2, "fft_epochs": 1}).run(ctx)
    (sel,) = trainer.selections
    subset = np.flatnonzero(sel["mask"])
    counts = np.bincount(trainer.labels[subset], minlength=10)
    assert len(set(counts[counts > 0])) == 1  # class-balanced draw from the cl-kept set
    assert fit.extra["subset_size"] == len(subset)
