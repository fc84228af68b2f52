"""SIGINT and SIGTERM end a run with one line saying what was interrupted (exit 130 / 143), keeping every
finished record and no temporary file; a full disk (a real, tiny tmpfs) names itself in one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _subproc import nlbench_cli, wait_ok

from nlbench.atomic import atomic_save_npy
from nlbench.engine.checkpoint import save_checkpoint
from nlbench.run.records import read_record

GRID = """
description = "signal test"
datasets = ["digits"]
backbones = ["tiny_test_cnn"]
seeds = [0]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "ce", mode = "lp" }, { method = "gce", mode = "lp" }, { method = "elr", mode = "fft" }]
[train]
input_size = 8
lp_epochs = 3
fft_epochs = 4
fft_batch_size = 128
eval_batch_size = 512
"""
FFT = "digits__tiny_test_cnn__sym0.4__fft__elr__seed0"
LP = ["digits__tiny_test_cnn__sym0.4__lp__ce__seed0", "digits__tiny_test_cnn__sym0.4__lp__gce__seed0"]


def _leftovers(*roots: Path) -> list[str]:
    return [str(p) for root in roots for p in root.rglob("*") if p.name.endswith((".tmp", ".lock"))]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_cell_gives_one_line_and_keeps_finished_records(tmp_path, sig, code):
    grid = tmp_path / "sigtest.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    args = ["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)]
    records = results / "sigtest" / "records"
    # A slow sweep (every training step sleeps 0.1 s), signalled as Ctrl-C or `kill` would (the whole process
    # group) once the FFT cell has checkpointed an epoch: the two LP cells are finished by then.
    proc = nlbench_cli(args, sleep=0.1, stderr=subprocess.PIPE, new_session=True)
    deadline = time.time() + 180
    while not list((results / "sigtest" / "checkpoints").glob("*/fine_tune-0.pt")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the FFT cell never checkpointed"
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (out, err)
    assert "Traceback" not in out + err
    assert err.splitlines() == [
        f"nlbench: interrupted by {sig.name} while running cell {FFT} (a rerun skips the 2 finished record(s) in "
        f"{records}; it resumes from its last checkpoint)"]
    assert sorted(p.stem for p in records.glob("*.json")) == LP
    assert all(read_record(records / f"{cell}.json") is not None for cell in LP)
    assert _leftovers(results, cache) == []
    # The rerun skips the finished cells and resumes the interrupted one.
    second = wait_ok(nlbench_cli(args))
    assert "1 of 3 cells to run (2 done)" in second and "resumed from" in second
    assert read_record(records / f"{FFT}.json") is not None


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 KiB filesystem, to fill up (needs root or CAP_SYS_ADMIN; skipped elsewhere)."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("writer", ["checkpoint", "npy"])
def test_a_full_disk_raises_enospc_naming_the_file(tiny_tmpfs, writer):
    target = tiny_tmpfs / ("fine_tune-0.pt" if writer == "checkpoint" else "train.npy")
    with pytest.raises(OSError) as info:
        if writer == "checkpoint":  # torch.save reports this as "unexpected pos"
            save_checkpoint(target, {"w": torch.zeros(100_000)})
        else:  # np.save as "400000 requested and 65536 written"
            atomic_save_npy(target, np.zeros(100_000, np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tiny_tmpfs.iterdir()) == []  # the temporary file is gone: the space is free again


@pytest.mark.slow
def test_a_run_on_a_full_disk_names_it_in_one_line(tmp_path, tiny_tmpfs):
    grid = tmp_path / "sigtest.toml"
    grid.write_text(GRID)
    # The cache on 64 KiB: the noisy labels (12 KiB) fit, the training features (1,257 x 16 floats) do not.
    proc = nlbench_cli(["run", "--grid", str(grid), "--results", str(tmp_path / "runs"), "--cache",
                        str(tiny_tmpfs)], stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in out + err
    (line,) = err.splitlines()
    assert line.startswith("nlbench: error: no space left on device writing ") and "/features/" in line
    assert line.endswith(".npy; finished records are kept: free space and rerun to continue")
    assert _leftovers(tmp_path / "runs", tiny_tmpfs) == []
