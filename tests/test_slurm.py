"""Against a real SLURM (tests/slurm/start-cluster.sh): submit, status, resubmission of a cancelled job,
sbatch's own errors, and a preempted job that requeues itself and resumes from its checkpoint.

Skipped, with the reason, where no cluster answers. The cluster is found through $SLURM_CONF, else the
start script's default config /tmp/nlbench-slurm/slurm.conf ($NLBENCH_SLURM_DIR), else /etc/slurm/slurm.conf.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlbench.run.grids import expand, load_grid
from nlbench.run.status import cell_statuses, job_states, result_file_state, wait_for_cells

pytestmark = pytest.mark.slurm

QUICKSTART_FFT_CE = "digits__efficientnet_lite0__sym0.4__fft__ce__seed0"


def _find_cluster() -> tuple[dict[str, str] | None, str]:
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return None, "no SLURM client tools on PATH (apt-get install slurm-wlm munge; tests/slurm/start-cluster.sh)"
    candidates = [os.environ.get("SLURM_CONF"),
                  str(Path(os.environ.get("NLBENCH_SLURM_DIR", "/tmp/nlbench-slurm")) / "slurm.conf"),
                  "/etc/slurm/slurm.conf"]
    conf = next((c for c in candidates if c and Path(c).is_file()), None)
    if conf is None:
        return None, "no slurm.conf found (start one with tests/slurm/start-cluster.sh, or set SLURM_CONF)"
    env = {**os.environ, "SLURM_CONF": conf}
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return None, f"sinfo did not answer in 20 s (SLURM_CONF={conf})"
    states = set(out.stdout.split())
    if out.returncode != 0 or not states & {"idle", "mixed", "allocated", "completing"}:
        return None, f"no usable SLURM node (SLURM_CONF={conf}): {out.stdout.strip()} {out.stderr.strip()}"
    return env, ""


@pytest.fixture(scope="module")
def cluster() -> dict[str, str]:
    env, reason = _find_cluster()
    if env is None:
        pytest.skip(reason)
    return env


@pytest.fixture
def slurm_env(cluster: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The cluster's SLURM_CONF for this process too (status queries run in-process), no user config."""
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setenv("NLBENCH_SLURM_CONFIG", str(tmp_path / "no-user-config.toml"))
    return {**cluster, "NLBENCH_SLURM_CONFIG": str(tmp_path / "no-user-config.toml"), "CI": "1"}


def nlbench(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nlbench", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def state_of(results: Path, grid: str) -> dict[str, dict]:
    return json.loads((results / grid / "slurm" / "state.json").read_text())["cells"]


@pytest.mark.slow
def test_quickstart_slurm_runs_reports_skips_and_resubmits_a_cancelled_job(slurm_env, tmp_path: Path) -> None:
    results, cache = tmp_path / "runs", tmp_path / "cache"
    results.mkdir()
    common = ["--grid", "quickstart_slurm", "--results", str(results)]
    cells = expand(load_grid("quickstart_slurm"))

    # 1. Submit the 4 cells (3 jobs: one LP group, two FFT cells) and cancel one FFT job while it runs.
    # Each job first sleeps (a setup line of the batch script), so that the cancel reliably lands while the
    # job is running: a tiny cell can otherwise finish before scancel on an idle machine.
    first = nlbench(slurm_env, "run", *common, "--cache", str(cache), "--executor", "slurm",
                    "--slurm-setup", "sleep 20")
    assert first.returncode == 0, first.stderr
    assert "submitted 4 cell(s) as 3 job(s)" in first.stdout
    state = state_of(results, "quickstart_slurm")
    assert len(state) == 4 and len({e["job_id"] for e in state.values()}) == 3
    cancelled = state[QUICKSTART_FFT_CE]["job_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        squeue = subprocess.run(["squeue", "-h", "-j", cancelled, "-o", "%T"], env=slurm_env, capture_output=True,
                                text=True)
        if squeue.stdout.strip() == "RUNNING":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"job {cancelled} did not start within 120 s")
    time.sleep(1.0)  # let slurmstepd open the job's log before the cancel notice is written to it
    subprocess.run(["scancel", cancelled], env=slurm_env, check=True)
    statuses = wait_for_cells(cells, results, poll_s=1.0, max_poll_s=3.0, timeout_s=400, log=lambda m: None)
    assert {s.cell_id: s.status for s in statuses} == {c.cell_id: "failed" if c.cell_id == QUICKSTART_FFT_CE
                                                       else "done" for c in cells}

    # 2. status: the true state of the cancelled job, with its log's last lines; the same without sacct.
    report = nlbench(slurm_env, "status", *common)
    assert report.returncode == 0, report.stderr
    assert "4 cells — 3 done, 0 running, 0 queued, 1 failed, 0 pending" in report.stdout
    failed_line = next(line for line in report.stdout.splitlines() if QUICKSTART_FFT_CE in line)
    assert failed_line.split()[:2] == ["failed", cancelled] and "[CANCELLED]" in failed_line
    assert "CANCELLED AT" in report.stdout  # slurmstepd's notice in the job's log
    fallback = cell_statuses(cells, results, use_sacct=False)
    assert [(s.status, s.slurm_state) for s in fallback] == [(s.status, s.slurm_state) for s in statuses]
    folder = state[QUICKSTART_FFT_CE]["log_folder"]
    assert result_file_state(folder, cancelled) is None  # a cancelled job leaves no result
    done_job = state[cells[0].cell_id]["job_id"]
    assert result_file_state(folder, done_job) == "COMPLETED"
    assert job_states({done_job: folder}, use_sacct=False)[done_job].state == "COMPLETED"

    # 3. Run again (waiting): only the cancelled cell is submitted, and every cell ends done.
    second = nlbench(slurm_env, "run", *common, "--cache", str(cache), "--executor", "slurm", "--wait")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "submitted 1 cell(s) as 1 job(s)" in second.stdout and "3 done, 0 already queued or running" in second.stdout
    assert "4 cells — 4 done, 0 running, 0 queued, 0 failed, 0 pending" in second.stdout
    assert len(list((results / "quickstart_slurm" / "records").glob("*.json"))) == 4
    state = state_of(results, "quickstart_slurm")
    assert state[QUICKSTART_FFT_CE]["job_id"] != cancelled
    assert state[QUICKSTART_FFT_CE]["previous_jobs"] == [cancelled]

    # 4. status reports the 4 records with their jobs; a third run submits nothing.
    report = nlbench(slurm_env, "status", *common)
    assert "4 done" in report.stdout
    for c in cells:
        assert f"done     {state[c.cell_id]['job_id']}" in next(line for line in report.stdout.splitlines()
                                                                if c.cell_id in line)
    third = nlbench(slurm_env, "run", *common, "--cache", str(cache), "--executor", "slurm")
    assert third.returncode == 0 and "nothing to submit (4 done, 0 queued or running)" in third.stdout
    assert state_of(results, "quickstart_slurm") == state


def test_unknown_partition_surfaces_sbatch_error_and_records_nothing(slurm_env, tmp_path: Path) -> None:
    results = tmp_path / "runs"
    results.mkdir()
    out = nlbench(slurm_env, "run", "--grid", "quickstart_slurm", "--results", str(results), "--executor", "slurm",
                  "--slurm-partition", "no_such_partition")
    assert out.returncode == 2
    line = next(line for line in out.stderr.splitlines() if line.startswith("nlbench: error:"))
    assert "sbatch refused the submission" in line and "sbatch: error:" in line
    assert "invalid partition" in out.stderr.lower() and "no_such_partition" in out.stderr
    grid_dir = results / "quickstart_slurm"
    assert not (grid_dir / "records").exists() and not (grid_dir / "slurm" / "state.json").exists()
    assert [p for p in (grid_dir / "slurm" / "logs").rglob("*") if p.is_file()] == []


PREEMPT_GRID = """
description = "preemption test: one ELR fine-tuning (ELR keeps per-sample targets across epochs)"
datasets = ["digits"]
backbones = ["efficientnet_lite0"]
seeds = [0]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "elr", mode = "fft" }]
[train]
input_size = 16
fft_epochs = 5
fft_batch_size = 64
[slurm]
time_min = 15
cpus_per_task = 1
signal_delay_s = 60
"""


def _scontrol(env: dict[str, str], job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)


@pytest.mark.slow
def test_preempted_job_requeues_and_resumes_to_the_uninterrupted_record(slurm_env, tmp_path: Path) -> None:
    grid_file = tmp_path / "preempt.toml"
    grid_file.write_text(PREEMPT_GRID)
    cache = tmp_path / "cache"
    runs = {name: tmp_path / name for name in ("preempted", "reference")}
    for folder in runs.values():
        folder.mkdir()
        out = nlbench(slurm_env, "run", "--grid", str(grid_file), "--results", str(folder), "--cache", str(cache),
                      "--executor", "slurm")
        assert out.returncode == 0, out.stderr
    job = next(iter(state_of(runs["preempted"], "preempt").values()))["job_id"]

    # Once the first epoch is checkpointed, send what SLURM sends before preemption or the time limit.
    deadline = time.time() + 300
    while not list((runs["preempted"] / "preempt" / "checkpoints").glob("*/fine_tune-0.pt")):
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
    deadline = time.time() + 300  # its own allowance: reaching the checkpoint may have used most of the first
    while True:  # submitit requeues it: back to PENDING, one restart
        info = _scontrol(slurm_env, job)
        if int(info.get("Restarts", "0")) >= 1 and info.get("JobState") == "PENDING":
            break
        assert time.time() < deadline, f"the job did not requeue itself: {info.get('JobState')}"
        time.sleep(0.2)
    # SLURM holds a requeued batch job for about two minutes (BeginTime); release it now.
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=slurm_env, check=True)

    cells = expand(load_grid(str(grid_file)))
    for folder in runs.values():
        statuses = wait_for_cells(cells, folder, poll_s=1.0, max_poll_s=3.0, timeout_s=400, log=lambda m: None)
        assert [s.status for s in statuses] == ["done"]
    records = {name: json.loads(next((f / "preempt" / "records").glob("*.json")).read_text())
               for name, f in runs.items()}
    resumed = records["preempted"]["cost"]["resumed_from"]
    assert resumed and resumed[0]["epoch"] >= 1
    assert records["reference"]["cost"]["resumed_from"] == []
    for field in ("config_hash", "test_acc_best", "test_acc_last", "val_acc_best", "best_epoch", "history",
                  "selection", "extra"):
        assert records["preempted"][field] == records["reference"][field], field
    logs = runs["preempted"] / "preempt" / "slurm" / "logs" / job
    log = (logs / f"{job}_0_log.out").read_text() + (logs / f"{job}_0_log.err").read_text()
    assert "this job is preempted" in log or "timed-out" in log
    assert "resumed from" in log


def test_a_job_slurm_does_not_know_is_missing_not_waited_on(slurm_env, tmp_path: Path) -> None:
    start = time.monotonic()
    states = job_states({"987654321": str(tmp_path / "%j"), "987654322_3": str(tmp_path / "%j")})
    assert {k: (v.state, v.source) for k, v in states.items()} == {"987654321": ("MISSING", "none"),
                                                                     "987654322_3": ("MISSING", "none")}
    assert time.monotonic() - start < 30
