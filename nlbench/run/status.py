"""Which cells are done, queued, running, failed or pending, from records and SLURM's own job states.

Submissions are tracked in ``<results>/<grid>/slurm/state.json``: for each cell the job id that runs it,
its config hash and its log folder, rewritten atomically under a file lock, so two ``nlbench run`` at
once cannot both submit a cell. A cell's status:

- ``done``: its record is complete and current (records decide, never job states or logs; a damaged record
  is an error, a torn or empty one a warning and not done: ``nlbench.run.records.read_record``);
- ``queued`` / ``running``: its job is pending (also requeued) / running in SLURM;
- ``failed``: its job ended without the record (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, …,
  or COMPLETED with a cell that raised), or SLURM no longer knows the job and submitit left no result;
- ``pending``: never submitted, or submitted with a different configuration.

Job states come from ``sacct`` when accounting is on, and from ``squeue -t all`` (the controller's view:
current jobs and those finished less than MinJobAge ago) in any case; for jobs neither knows, submitit's
result file says whether the job returned or raised. No query waits on a job, so a dead or cancelled job
never blocks ``status`` or ``run --wait``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import pickle
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from submitit.core.utils import JobPaths

from nlbench.atomic import atomic_write_bytes
from nlbench.errors import ConfigError
from nlbench.run.executors import state_dir
from nlbench.run.locks import exclusive_lock
from nlbench.run.records import is_done
from nlbench.run.spec import CellSpec

QUEUED_STATES = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING", "SUSPENDED",
                 "STOPPED", "SPECIAL_EXIT"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
STATUSES = ("done", "running", "queued", "failed", "pending")


class ClusterUnavailable(RuntimeError):
    """Neither sacct nor squeue answered."""


# ------------------------------------------------------------------------------------------- state file
class SubmissionState:
    """The per-grid state file: {cell_id: {job_id, config_hash, log_folder, submitted_at, submissions}}."""

    def __init__(self, results: Path, grid: str) -> None:
        self.folder = state_dir(results, grid)
        self.path = self.folder / "state.json"

    def load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # written atomically, so this is someone else's file
            raise ConfigError(f"unreadable submission state {self.path} ({exc}); move it away to start the "
                              f"grid's SLURM bookkeeping afresh (records are kept)") from None
        return data.get("cells", {})

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on the state (blocks while another ``nlbench run`` submits)."""
        return exclusive_lock(self.folder / "state.lock")

    def record_submissions(self, entries: dict[str, dict]) -> None:
        """Merge ``entries`` (cell_id → job_id, config_hash, log_folder) into the file; call under ``locked``."""
        cells = self.load()
        now = datetime.now(UTC).isoformat(timespec="seconds")
        for cell_id, entry in entries.items():
            previous = cells.get(cell_id, {})
            cells[cell_id] = {**entry, "submitted_at": now, "submissions": previous.get("submissions", 0) + 1,
                              "previous_jobs": (previous.get("previous_jobs", []) + [previous["job_id"]])[-10:]
                              if "job_id" in previous else []}
        payload = {"version": 1, "cells": dict(sorted(cells.items()))}
        atomic_write_bytes(self.path, json.dumps(payload, indent=1).encode())


# ------------------------------------------------------------------------------------------- job states
@dataclass(frozen=True)
class JobState:
    state: str  # SLURM's word (COMPLETED, CANCELLED, …) or MISSING
    source: str  # sacct | squeue | result-file | none


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _expand(job_id: str) -> list[str]:
    """'12_[1-3,5%2]' → ['12_1', '12_2', '12_3', '12_5']; other ids unchanged."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def _parse(lines: str) -> dict[str, str]:
    out = {}
    for line in lines.splitlines():
        if "|" not in line:
            continue
        job_id, state = line.split("|")[:2]
        state = state.split()[0] if state.strip() else "UNKNOWN"  # "CANCELLED by 0" → CANCELLED
        for jid in _expand(job_id.strip()):
            out[jid] = state.rstrip("+")
    return out


def sacct_states(job_ids: list[str]) -> dict[str, str] | None:
    """{job id: state} from accounting, or None when accounting is off or sacct is missing."""
    base = sorted({j.split("_")[0] for j in job_ids})
    if not base:
        return {}
    out = _run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(base)])
    if out is None or out.returncode != 0:
        return None
    return _parse(out.stdout)


def squeue_states() -> dict[str, str] | None:
    """{job id: state} of this user's jobs the controller still lists (finished ones for MinJobAge)."""
    out = _run(["squeue", "-h", "-r", "-t", "all", "-u", getpass.getuser(), "-o", "%i|%T"])
    if out is None or out.returncode != 0:
        return None
    return _parse(out.stdout)


def result_file_state(log_folder: str, job_id: str) -> str | None:
    """COMPLETED or FAILED from submitit's result pickle of ``job_id`` (task 0), None if there is none."""
    path = result_path(log_folder, job_id)
    try:
        with open(path, "rb") as f:
            outcome, _ = pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        return None
    return "COMPLETED" if outcome == "success" else "FAILED"


def result_path(log_folder: str, job_id: str) -> Path:
    return JobPaths(log_folder, job_id=job_id, task_id=0).result_pickle


def job_states(jobs: dict[str, str], *, use_sacct: bool = True) -> dict[str, JobState]:
    """States of ``jobs`` ({job id: submitit log folder}). squeue (the controller, current) wins over sacct
    (the database, which learns of a job a moment after submission); then submitit's result files."""
    if not jobs:
        return {}
    accounting = sacct_states(list(jobs)) if use_sacct else None
    queue = squeue_states()
    if accounting is None and queue is None:
        raise ClusterUnavailable("neither sacct nor squeue answered (is SLURM reachable from this host?)")
    out = {}
    for job_id, folder in jobs.items():
        if queue and job_id in queue:
            out[job_id] = JobState(queue[job_id], "squeue")
        elif accounting and job_id in accounting:
            out[job_id] = JobState(accounting[job_id], "sacct")
        elif (state := result_file_state(folder, job_id)) is not None:
            out[job_id] = JobState(state, "result-file")
        else:
            out[job_id] = JobState("MISSING", "none")
    return out


# ------------------------------------------------------------------------------------------ cell status
@dataclass(frozen=True)
class CellStatus:
    cell_id: str
    status: str  # one of STATUSES
    job_id: str | None = None
    slurm_state: str | None = None
    detail: str = ""
    log: str | None = None  # stderr file of the job


def cell_statuses(cells: list[CellSpec], results: Path, *, use_sacct: bool = True,
                  warn: bool = True) -> list[CellStatus]:
    """Status of every cell (see the module docstring). A damaged record raises ``RecordError``; a torn or
    empty one leaves its cell pending (or failed) and is named in a warning line unless ``warn`` is false."""
    if not cells:
        return []
    submitted = SubmissionState(results, cells[0].grid).load()
    todo = {c.cell_id: c for c in cells if not is_done(results, c, warn=warn)}
    jobs = {}
    for cell_id, spec in todo.items():
        entry = submitted.get(cell_id)
        if entry and entry.get("config_hash") == spec.config_hash:
            jobs[entry["job_id"]] = entry["log_folder"]
    states = job_states(jobs, use_sacct=use_sacct)
    out = []
    for spec in cells:
        entry = submitted.get(spec.cell_id) or {}
        job_id = entry.get("job_id")
        if spec.cell_id not in todo:
            out.append(CellStatus(spec.cell_id, "done", job_id))
            continue
        if not entry or entry.get("config_hash") != spec.config_hash:
            out.append(CellStatus(spec.cell_id, "pending", None,
                                  detail="configuration changed since submission" if entry else ""))
            continue
        state = states[job_id].state
        log = str(log_paths(entry["log_folder"], job_id)[1])
        if state in QUEUED_STATES:
            out.append(CellStatus(spec.cell_id, "queued", job_id, state, log=log))
        elif state in RUNNING_STATES:
            out.append(CellStatus(spec.cell_id, "running", job_id, state, log=log))
        else:
            detail = {"COMPLETED": "the job ended without writing this cell's record",
                      "MISSING": "SLURM no longer knows the job and submitit left no result file"}.get(state, "")
            out.append(CellStatus(spec.cell_id, "failed", job_id, state, detail=detail, log=log))
    return out


def log_paths(log_folder: str, job_id: str) -> tuple[Path, Path]:
    """(stdout, stderr) of task 0 of ``job_id``."""
    paths = JobPaths(log_folder, job_id=job_id, task_id=0)
    return paths.stdout, paths.stderr


def failure_tail(status: CellStatus, lines: int = 8) -> list[str]:
    """The last ``lines`` lines of a failed cell's job log (stderr, where tracebacks and SLURM's
    CANCELLED/TIMEOUT notices land), or why there are none."""
    if status.log is None:
        return []
    path = Path(status.log)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [f"(no log at {path}: the job never started, or the results folder is not shared with the node)"]
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return tail or [f"(log {path} is empty)"]


def counts(statuses: list[CellStatus]) -> dict[str, int]:
    return {s: sum(1 for c in statuses if c.status == s) for s in STATUSES}


def format_status(grid: str, statuses: list[CellStatus], *, tail: int = 8, show_done: bool = True) -> str:
    """The ``nlbench status`` report: a count line, one line per cell, log tails under failed cells."""
    n = counts(statuses)
    head = f"grid {grid}: {len(statuses)} cells — " + ", ".join(f"{n[s]} {s}" for s in STATUSES)
    lines = [head]
    width = max((len(c.job_id or "-") for c in statuses), default=1)
    for c in statuses:
        if c.status == "done" and not show_done:
            continue
        state = f" [{c.slurm_state}]" if c.slurm_state and c.status != "done" else ""
        detail = f" — {c.detail}" if c.detail else ""
        lines.append(f"  {c.status:<8} {c.job_id or '-':<{width}}  {c.cell_id}{state}{detail}")
        if c.status == "failed" and tail:
            lines += [f"             | {line}" for line in failure_tail(c, tail)]
            lines.append(f"             | log: {c.log}")
    return "\n".join(lines)


def wait_for_cells(cells: list[CellSpec], results: Path, *, poll_s: float = 2.0, max_poll_s: float = 30.0,
                   timeout_s: float | None = None, log=print, use_sacct: bool = True) -> list[CellStatus]:
    """Poll until no cell is queued or running; returns the final statuses. Raises ClusterUnavailable
    after five failed queries in a row (SLURM down) and TimeoutError after ``timeout_s``; never blocks on
    one job. Torn records are not named again on each poll (the submission's plan named them)."""
    last, failures, delay = None, 0, poll_s
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"cells still queued or running after {timeout_s:.0f} s: {last}")
        try:
            statuses = cell_statuses(cells, results, use_sacct=use_sacct, warn=False)  # submit_grid named them
            failures = 0
        except ClusterUnavailable:
            failures += 1
            if failures >= 5:
                raise
            time.sleep(delay)
            continue
        n = counts(statuses)
        summary = ", ".join(f"{n[s]} {s}" for s in STATUSES if n[s])
        if summary != last:
            log(f"[{datetime.now().strftime('%H:%M:%S')}] {summary}")
            last, delay = summary, poll_s
        if not n["queued"] and not n["running"]:
            return statuses
        time.sleep(delay)
        delay = min(max_poll_s, delay * 1.5)
