"""The command line: bad input gives one error line, exit code 2 and nothing written; reruns skip done cells."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nlbench.cli.main import main


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("grid_kwargs, message", [
    ({"methods": [{"method": "gcee", "mode": "lp"}]}, "unknown method 'gcee'; expected one of: "),
    ({"methods": [{"method": "turn", "mode": "fft"}]}, "method 'turn' does not support mode 'fft'; supported: lp-fft"),
    ({"noise": [{"model": "sym", "rate": 1.5}]}, "noise rate 1.5 of 'sym' is outside [0, 1]"),
    ({"noise": [{"model": "symm", "rate": 0.5}]}, "unknown noise model 'symm'; expected one of: "),
    ({"backbones": ["vit_b17"]}, "unknown backbone 'vit_b17'; expected one of: "),
    ({"datasets": ["cifar1000"]}, "unknown dataset 'cifar1000'; expected one of: "),
    ({"train": {"lp_epoch": 3}}, "unknown [train] field(s) lp_epoch"),
    ({"methods": [{"method": "gce", "mode": "lp", "params": {"qq": 0.5}}]}, "method 'gce' has no parameter(s) qq"),
    ({"methods": [{"method": "ce", "mode": "lp"}, {"method": "ce", "mode": "lp", "params": {}}]},
     "the cell digits__efficientnet_lite0__sym0.6__lp__ce__seed0 appears twice"),
    ({"methods": [{"method": "ce", "mode": "lp", "tag": "a b"}]}, "method tag 'a b' of 'ce'"),
    ({"methods": [{"method": "ce", "mode": "lp", "parms": {}}]}, "unknown field(s) parms in the methods entry of 'ce'"),
])
def test_bad_grid_is_one_error_line_exit_2_nothing_written(grid_kwargs, message, write_grid, tmp_path, capsys):
    grid = write_grid(**grid_kwargs)
    results = tmp_path / "runs"
    assert main(["run", "--grid", grid, "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nlbench: error: ")
    assert message in err
    assert not results.exists()


def test_unknown_grid_name_lists_registered_grids(tmp_path, capsys):
    assert main(["run", "--grid", "quickstrat", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown grid 'quickstrat'" in err and "quickstart" in err


def test_unreadable_grid_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("datasets = [digits\n")
    assert main(["table", "--grid", str(bad), "--results", str(tmp_path)]) == 2
    assert "cannot read grid file" in capsys.readouterr().err


def test_run_then_rerun_does_nothing_and_table(write_grid, tmp_path):
    grid = write_grid(methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}])
    first = run_cli("run", "--grid", grid, "--results", "runs", "--cache", "cache", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "2 of 2 cells to run" in first.stdout
    assert "| LP CE" in first.stdout and "| LP GCE" in first.stdout
    second = run_cli("run", "--grid", grid, "--results", "runs", "--cache", "cache", cwd=tmp_path)
    assert second.returncode == 0
    assert "all 2 cells are done; nothing to run" in second.stdout
    records = sorted((tmp_path / "runs" / "tiny" / "records").glob("*.json"))
    assert len(records) == 2
    dry = run_cli("run", "--grid", grid, "--results", "runs", "--cache", "cache", "--dry-run", cwd=tmp_path)
    assert "2 done, 0 to run" in dry.stdout and "train: cached" in dry.stdout
    latex = run_cli("table", "--grid", grid, "--results", "runs", "--format", "latex", cwd=tmp_path)
    assert latex.returncode == 0 and "\\toprule" in latex.stdout


def test_tagged_variants_of_one_method_are_separate_cells_and_rows(write_grid, tmp_path):
    grid = write_grid(methods=[{"method": "gce", "mode": "lp"},
                               {"method": "gce", "mode": "lp", "tag": "q0.3", "params": {"q": 0.3}}])
    run = run_cli("run", "--grid", grid, "--results", "runs", "--cache", "cache", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "runs" / "tiny" / "records").glob("*.json"))
    assert names == ["digits__efficientnet_lite0__sym0.6__lp__gce@q0.3__seed0.json",
                     "digits__efficientnet_lite0__sym0.6__lp__gce__seed0.json"]
    assert "| LP GCE " in run.stdout and "| LP GCE@q0.3 " in run.stdout
