"""``nlbench run --workers N`` / ``--devices``: worker processes share a grid's cells through the cell claims;
each cell runs once, the records equal a serial run's, one table at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _gridfile import VALID, assert_one_error_line, cli, tree, write_toml

from nlbench.errors import ConfigError
from nlbench.run.grids import expand, load_grid
from nlbench.run.workers import parse_devices, worker_devices

# Four LP cells sharing one feature cache (one job: one worker fills it) and two FFT cells (a job each), so
# both workers have work; threads pinned, so a worker's results are the serial run's to the last bit.
GRID = {**VALID, "noise": [{"model": "sym", "rate": 0.6}, {"model": "asym", "rate": 0.4}],
        "methods": [{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}, {"method": "ce", "mode": "fft"}],
        "train": {"input_size": 16, "lp_epochs": 2, "fft_epochs": 1, "fft_batch_size": 64, "eval_batch_size": 512,
                  "threads": 1}}


def test_devices_are_gpu_indices() -> None:
    assert parse_devices("0,1, 3") == ["0", "1", "3"]
    for bad in ("", "0,,1", "cuda:0", "a,b"):
        with pytest.raises(ConfigError, match="expected GPU indices separated by commas"):
            parse_devices(bad)
    with pytest.raises(ConfigError, match="repeats a device"):
        parse_devices("1,1")
    # one worker per given device; more workers than devices take them in turn
    assert worker_devices(None, ["2", "5"]) == ["2", "5"]
    assert worker_devices(3, ["2", "5"]) == ["2", "5", "2"]
    with pytest.raises(ConfigError, match="expected an integer ≥ 1"):
        worker_devices(0, None)


@pytest.mark.parametrize(("args", "fragment"), [
    (["--workers", "0"], "argument --workers: 0 is not ≥ 1"),
    (["--devices", "0;1"], "--devices '0;1': expected GPU indices"),
    (["--workers", "2", "--executor", "debug"], "--workers/--devices start local worker processes; got --executor"),
])
def test_bad_worker_options_are_one_line(tmp_path, args: list[str], fragment: str) -> None:
    grid = str(write_toml(tmp_path / "g.toml", GRID))
    code, _, err = cli("run", "--grid", grid, "--results", str(tmp_path / "runs"), *args)
    assert_one_error_line(code, err, fragment)
    assert tree(tmp_path / "runs") == []


def test_dry_run_names_the_workers_devices(tmp_path) -> None:
    grid = str(write_toml(tmp_path / "g.toml", GRID))
    code, out, err = cli("run", "--grid", grid, "--results", str(tmp_path / "runs"), "--devices", "0,1", "--dry-run")
    assert code == 0, err
    assert "workers: GPU 0, GPU 1 (one process each" in out


def _records(results: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((results / "g" / "records").glob("*.json"))}


@pytest.mark.slow
def test_two_workers_run_each_cell_once_and_match_a_serial_run(tmp_path) -> None:
    grid = str(write_toml(tmp_path / "g.toml", GRID))
    cells = [c.cell_id for c in expand(load_grid(grid))]
    code, out, err = cli("run", "--grid", grid, "--results", str(tmp_path / "parallel"), "--cache",
                         str(tmp_path / "cache-parallel"), "--workers", "2")
    assert code == 0, err
    assert "2 worker(s) (CPU, CPU) on 6 cell(s)" in out
    for cell in cells:  # each cell finished once: one summary line, one record
        assert sum(line.startswith(f"{cell}: test ") for line in out.splitlines()) == 1, out
    assert "6/6 cells done" in out
    assert out.count("g: test accuracy (%) at the best validation epoch") == 1  # one table, at the end
    assert list((tmp_path / "parallel" / "g" / "claims").glob("*.lock")) == []  # every claim released
    # The LP cells share one feature-cache job: one worker filled the cache, the rest hit it.
    fills = [line for line in out.splitlines() if "train/view0: cache fill" in line]
    assert len(fills) == 1, out

    code, _, err = cli("run", "--grid", grid, "--results", str(tmp_path / "serial"), "--cache",
                       str(tmp_path / "cache-serial"))
    assert code == 0, err
    parallel, serial = _records(tmp_path / "parallel"), _records(tmp_path / "serial")
    assert sorted(parallel) == sorted(serial) == sorted(cells)
    for cell in cells:
        # Everything but the cost (times, memory, cache hits) is the serial run's: accuracies, curves,
        # labels, selections, config hash.
        p, s = ({k: v for k, v in r[cell].items() if k != "cost"} for r in (parallel, serial))
        assert p == s, cell
    # A second run with workers finds nothing to do.
    code, out, err = cli("run", "--grid", grid, "--results", str(tmp_path / "parallel"), "--cache",
                         str(tmp_path / "cache-parallel"), "--workers", "2")
    assert code == 0, err
    assert "all 6 cells are done; nothing to run" in out


def test_a_failing_cell_does_not_stop_the_others(tmp_path) -> None:
    from dataclasses import replace

    from nlbench.run.executors import CellsFailed
    from nlbench.run.workers import run_with_workers

    spec = expand(load_grid(str(write_toml(tmp_path / "g.toml", GRID))))[0]
    # Cells of a dataset that is not registered: each raises in the worker, after the grid checks a run makes.
    broken = [replace(spec, dataset="no_such_dataset", seed=seed) for seed in (0, 1)]
    finished: list[tuple[str, object]] = []
    with pytest.raises(CellsFailed) as failed:
        run_with_workers("g", broken, results=tmp_path / "runs", cache=tmp_path / "cache", workers=1,
                         on_finished=lambda s, record: finished.append((s.cell_id, record)), log=lambda _: None)
    text = str(failed.value)
    assert text.startswith("2 cell(s) or worker(s) failed")
    assert all(f"{c.cell_id} (worker 0):\nTraceback" in text and "no_such_dataset" in text for c in broken)
    assert finished == [(c.cell_id, None) for c in broken]
    assert list((tmp_path / "runs" / "g" / "claims").glob("*.lock")) == []
