"""The command line answers without torch: ``--help`` and a bad argument always, and ``table``, ``status`` and
``report`` once a grid's cells are remembered (``nlbench.run.grid_memo``). An invariant on the modules a
fresh process imports, not a timing (benchmarks/cli_latency.py measures the time).

The memo must never change an answer: the cells it gives are the expansion's, and anything the cells
depend on (the grid file, a file it names, nlbench's code) being changed makes the next command expand the
grid again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _records import record_of

from nlbench.run import grid_memo
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import record_path, write_record

HEAVY = ("torch", "timm", "torchvision", "pandas")
# The CLI in a fresh interpreter; at exit, stderr's last line lists the heavy modules it imported.
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: sys.stderr.write("\\nIMPORTED " + json.dumps([m for m in heavy if m in sys.modules]) + "\\n"))
{body}
"""
CLI = "from nlbench.cli import main\nsys.exit(main(sys.argv[1:]))"
# Prints the cells grid_memo gives for argv[1] (a grid) and whether they were remembered.
CELLS = """from nlbench.run.grid_memo import grid_cells
known = grid_cells(sys.argv[1])
print(json.dumps({"remembered": known.remembered, "methods": known.methods,
                  "cells": [[c.grid, c.cell_id, c.config_hash] for c in known.cells]}))"""


def fresh_python(body: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str, list[str]]:
    """Run ``body`` in a new interpreter (this test's NLBENCH_CACHE): exit code, stdout, stderr, and the
    heavy modules it imported."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, body=body), *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "CI": "1"})
    lines = done.stderr.rstrip("\n").splitlines()
    assert lines and lines[-1].startswith("IMPORTED "), done.stderr
    return done.returncode, done.stdout, "\n".join(lines[:-1]), json.loads(lines[-1].removeprefix("IMPORTED "))


def cli(*args: str, cwd: Path | None = None) -> tuple[int, str, str, list[str]]:
    return fresh_python(CLI, *args, cwd=cwd)


def remembered_cells(grid: str) -> tuple[dict, list[str]]:
    """What ``grid_memo.grid_cells(grid)`` gives in a fresh interpreter, and the heavy modules it imported."""
    code, out, err, imported = fresh_python(CELLS, grid)
    assert code == 0, err
    return json.loads(out), imported


@pytest.fixture
def results(write_grid, tmp_path):
    """A grid of three cells (LP and FFT) with a finished record for each."""
    grid = write_grid("speed", methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"},
                                        {"method": "ce", "mode": "fft"}])
    folder = tmp_path / "runs"
    for i, spec in enumerate(expand(load_grid(grid))):
        write_record(record_path(folder, spec), record_of(spec, test_acc_best=60.0 + i))
    return grid, folder


def test_help_and_bad_arguments_import_neither_torch_nor_pandas():
    code, out, _, imported = cli("--help")
    assert code == 0 and "table" in out and "status" in out
    assert imported == []
    code, _, err, imported = cli("table", "--format", "html")
    assert code == 2 and err.startswith("nlbench: error:") and "markdown" in err
    assert imported == []


def test_table_status_report_import_no_torch_once_the_grid_is_remembered(results, tmp_path):
    grid, folder = results
    code, first, _, _ = cli("table", "--grid", grid, "--results", str(folder))  # expands: may load torch
    assert code == 0 and "60.00" in first
    code, again, _, imported = cli("table", "--grid", grid, "--results", str(folder))
    assert code == 0 and again == first  # the same table, labels and order included
    assert "torch" not in imported and "timm" not in imported
    code, out, _, imported = cli("status", "--grid", grid, "--results", str(folder))
    assert code == 0 and out.count("done") >= 3
    assert "torch" not in imported and "timm" not in imported
    code, out, err, imported = cli("report", "--grid", grid, "--results", str(folder), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r" / "index.html").is_file() and "3 records" in out
    assert "torch" not in imported and "timm" not in imported


def test_remembered_cells_are_the_expanded_cells(write_grid):
    """The memo's ids and hashes are the expansion's, for the quickstart grid (FFT, LP, LP-FFT cells; a
    method with explicit params) and a user's grid file."""
    for grid in ("quickstart", write_grid("own", methods=[{"method": "ce", "mode": "fft"},
                                                          {"method": "gce", "mode": "lp", "params": {"q": 0.5}}])):
        expected = [[c.grid, c.cell_id, c.config_hash] for c in expand(load_grid(grid))]
        first, _ = remembered_cells(grid)
        assert first["remembered"] is False and first["cells"] == expected
        again, imported = remembered_cells(grid)
        assert again["remembered"] is True and again["cells"] == expected
        assert again["methods"] == first["methods"] and "torch" not in imported


def test_a_changed_grid_file_or_named_file_is_expanded_again(write_grid, tmp_path):
    weights = tmp_path / "lite0.safetensors"
    weights.write_bytes(b"first")
    grid = write_grid("named", backbones=[{"name": "efficientnet_lite0", "weights": str(weights)}])
    assert remembered_cells(grid)[0]["remembered"] is False
    assert remembered_cells(grid)[0]["remembered"] is True

    weights.write_bytes(b"second, longer")  # the weights' content enters the config hash
    after, _ = remembered_cells(grid)
    assert after["remembered"] is False
    assert after["cells"] == [[c.grid, c.cell_id, c.config_hash] for c in expand(load_grid(grid))]

    Path(grid).write_text(Path(grid).read_text().replace("rate = 0.6", "rate = 0.4"))
    edited, _ = remembered_cells(grid)
    assert edited["remembered"] is False and all("sym0.4" in cell_id for _, cell_id, _ in edited["cells"])


def test_a_damaged_or_foreign_memo_is_not_used(write_grid, monkeypatch):
    grid = write_grid("damaged")
    expected = [[c.grid, c.cell_id, c.config_hash] for c in expand(load_grid(grid))]
    remembered_cells(grid)
    (entry,) = grid_memo.memo_dir().glob("*.json")
    entry.write_text(entry.read_text()[:-20])
    again, _ = remembered_cells(grid)
    assert again["remembered"] is False and again["cells"] == expected
    # A process that imported torch (this one) expands: its registries may hold entries registered in-process.
    known = grid_memo.grid_cells(grid)
    assert known.remembered is False and [c.config_hash for c in known.cells] == [e[2] for e in expected]


def test_code_identity_follows_the_source_files(tmp_path):
    package = tmp_path / "pkg"
    (package / "methods").mkdir(parents=True)
    (package / "__pycache__").mkdir()
    (package / "__init__.py").write_text("")
    method = package / "methods" / "ce.py"
    method.write_text("DEFAULT = 1\n")
    base = grid_memo.code_identity(package)
    (package / "__pycache__" / "ce.cpython-311.pyc").write_bytes(b"compiled")
    (package / "notes.txt").write_text("not code")
    assert grid_memo.code_identity(package) == base
    method.write_text("DEFAULT = 22\n")
    changed = grid_memo.code_identity(package)
    assert changed != base
    (package / "methods" / "new.py").write_text("")
    assert grid_memo.code_identity(package) not in (base, changed)
