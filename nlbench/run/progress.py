"""The overall progress of a grid run: cells done of the total, time elapsed and an estimate of what remains.

The estimate comes from the cells this run has finished: a pending cell is expected to take the mean
time of the finished cells of its kind (same mode, method and tag, backbone, dataset and input size), or,
while no cell of its kind has finished, the mean of all finished cells. It is measured on this
machine, unlike the H100 cost model of the dry run (nlbench/run/costs.py), which ignores CPU-side work such
as training linear heads; it is rough until every kind has finished once.
"""

from __future__ import annotations

import time
from collections import defaultdict

from nlbench.run.spec import CellSpec


def cell_kind(spec: CellSpec) -> tuple:
    """Cells expected to take about as long as each other."""
    return (spec.mode, spec.method_key, spec.backbone, spec.dataset, spec.train_config.input_size)


def format_duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class GridProgress:
    """Counts finished cells of a run and estimates the rest from their measured times.

    ``total``: cells of the grid; ``todo``: the cells this run has to do (``total - len(todo)`` were done
    before it started)."""

    def __init__(self, total: int, todo: list[CellSpec], *, clock=time.monotonic) -> None:
        self.total = total
        self.done_before = total - len(todo)
        self._pending = {spec.cell_id: spec for spec in todo}
        self._seconds: dict[tuple, list[float]] = defaultdict(list)
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def finished(self, spec: CellSpec) -> None:
        """Note that ``spec`` finished now; its time is the time since the previous cell finished."""
        now = self._clock()
        self._seconds[cell_kind(spec)].append(now - self._last)
        self._last = now
        self._pending.pop(spec.cell_id, None)

    def remaining_seconds(self) -> float | None:
        """Estimated seconds for the pending cells; None before any cell has finished."""
        times = [t for ts in self._seconds.values() for t in ts]
        if not times:
            return None
        overall = sum(times) / len(times)
        per_kind = {kind: sum(ts) / len(ts) for kind, ts in self._seconds.items()}
        return sum(per_kind.get(cell_kind(spec), overall) for spec in self._pending.values())

    def line(self) -> str:
        """'grid G: 12/40 cells done, 1 min 23 s elapsed, about 2 min 10 s left'."""
        done = self.total - len(self._pending)
        text = f"{done}/{self.total} cells done, {format_duration(self._clock() - self._started)} elapsed"
        left = self.remaining_seconds()
        if self._pending and left is not None:
            text += f", about {format_duration(left)} left"
        return text
