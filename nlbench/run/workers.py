"""Every device of one machine without SLURM: ``nlbench run --grid G --workers N`` (or ``--devices 0,1``).

The parent process plans the grid, groups the cells to run as SLURM would (``executors.group_cells``: the
linear-probe cells sharing a feature cache are one job, so one worker fills the cache and the others never
wait on it or compute it twice; every other cell is a job of its own) and puts the jobs on a queue. N worker
processes (``spawn``: no CUDA state is inherited) take jobs from it and run each cell with
``cell.run_cell_once``, under the cell's claim (``nlbench.run.locks``): a cell runs once even when another
``nlbench run`` or a SLURM array shares the grid. Worker k sees one GPU, ``CUDA_VISIBLE_DEVICES`` = its device,
so a cell's ``device = "auto"`` or ``"cuda"`` is that GPU; CPU workers split the machine's cores between them
(``torch.set_num_threads``; a grid that pins ``[train] threads`` keeps its own). The parent shows the one
progress display (cells done of the grid, time left) and returns the new records; a cell that fails does not
stop the others, and the run then raises ``CellsFailed`` with every traceback.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from collections.abc import Callable
from pathlib import Path

from nlbench.errors import ConfigError
from nlbench.run.executors import CellsFailed, group_cells
from nlbench.run.spec import CellSpec

POLL_S = 0.5


def parse_devices(text: str) -> list[str]:
    """``'0,1,3'`` → ['0', '1', '3']: GPU indices as CUDA_VISIBLE_DEVICES names them; ConfigError otherwise."""
    devices = [d.strip() for d in text.split(",")]
    if not text.strip() or not all(d.isdigit() for d in devices):
        raise ConfigError(f"--devices {text!r}: expected GPU indices separated by commas, e.g. 0,1,2,3")
    if len(set(devices)) != len(devices):
        raise ConfigError(f"--devices {text!r} repeats a device; expected distinct GPU indices")
    return devices


def worker_devices(workers: int | None, devices: list[str] | None) -> list[str | None]:
    """The device of each worker: the given ones (``workers`` of them, in turn), else one per visible GPU in
    turn, else None (CPU) for each of ``workers``."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers {workers!r}: expected an integer ≥ 1")
    if devices:
        return [devices[k % len(devices)] for k in range(workers or len(devices))]
    import torch  # counts GPUs without initialising CUDA in this process

    count = torch.cuda.device_count()
    n = workers or max(count, 1)
    return [str(k % count) if count else None for k in range(n)]


def _worker(index: int, device: str | None, threads: int | None, tasks, events, results: str, cache: str) -> None:
    """One worker process: jobs from ``tasks`` until a None, every event (log line, cell done or failed, exit)
    to ``events``."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device  # before anything initialises CUDA in this process
    from nlbench import interrupts
    from nlbench.run.cell import run_cell_once

    if threads is not None:
        import torch

        torch.set_num_threads(threads)

    def log(message: str) -> None:
        events.put(("log", index, message))

    try:
        with interrupts.sigterm_raises():
            while (cells := tasks.get()) is not None:
                for spec in cells:
                    try:
                        record = run_cell_once(spec, results, cache, progress=False, log=log)
                    except Exception:
                        events.put(("failed", index, spec.cell_id, traceback.format_exc()))
                        continue
                    events.put(("done", index, spec.cell_id, record))
    except KeyboardInterrupt:
        pass  # the parent was interrupted too; claims were released on the way out
    finally:
        events.put(("exit", index))


def run_with_workers(grid_name: str, todo: list[CellSpec], *, results: Path, cache: Path,
                     workers: int | None = None, devices: list[str] | None = None,
                     on_finished: Callable[[CellSpec, dict | None], None] = lambda spec, record: None,
                     log: Callable[[str], None] = print) -> list[dict]:
    """Run ``todo`` (cells of one grid, none of them done) in worker processes, one per device; returns the
    records they wrote. ``on_finished(spec, record)`` is called in this process as each cell ends (record None:
    another process had it)."""
    assigned = worker_devices(workers, devices)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cpu_threads = max(1, cores // len(assigned))  # the cores this process may use, not the machine's
    context = multiprocessing.get_context("spawn")
    tasks, events = context.Queue(), context.Queue()
    for group in group_cells(todo):
        tasks.put(list(group.cells))
    for _ in assigned:
        tasks.put(None)
    where = ", ".join(f"GPU {d}" if d is not None else "CPU" for d in assigned)
    log(f"grid {grid_name}: {len(assigned)} worker(s) ({where}) on {len(todo)} cell(s)")
    processes = [context.Process(target=_worker, name=f"nlbench-worker-{k}", daemon=True,
                                 args=(k, device, None if device is not None else cpu_threads, tasks, events,
                                       str(results), str(cache)))
                 for k, device in enumerate(assigned)]
    by_id = {spec.cell_id: spec for spec in todo}
    records: list[dict] = []
    failures: list[str] = []
    running = set(range(len(processes)))
    try:
        for process in processes:
            process.start()
        while running:
            try:
                event = events.get(timeout=POLL_S)
            except queue.Empty:
                for k in list(running):
                    if processes[k].exitcode is not None:  # ended without saying so (killed, out of memory)
                        running.discard(k)
                        failures.append(f"worker {k} ended with exit code {processes[k].exitcode}")
                continue
            kind, k = event[0], event[1]
            if kind == "log":
                log(f"[worker {k}] {event[2]}")
            elif kind == "done":
                spec, record = by_id[event[2]], event[3]
                if record is not None:
                    records.append(record)
                on_finished(spec, record)
            elif kind == "failed":
                failures.append(f"{event[2]} (worker {k}):\n{event[3]}")
                log(f"[worker {k}] {event[2]}: FAILED")
                on_finished(by_id[event[2]], None)
            elif kind == "exit":
                running.discard(k)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker's cell stops and releases its claim
        for process in processes:
            process.join()
    if failures:
        raise CellsFailed(f"{len(failures)} cell(s) or worker(s) failed:\n" + "\n".join(failures))
    return records
