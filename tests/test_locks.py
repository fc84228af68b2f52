"""Cell claims: a cell is run only under its claim; live claims are respected, stale ones taken over, and two
real processes sharing a grid do each cell exactly once."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest
from _subproc import nlbench_cli

from nlbench.run.locks import CellClaim, claim_cell


def _claim(folder, **kw) -> CellClaim:
    return CellClaim(folder, "cell-a", log=kw.pop("log", lambda _m: None), **kw)


def test_a_live_claim_is_respected_and_freed_on_release(tmp_path):
    first, second = _claim(tmp_path), _claim(tmp_path)
    assert first.acquire() is None
    owner = json.loads((tmp_path / "cell-a.lock").read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    busy = second.acquire()
    assert busy is not None and f"pid {os.getpid()}" in busy and "heartbeat" in busy
    first.release()
    assert not (tmp_path / "cell-a.lock").exists()
    assert second.acquire() is None
    second.release()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(folder, **owner) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"token": "someone-else", "host": socket.gethostname(), "pid": os.getppid(), "pid_start": None,
            "slurm_job": None, "user": "x", "cell_id": "cell-a", "since": time.time(), "heartbeat": time.time()}
    (folder / "cell-a.lock").write_text(json.dumps({**base, **owner}))


def test_claim_of_an_ended_process_is_taken_over_at_once(tmp_path):
    _plant(tmp_path, pid=_dead_pid())  # a kill -9 left it; its heartbeat is fresh
    logs = []
    claim = _claim(tmp_path, log=logs.append)
    assert claim.acquire() is None
    assert any("has ended" in line for line in logs), logs
    assert json.loads((tmp_path / "cell-a.lock").read_text())["token"] == claim.token
    claim.release()


def test_claim_of_a_live_process_on_this_host_is_respected(tmp_path):
    _plant(tmp_path, pid=os.getppid())
    assert "pid" in _claim(tmp_path).acquire()


def test_claim_of_another_host_is_taken_over_only_when_its_heartbeat_is_stale(tmp_path):
    _plant(tmp_path, host="node-elsewhere", pid=1, heartbeat=time.time() - 100)
    assert _claim(tmp_path, stale_after_s=300).acquire() is not None  # 100 s old: alive
    _plant(tmp_path, host="node-elsewhere", pid=1, heartbeat=time.time() - 400)
    logs = []
    claim = _claim(tmp_path, stale_after_s=300, log=logs.append)
    assert claim.acquire() is None
    assert any("heartbeat is 400 s old" in line for line in logs), logs
    claim.release()


def test_claim_left_by_an_earlier_run_of_the_same_slurm_job_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    _plant(tmp_path, host="node-elsewhere", pid=1, slurm_job="77_3")  # preempted, requeued
    claim = _claim(tmp_path)
    assert claim.acquire() is None
    claim.release()
    _plant(tmp_path, host="node-elsewhere", pid=1, slurm_job="77_4")  # another task of the array: alive
    assert _claim(tmp_path).acquire() is not None


def test_heartbeat_keeps_a_long_claim_alive(tmp_path):
    holder = _claim(tmp_path, heartbeat_s=0.05)
    assert holder.acquire() is None
    first_beat = json.loads((tmp_path / "cell-a.lock").read_text())["heartbeat"]
    time.sleep(0.5)
    beat = json.loads((tmp_path / "cell-a.lock").read_text())["heartbeat"]
    assert beat > first_beat
    # Seen from another host's clock rules (stale after 0.3 s), the claim is still live thanks to the beats.
    owner = json.loads((tmp_path / "cell-a.lock").read_text())
    assert _claim(tmp_path, stale_after_s=0.3).stale_reason({**owner, "host": "node-elsewhere"}) is None
    holder.release()
    assert not (tmp_path / "cell-a.lock").exists()


def test_a_claim_taken_over_from_a_stalled_owner_is_not_removed_by_it(tmp_path):
    stalled = _claim(tmp_path, heartbeat_s=0.05)
    assert stalled.acquire() is None
    _plant(tmp_path, token="the-new-owner")  # what a take-over by another process writes
    time.sleep(0.3)
    assert stalled.lost
    stalled.release()
    assert json.loads((tmp_path / "cell-a.lock").read_text())["token"] == "the-new-owner"


def test_claim_is_released_when_the_cell_raises(tmp_path):
    with pytest.raises(KeyboardInterrupt), claim_cell(tmp_path, "g", "cell-a") as busy:
        assert busy is None and (tmp_path / "g" / "claims" / "cell-a.lock").exists()
        raise KeyboardInterrupt
    assert not (tmp_path / "g" / "claims" / "cell-a.lock").exists()


GRID = """
description = "two runs at once"
datasets = ["digits"]
backbones = ["tiny_test_cnn"]
seeds = [0, 1]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "ce", mode = "lp" }, { method = "ce", mode = "fft" }, { method = "gce", mode = "fft" }]
[train]
input_size = 8
lp_epochs = 2
fft_epochs = 1
fft_batch_size = 128
eval_batch_size = 512
"""


@pytest.mark.slow
def test_two_processes_on_one_grid_do_each_cell_once(tmp_path):
    grid = tmp_path / "shared.toml"
    grid.write_text(GRID)
    args = ["run", "--grid", str(grid), "--results", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache")]
    procs = [nlbench_cli(args, sleep=0.2) for _ in range(2)]
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        outs.append(out)
    ran = [set(re.findall(r"^(digits__\S+): test ", out, flags=re.M)) for out in outs]
    cells = {p.stem for p in (tmp_path / "runs" / "shared" / "records").glob("*.json")}
    assert len(cells) == 6
    assert ran[0] | ran[1] == cells
    assert not ran[0] & ran[1], f"cells run twice: {ran[0] & ran[1]}"
    assert ran[0] and ran[1], "one process did everything: the runs did not overlap"
    for out, mine in zip(outs, ran, strict=True):
        todo = int(re.search(r"^grid shared: (\d+) of 6 cells to run", out, flags=re.M).group(1))
        assert f"{todo - len(mine)} cell(s) left to other processes running this grid" in out
    assert not list((tmp_path / "runs" / "shared" / "claims").glob("*.lock"))


def test_a_foreign_file_in_place_of_a_claim_is_taken_over(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "cell-a.lock").write_text("not json")
    logs = []
    claim = _claim(tmp_path, log=logs.append)
    assert claim.acquire() is None
    assert logs == ["cell-a: taking over the claim of an unreadable claim file: not a claim file"]
    claim.release()
