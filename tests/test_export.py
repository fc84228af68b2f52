"""``nlbench export``: records into a real MLflow store (SQLite), read back with MLflow's own client, and into
TensorBoard event files, read back with TensorBoard's event reader; a re-export updates and never duplicates."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from _gridfile import assert_one_error_line, cli
from _records import record_of

from nlbench.run.grids import expand, load_grid
from nlbench.run.records import read_record, record_path, write_record

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="the mlflow extra (pip install 'nlbench[mlflow]')")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="the tensorboard extra (pip install 'nlbench[tensorboard]')")

METHODS = [{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp", "params": {"q": 0.7}},
           {"method": "dividemix", "mode": "lp"}]
SELECTION = [{"epoch": 0, "phase": "net1", "size": 10, "precision": 80.0, "recall": 60.0},
             {"epoch": 1, "phase": "net2", "size": 12, "precision": 90.0, "recall": 45.0}]
DMIX = "digits__efficientnet_lite0__sym0.6__lp__dividemix__seed0"
GCE = "digits__efficientnet_lite0__sym0.6__lp__gce__seed0"


@pytest.fixture
def finished(tmp_path, write_grid):
    """A grid file (3 LP cells) and a results folder with a record of each, hand-chosen numbers."""
    grid = write_grid("exp", methods=METHODS)
    results = tmp_path / "runs"
    cells = expand(load_grid(grid))
    for k, spec in enumerate(cells):
        extra = {"selection": SELECTION} if spec.method == "dividemix" else {}
        write_record(record_path(results, spec), record_of(spec, test_acc_best=70.0 + k, **extra))
    return grid, results, {c.cell_id: c for c in cells}


def _export(grid: str, results: Path, *target: str) -> str:
    code, out, err = cli("export", "--grid", grid, "--results", str(results), "--to", *target)
    assert code == 0, err
    return out


def test_mlflow_one_run_per_record_read_back_with_mlflows_client(finished, tmp_path) -> None:
    grid, results, cells = finished
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'store.db'}"
    (tmp_path / "mlflow").mkdir()
    out = _export(grid, results, "mlflow", "--tracking-uri", uri)
    assert "mlflow: 3 run(s) created, 0 replaced, 0 unchanged" in out
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp")  # the grid's name
    runs = {r.data.tags["cell_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == sorted(cells)
    run = runs[DMIX]
    spec = cells[DMIX]
    assert run.info.run_name == DMIX and run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["dataset"], tags["backbone"], tags["noise"], tags["rate"], tags["method"], tags["mode"],
            tags["seed"], tags["config_hash"]) == ("digits", "efficientnet_lite0", "sym", "0.6", "dividemix", "lp",
                                                   "0", spec.config_hash)
    assert run.data.params["train.lp_epochs"] == "2" and run.data.params["train.input_size"] == "16"
    assert runs[GCE].data.params["method_params.q"] == "0.7"
    assert run.data.metrics["test_acc_best"] == 72.0 and run.data.metrics["selection_f1"] == pytest.approx(60.0)
    history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in history] == [(0, 50.0), (1, 58.0)]
    recall = client.get_metric_history(run.info.run_id, "selection_recall/net2")
    assert [(m.step, m.value) for m in recall] == [(1, 45.0)]
    # The record itself, as an artifact, equals the file on disk.
    artifact = Path(client.download_artifacts(run.info.run_id, "record.json", str(tmp_path / "download")))
    assert json.loads(artifact.read_text()) == read_record(record_path(results, spec)).to_dict()

    # Re-export: nothing changes, no run is added.
    out = _export(grid, results, "mlflow", "--tracking-uri", uri)
    assert "mlflow: 0 run(s) created, 0 replaced, 3 unchanged" in out
    again = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_id for r in again) == sorted(r.info.run_id for r in runs.values())

    # The GCE cell ran again (same config, another result): its run is replaced, not duplicated or mixed.
    gce = cells[GCE]
    old = read_record(record_path(results, gce))
    write_record(record_path(results, gce), replace(old, test_acc_best=99.0,
                                                    history=[{"epoch": 0, "train_loss": 1.0, "val_acc": 77.0}]))
    out = _export(grid, results, "mlflow", "--tracking-uri", uri)
    assert "mlflow: 0 run(s) created, 1 replaced, 2 unchanged" in out
    active = client.search_runs([experiment.experiment_id], filter_string=f"tags.config_hash = '{gce.config_hash}'")
    assert len(active) == 1 and active[0].data.metrics["test_acc_best"] == 99.0
    assert [(m.step, m.value) for m in client.get_metric_history(active[0].info.run_id, "val_acc")] == [(0, 77.0)]
    assert len(client.search_runs([experiment.experiment_id])) == 3


def _scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    accumulator = event_accumulator.EventAccumulator(str(folder))
    accumulator.Reload()
    return [(e.step, pytest.approx(e.value)) for e in accumulator.Scalars(tag)]


def test_tensorboard_event_files_read_back_with_its_reader(finished, tmp_path) -> None:
    from tensorboard.util import tensor_util

    grid, results, cells = finished
    board = tmp_path / "tb"
    assert "tensorboard: 3 run(s) created, 0 replaced, 0 unchanged" in _export(grid, results, "tensorboard",
                                                                              str(board))
    assert sorted(p.name for p in (board / "exp").iterdir()) == sorted(cells)
    folder = board / "exp" / DMIX
    assert _scalars(folder, "val_acc") == [(0, 50.0), (1, 58.0)]
    assert _scalars(folder, "train_loss") == [(0, 2.0), (1, 1.5)]
    assert _scalars(folder, "selection_precision/net1") == [(0, 80.0)]
    assert _scalars(folder, "summary/test_acc_best") == [(0, 72.0)]
    accumulator = event_accumulator.EventAccumulator(str(folder))
    accumulator.Reload()
    text = tensor_util.make_ndarray(accumulator.Tensors("record/text_summary")[0].tensor_proto).item().decode()
    assert json.loads(text.strip("`\n")) == read_record(record_path(results, cells[DMIX])).to_dict()

    files = {p.name for p in folder.iterdir()}
    assert "0 run(s) created, 0 replaced, 3 unchanged" in _export(grid, results, "tensorboard", str(board))
    assert {p.name for p in folder.iterdir()} == files  # no second set of event files

    gce = cells[GCE]
    write_record(record_path(results, gce), replace(read_record(record_path(results, gce)),
                                                    history=[{"epoch": 0, "train_loss": 1.0, "val_acc": 77.0}]))
    assert "0 run(s) created, 1 replaced, 2 unchanged" in _export(grid, results, "tensorboard", str(board))
    assert _scalars(board / "exp" / GCE, "val_acc") == [(0, 77.0)]
    assert not [p for p in (board / "exp").iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize(("module", "target", "message"), [
    ("mlflow", ["mlflow"], "pip install 'nlbench[mlflow]'"),
    ("tensorboard", ["tensorboard", "TB"], "pip install 'nlbench[tensorboard]'"),
])
def test_a_missing_extra_is_one_line(finished, tmp_path, monkeypatch, module: str, target: list[str],
                                     message: str) -> None:
    grid, results, _ = finished
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import mlflow → ImportError, as when it is not installed
    target = [str(tmp_path / t) if t == "TB" else t for t in target]
    code, _, err = cli("export", "--grid", grid, "--results", str(results), "--to", *target)
    assert_one_error_line(code, err, message)
    assert not (tmp_path / "TB").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["--to", "wandb"], "--to 'wandb'; expected one of: mlflow, tensorboard DIR"),
    (["--to", "tensorboard"], "--to tensorboard needs one folder"),
    (["--to", "mlflow", "somewhere"], "--to mlflow takes no folder"),
    (["--to", "tensorboard", "X", "--tracking-uri", "sqlite:///x.db"], "--tracking-uri and --experiment are MLflow's"),
])
def test_bad_target_is_one_line(finished, args: list[str], fragment: str) -> None:
    grid, results, _ = finished
    code, _, err = cli("export", "--grid", grid, "--results", str(results), *args)
    assert_one_error_line(code, err, fragment)


def test_nothing_to_export_is_one_line(write_grid, tmp_path) -> None:
    code, _, err = cli("export", "--grid", write_grid("empty"), "--results", str(tmp_path), "--to", "mlflow")
    assert_one_error_line(code, err, "grid 'empty' has no finished records")
