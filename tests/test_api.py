"""The public Python API (docs/api.md): tidy frames of real record files, read back with pandas; the leaderboard
of a (filtered) frame is the table of ``nlbench table``; ``import nlbench`` stays light; ``nlbench.run`` runs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _gridfile import cli
from _records import record_of

import nlbench
from nlbench.errors import ConfigError
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import record_path, write_record

METHODS = [{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp", "params": {"q": 0.7}},
           {"method": "dividemix", "mode": "lp"}]
NOISE = [{"model": "sym", "rate": 0.6}, {"model": "asym", "rate": 0.4}]
# Hand-chosen test accuracies per (method, noise, seed): the tables' means are computed from these below.
ACC = {("ce", "sym", 0): 50.0, ("ce", "sym", 1): 52.0, ("ce", "asym", 0): 60.0, ("ce", "asym", 1): 64.0,
       ("gce", "sym", 0): 70.0, ("gce", "sym", 1): 71.0, ("gce", "asym", 0): 40.0, ("gce", "asym", 1): 42.0,
       ("dividemix", "sym", 0): 80.0, ("dividemix", "sym", 1): 81.5, ("dividemix", "asym", 0): 30.0,
       ("dividemix", "asym", 1): 33.0}
SELECTION = [{"epoch": 0, "phase": "net1", "size": 10, "precision": 80.0, "recall": 60.0},
             {"epoch": 1, "phase": "net2", "size": 12, "precision": 90.0, "recall": 45.0}]
ENV = {"python": "3.11", "git_commit": "abc123", "versions": {"torch": "2.14.1", "nlbench": "0.1.0"}, "cuda": None}


@pytest.fixture
def finished(tmp_path, write_grid):
    """A grid file and a results folder holding a record of every cell but one (plus a stale record)."""
    grid = write_grid("api", noise=NOISE, methods=METHODS, seeds=(0, 1))
    results = tmp_path / "runs"
    cells = expand(load_grid(grid))
    for spec in cells:
        acc = ACC[(spec.method, spec.noise, spec.seed)]
        fields = {"test_acc_best": acc, "test_acc_last": acc - 1, "env": ENV}
        if spec.method == "dividemix":
            fields["selection"] = SELECTION
        if (spec.method, spec.noise, spec.seed) == ("ce", "asym", 1):
            fields["config_hash"] = "stale"  # a record of another config of this cell: not a result of the grid
        record = record_of(spec, **fields)
        write_record(record_path(results, spec), record)
    return grid, results, cells


def test_results_is_one_tidy_row_per_current_record(finished) -> None:
    grid, results, cells = finished
    frame = nlbench.results(grid, results)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(cells) - 1  # the stale record is not a result of this grid
    assert frame["cell_id"].tolist() == [c.cell_id for c in cells if (c.method, c.noise, c.seed) != ("ce", "asym", 1)]
    assert frame["cell_id"].is_unique
    for row in frame.itertuples():
        assert row.test_acc_best == ACC[(row.method, row.noise, row.seed)]
        assert row.test_acc_last == row.test_acc_best - 1
    row = frame.set_index("cell_id").loc["digits__efficientnet_lite0__sym0.6__lp__dividemix__seed1"]
    assert (row["dataset"], row["backbone"], row["noise"], row["rate"], row["mode"], row["seed"]) == (
        "digits", "efficientnet_lite0", "sym", 0.6, "lp", 1)
    # The last selected set (net2's): F1 = 2·90·45 / (90 + 45) = 60.
    assert (row["selection_size"], row["selection_precision"], row["selection_recall"]) == (12, 90.0, 45.0)
    assert row["selection_f1"] == pytest.approx(60.0)
    assert (row["val_acc_best"], row["best_epoch"], row["realized_rate"], row["wall_s"]) == (58.0, 1, 0.54, 1.5)
    assert (row["backbone_forward_images"], row["version.torch"], row["git_commit"]) == (100, "2.14.1", "abc123")
    assert row["train.input_size"] == 16 and row["train.lp_epochs"] == 2
    gce = frame[frame["method"] == "gce"]
    assert (gce["params.q"] == 0.7).all() and frame[frame["method"] == "ce"]["params.q"].isna().all()
    assert frame[frame["method"] == "ce"]["selection_f1"].isna().all()
    # pandas answers a researcher's question straight from the frame: mean accuracy per method under sym noise.
    means = frame[frame["noise"] == "sym"].groupby("method")["test_acc_best"].mean()
    assert means.to_dict() == {"ce": 51.0, "dividemix": 80.75, "gce": 70.5}


def test_history_is_long_form(finished) -> None:
    grid, results, _ = finished
    curves = nlbench.history(grid, results)
    assert list(curves.columns) == ["grid", "cell_id", "dataset", "backbone", "noise", "rate", "method_key", "mode",
                                    "seed", "phase", "epoch", "metric", "value"]
    one = curves[curves["cell_id"] == "digits__efficientnet_lite0__sym0.6__lp__ce__seed0"]
    # record_of's history: epochs 0 and 1 with train_loss, val_acc and test_acc each.
    assert sorted(zip(one["epoch"], one["metric"], one["value"], strict=True)) == [
        (0, "test_acc", 52.0), (0, "train_loss", 2.0), (0, "val_acc", 50.0),
        (1, "test_acc", 61.25), (1, "train_loss", 1.5), (1, "val_acc", 58.0)]
    assert one["phase"].isna().all()
    dmix = curves[(curves["cell_id"] == "digits__efficientnet_lite0__asym0.4__lp__dividemix__seed0")
                  & curves["metric"].str.startswith("selection_")]
    table = dmix.pivot_table(index=["phase", "epoch"], columns="metric", values="value")
    assert table.loc[("net1", 0)].to_dict() == {"selection_precision": 80.0, "selection_recall": 60.0,
                                                "selection_size": 10.0}
    assert table.loc[("net2", 1), "selection_recall"] == 45.0
    # A curve per cell: the mean validation accuracy per epoch over the 11 records.
    val = curves[curves["metric"] == "val_acc"].groupby("epoch")["value"].mean()
    assert val.to_dict() == {0: 50.0, 1: 58.0}


@pytest.mark.parametrize(("fmt", "metric"), [("markdown", "test_acc_best"), ("csv", "selection_f1"),
                                             ("latex", "time"), ("markdown", "backbone_forward_images")])
def test_leaderboard_of_the_frame_is_the_table_command(finished, fmt: str, metric: str) -> None:
    grid, results, _ = finished
    code, out, err = cli("table", "--grid", grid, "--results", str(results), "--format", fmt, "--metric", metric)
    assert code == 0, err
    assert out == nlbench.leaderboard(nlbench.results(grid, results), fmt=fmt, metric=metric) + "\n"


def test_leaderboard_of_a_filtered_frame(finished) -> None:
    grid, results, _ = finished
    frame = nlbench.results(grid, results)
    sym = frame[(frame["noise"] == "sym") & (frame["method"] != "ce")]
    text = nlbench.leaderboard(sym, fmt="csv")
    table = pd.read_csv(io.StringIO(text), index_col=0)
    assert list(table.index) == ["LP GCE", "LP DMix"]
    assert list(table.columns) == ["efficientnet_lite0 / sym 0.6"]
    # mean ± std over the two seeds, as the table prints them
    assert table.loc["LP GCE", "efficientnet_lite0 / sym 0.6"] == "70.50±0.71"
    assert table.loc["LP DMix", "efficientnet_lite0 / sym 0.6"] == "80.75±1.06"
    caption = nlbench.leaderboard(sym).splitlines()[0]
    assert caption.startswith("api: test accuracy") and caption.endswith(
        "; 4 cells, 2 seed(s); ± = std over training seeds, one noise draw per setting (noise_seed 0)")
    with pytest.raises(ConfigError, match="no finished records"):
        nlbench.leaderboard(frame[frame["noise"] == "inst"])
    with pytest.raises(ConfigError, match="lacks column"):
        nlbench.leaderboard(frame.drop(columns=["method_key"]))
    with pytest.raises(ConfigError, match="unknown metric 'acc'; expected one of: test_acc_best"):
        nlbench.leaderboard(frame, metric="acc")


def test_import_nlbench_is_light_and_run_is_both_package_and_function() -> None:
    code = ("import sys, nlbench\n"
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, 'heavy import'\n"
            "assert callable(nlbench.run) and callable(nlbench.results)\n"
            "import nlbench.run.records\n"
            "assert callable(nlbench.run) and nlbench.run.records.SCHEMA_VERSION >= 2\n"
            "from nlbench.run import grids\n"
            "assert nlbench.load_grid('quickstart').name == 'quickstart'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


def test_load_grid_with_overrides(write_grid) -> None:
    grid = nlbench.load_grid(write_grid("ov", methods=METHODS), ["train.lp_epochs=7", "methods.gce.q=0.5"])
    gce = [c for c in expand(grid) if c.method == "gce"][0]
    assert gce.train["lp_epochs"] == 7 and gce.method_params["q"] == 0.5
    with pytest.raises(ConfigError, match="overrides apply to a grid as it is loaded"):
        nlbench.results(grid, overrides=["train.lp_epochs=3"])


@pytest.mark.slow
def test_run_returns_the_results_frame(tmp_path, write_grid) -> None:
    grid = write_grid("api_run", train={"lp_epochs": 1})
    lines: list[str] = []
    frame = nlbench.run(grid, tmp_path / "runs", log=lines.append)
    assert len(frame) == 1 and frame.loc[0, "method"] == "ce" and frame.loc[0, "mode"] == "lp"
    on_disk = nlbench.results(grid, tmp_path / "runs")
    pd.testing.assert_frame_equal(frame, on_disk)
    assert 0.0 <= frame.loc[0, "test_acc_best"] <= 100.0
    again: list[str] = []
    pd.testing.assert_frame_equal(nlbench.run(grid, tmp_path / "runs", log=again.append), on_disk)
    assert any("nothing to run" in line for line in again)
