"""The overall progress line of a grid run, against hand-computed estimates on a fake clock."""

from __future__ import annotations

import re

import pytest

from nlbench.run.grids import CellSpec, load_grid
from nlbench.run.progress import GridProgress, format_duration
from nlbench.run.runner import run_grid


def cell(mode: str, method: str, seed: int) -> CellSpec:
    return CellSpec(grid="g", dataset="d", backbone="b", noise="sym", rate=0.4, method=method, mode=mode, seed=seed,
                    train={"input_size": 16})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_estimate_uses_the_mean_time_of_finished_cells_of_the_same_kind() -> None:
    todo = [cell("fft", "ce", 0), cell("fft", "ce", 1), cell("lp", "ce", 0), cell("lp", "ce", 1)]
    clock = FakeClock()
    progress = GridProgress(5, todo, clock=clock)  # one cell of five was done before this run
    assert progress.line() == "1/5 cells done, 0 s elapsed"  # nothing measured yet: no estimate
    clock.now += 10
    progress.finished(todo[0])
    # fft/ce seed 1: its kind's mean, 10 s; the two LP cells: no LP cell measured, the overall mean, 10 s each
    assert progress.remaining_seconds() == pytest.approx(30.0)
    assert progress.line() == "2/5 cells done, 10 s elapsed, about 30 s left"
    clock.now += 2
    progress.finished(todo[2])
    # fft/ce seed 1: 10 s; lp/ce seed 1: 2 s
    assert progress.line() == "3/5 cells done, 12 s elapsed, about 12 s left"
    clock.now += 14
    progress.finished(todo[1])
    assert progress.remaining_seconds() == pytest.approx(2.0)  # lp/ce: mean of its one measured cell
    clock.now += 4
    progress.finished(todo[3])
    assert progress.line() == "5/5 cells done, 30 s elapsed"


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (42.4, "42 s"), (60, "1 min 00 s"), (185, "3 min 05 s"),
                                               (7620, "2 h 07 min")])
def test_durations_read_as_minutes_and_hours(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_a_grid_run_prints_the_progress_line_after_each_cell(write_grid, tmp_path) -> None:
    grid = load_grid(write_grid("prog", methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}]))
    lines: list[str] = []
    run_grid(grid, results=tmp_path / "r", cache=tmp_path / "c", log=lines.append)
    progress = [ln for ln in lines if ln.startswith("grid prog: ") and "cells done" in ln]
    assert len(progress) == 2
    assert re.fullmatch(r"grid prog: 1/2 cells done, \d+ s elapsed, about \d+ s left", progress[0])
    assert re.fullmatch(r"grid prog: 2/2 cells done, \d+ (s|min \d\d s) elapsed", progress[1])
