"""Cell claims: a process runs a cell only while it holds the cell's claim, so N processes on one grid
(local runs, SLURM array tasks, both at once) do each cell once.

A claim is ``<results>/<grid>/claims/<cell_id>.lock``, a JSON file naming its owner (host, pid, process
start time, SLURM job, user) and the time of its last heartbeat, rewritten every ``HEARTBEAT_S`` seconds
by a thread of the owner. A claim is stale, and is taken over, when its owner is a process of this host
that no longer exists (a ``kill -9``: taken over at once), when it was left by an earlier run of the same
SLURM job (a requeue), or when its heartbeat is older than ``STALE_AFTER_S`` (a dead node). Every change
of a claim (take, beat, release) happens under an ``flock`` on ``claims/.mutex``, held for milliseconds,
so two processes can never both take one claim. ``status.py`` locks SLURM submissions the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from nlbench.atomic import atomic_write_bytes
from nlbench.errors import ConfigError

HEARTBEAT_S = 30.0
# Ten missed heartbeats: a process stalled by swapping or a busy filesystem keeps its claim.
STALE_AFTER_S = 300.0


def claims_dir(results: str | Path, grid: str) -> Path:
    return Path(results) / grid / "claims"


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _slurm_job() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def describe_owner(owner: dict) -> str:
    if not owner.get("token"):
        return "an unreadable claim file"
    beat = time.time() - float(owner.get("heartbeat", 0))
    job = f", SLURM job {owner['slurm_job']}" if owner.get("slurm_job") else ""
    return f"{owner.get('user')}@{owner.get('host')} pid {owner.get('pid')}{job}, heartbeat {beat:.0f} s ago"



@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created, with its folder, if missing) for the block; blocks
    while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise ConfigError(f"lock file {str(path)!r} is a folder; remove it (nlbench makes it again) and rerun")
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

class CellClaim:
    """The claim on one cell. ``acquire()`` returns None once held, else the live owner's description."""

    def __init__(self, folder: str | Path, cell_id: str, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S, log: Callable[[str], None] = print) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"{cell_id}.lock"
        self.cell_id = cell_id
        self.heartbeat_s, self.stale_after_s, self.log = heartbeat_s, stale_after_s, log
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost = False  # set when another process took the claim over (we had stalled past STALE_AFTER_S)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- helpers
    def _mutex(self) -> contextlib.AbstractContextManager[None]:
        return exclusive_lock(self.folder / ".mutex")

    def _read(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # written atomically, so a foreign file: treat as a stale claim
            return {}
        return owner if isinstance(owner, dict) else {}

    def _write(self, since: float) -> None:
        pid = os.getpid()
        owner = {"token": self.token, "host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
                 "slurm_job": _slurm_job(), "user": getpass.getuser(), "cell_id": self.cell_id,
                 "since": since, "heartbeat": time.time()}
        atomic_write_bytes(self.path, json.dumps(owner, indent=1).encode())

    def stale_reason(self, owner: dict) -> str | None:
        """Why ``owner``'s claim may be taken over, or None while it is live."""
        if not owner.get("token"):
            return "not a claim file"
        if owner.get("host") == socket.gethostname():
            pid = int(owner.get("pid", -1))
            if pid <= 0 or not _alive(pid):
                return f"its process {pid} has ended"
            start = _process_start(pid)
            if owner.get("pid_start") and start and start != owner["pid_start"]:
                return f"its process {pid} has ended (the pid is reused)"
        if owner.get("slurm_job") and owner["slurm_job"] == _slurm_job():
            return f"it was left by an earlier run of this SLURM job {owner['slurm_job']}"
        age = time.time() - float(owner.get("heartbeat", 0))
        if age > self.stale_after_s:
            return f"its heartbeat is {age:.0f} s old"
        return None

    # ------------------------------------------------------------------------------------------- API
    def acquire(self) -> str | None:
        """Take the claim (or take over a stale one); None when held, else who holds it."""
        with self._mutex():
            owner = self._read()
            if owner is not None:
                reason = self.stale_reason(owner)
                if reason is None:
                    return describe_owner(owner)
                self.log(f"{self.cell_id}: taking over the claim of {describe_owner(owner)}: {reason}")
            self._write(since=time.time())
            self.held = True
        self._thread = threading.Thread(target=self._beat, name=f"claim-{self.cell_id}", daemon=True)
        self._thread.start()
        return None

    def _beat(self) -> None:
        since = time.time()
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self._mutex():
                    owner = self._read()
                    if not owner or owner.get("token") != self.token:
                        self.lost = True
                        self.log(f"warning: {self.cell_id}: the claim was taken over by "
                                 f"{describe_owner(owner) if owner else 'nobody'}; this process had stalled")
                        return
                    self._write(since=float(owner.get("since", since)))
            except OSError as exc:  # a full or flaky filesystem: the next beat tries again
                self.log(f"warning: {self.cell_id}: claim heartbeat failed ({exc})")

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.held:
            return
        self.held = False
        with self._mutex():
            owner = self._read()
            if owner and owner.get("token") == self.token:
                self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim_cell(results: str | Path, grid: str, cell_id: str, *, log: Callable[[str], None] = print,
               **timing: float) -> Iterator[str | None]:
    """``with claim_cell(...) as busy:`` — ``busy`` is None while this process holds the cell's claim
    (released on exit, also on an exception or a signal), else a description of the live owner."""
    claim = CellClaim(claims_dir(results, grid), cell_id, log=log, **timing)
    busy = claim.acquire()
    try:
        yield busy
    finally:
        claim.release()
