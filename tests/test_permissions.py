"""Results other users can read: files get the umask's mode (not mkstemp's 0600); a record that cannot be
read is an error, never "not done"; an unwritable results or cache folder is refused before any work."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _subproc import nlbench_cli, wait_ok

from nlbench.atomic import atomic_write_bytes
from nlbench.datasets import load_dataset
from nlbench.engine.checkpoint import save_checkpoint
from nlbench.engine.features import FeatureCache, FeatureKey
from nlbench.run.labels import draw_noise

GRID = """
description = "permissions test"
datasets = ["digits"]
backbones = ["tiny_test_cnn"]
seeds = [0]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "ce", mode = "lp" }, { method = "gce", mode = "lp" }]
[train]
input_size = 8
lp_epochs = 2
eval_batch_size = 512
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)],
                         ids=["umask022", "umask027", "umask077"])
def test_every_kind_of_file_gets_the_umask_mode(tmp_path, umask, mask, expected):
    umask(mask)
    atomic_write_bytes(tmp_path / "record.json", b"{}")
    FeatureCache(tmp_path).store(FeatureKey("b", "random", {"dataset": "d"}, "train", 0, {}),
                                 np.ones((3, 2), np.float32), seconds=0.0)
    draw_noise(load_dataset("digits"), "sym", 0.2, 0, {}, cache=tmp_path)
    save_checkpoint(tmp_path / "ckpt" / "fine_tune-0.pt", {"w": torch.ones(3)})
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".npy", ".npz", ".pt", ".sha256"} <= kinds
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in files if _mode(p) != expected} == {}


@pytest.mark.slow
def test_a_run_under_umask_022_leaves_files_others_can_read(tmp_path):
    grid = tmp_path / "perm.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    wait_ok(nlbench_cli(["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)], umask=0o022))
    files = [p for root in (results, cache) for p in root.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".json" and p.parent.name == "records"]) == 2
    assert len([p for p in files if p.suffix == ".npy"]) == 3 and any(p.suffix == ".npz" for p in files)
    assert {str(p): oct(_mode(p)) for p in files if _mode(p) != 0o644} == {}


def _finished_grid(tmp_path: Path) -> tuple[list[str], Path]:
    grid = tmp_path / "perm.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    wait_ok(nlbench_cli(["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)]))
    return ["--grid", str(grid), "--results", str(results)], cache


@pytest.mark.slow
def test_an_unreadable_record_is_an_error_not_a_pending_cell(tmp_path):
    grid_args, cache = _finished_grid(tmp_path)
    records = sorted((tmp_path / "runs" / "perm" / "records").glob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in records]
    records[0].chmod(0o000)
    try:
        for command in (["table"], ["run", "--cache", str(cache)]):
            proc = nlbench_cli([command[0], *grid_args, *command[1:]], unprivileged=True)
            out, _ = proc.communicate(timeout=120)
            lines = out.strip().splitlines()
            assert proc.returncode == 2, (command, out)
            assert lines == [f"nlbench: error: cannot read record {records[0]} (Permission denied); fix its "
                             f"permissions or use another --results folder"], (command, out)
    finally:
        records[0].chmod(0o644)
    assert [p.stat().st_mtime_ns for p in records] == stamps  # nothing was run again


def _unwritable_run(tmp_path: Path, which: str) -> tuple[int, list[str]]:
    grid = tmp_path / "perm.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    results.mkdir()
    cache.mkdir()
    locked = results if which == "results" else cache
    locked.chmod(0o555)
    try:
        proc = nlbench_cli(["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)],
                           unprivileged=True, stderr=subprocess.PIPE)
        out, err = proc.communicate(timeout=120)
    finally:
        locked.chmod(0o755)
    assert not any(results.rglob("*")) and not any(cache.rglob("*")), "work was done before the check"
    return proc.returncode, err.strip().splitlines() + [line for line in out.splitlines() if "Traceback" in line]


@pytest.mark.parametrize("which, option", [("results", "--results"), ("cache", "--cache")])
def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, which, option):
    code, lines = _unwritable_run(tmp_path, which)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"nlbench: error: {which} folder "), lines
    assert "is not writable (Permission denied" in lines[0] and option in lines[0]

