"""The public Python API, for notebooks and scripts (docs/api.md). ``import nlbench`` reaches these functions
lazily (``nlbench.results``, ``nlbench.history``, ``nlbench.load_grid``, ``nlbench.run``,
``nlbench.leaderboard``), so that importing the package stays light; the command line goes through the same
code (``nlbench table`` prints ``leaderboard(results(...))``).

    >>> import nlbench
    >>> frame = nlbench.results("quickstart")             # one tidy row per record
    >>> lp = frame[frame["mode"] == "lp"]                   # filter in pandas ...
    >>> print(nlbench.leaderboard(lp))                      # ... and print the paper's layout
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from nlbench.errors import ConfigError
from nlbench.report.leaderboard import leaderboard
from nlbench.run.frames import history_frame, results_frame
from nlbench.run.grids import Grid, expand
from nlbench.run.grids import load_grid as _load_grid
from nlbench.run.records import load_records

__all__ = ["Grid", "history", "leaderboard", "load_grid", "results", "run"]

GridLike = str | Path | Grid


def load_grid(grid: str | Path, overrides: Iterable[str] = ()) -> Grid:
    """A registered grid (``'quickstart'``) or a grid file (a path ending in ``.toml``), checked against the
    grid schema, with ``overrides`` (``'train.lp_epochs=50'``, ``'methods.gce.q=0.5'``: docs/grids.md) applied
    first. ``ConfigError`` (one line) on a bad name, file, key or value."""
    return _load_grid(str(grid), overrides)


def _grid(grid: GridLike, overrides: Iterable[str]) -> Grid:
    overrides = tuple(overrides)
    if isinstance(grid, Grid):
        if overrides:
            raise ConfigError("overrides apply to a grid as it is loaded: pass the grid's name or path, or "
                              "load_grid(grid, overrides)")
        return grid
    return load_grid(grid, overrides)


def _records(grid: Grid, results: str | Path, seeds: int | None) -> list[dict]:
    return load_records(Path(results), expand(grid, seeds=seeds))


def _noted(frame: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    frame.attrs.update(grid=grid.name, layout=grid.layout)  # leaderboard() takes the grid's layout from here
    return frame


def results(grid: GridLike, results: str | Path = "runs", *, seeds: int | None = None,
            overrides: Iterable[str] = ()) -> pd.DataFrame:
    """One tidy row per current record of ``grid`` under the folder ``results`` (records whose config hash
    matches the grid's cell; cells not run yet have no row), in the grid's cell order.

    Columns: the cell's identity (``grid``, ``cell_id``, ``dataset``, ``backbone``, ``backbone_tag``,
    ``noise``, ``rate``, ``method``, ``method_tag``, ``method_key``, ``mode``, ``seed``, ``val_labels``,
    ``config_hash``), the results (``test_acc_best``, ``test_acc_last``, ``val_acc_best``, ``best_epoch``,
    ``realized_rate``), the last selected clean set (``selection_size``, ``selection_precision``,
    ``selection_recall``, ``selection_f1``), the cost (``wall_s``, ``peak_rss_mb``, ``peak_cuda_mb``,
    ``backbone_forward_images``, ``backbone_backward_images``), provenance (``git_commit``, ``python``,
    ``version.<package>``) and the config (``params.<name>``, ``train.<name>``)."""
    loaded = _grid(grid, overrides)
    return _noted(results_frame(_records(loaded, results, seeds)), loaded)


def history(grid: GridLike, results: str | Path = "runs", *, seeds: int | None = None,
            overrides: Iterable[str] = ()) -> pd.DataFrame:
    """The per-epoch curves of ``grid``'s records in long form: one row per (record, phase, epoch, metric)
    with columns ``grid``, ``cell_id``, ``dataset``, ``backbone``, ``noise``, ``rate``, ``method_key``,
    ``mode``, ``seed``, ``phase``, ``epoch``, ``metric``, ``value``. Metrics: ``train_loss``, ``val_acc``,
    ``test_acc`` (phase None) and ``selection_size``, ``selection_precision``, ``selection_recall`` (phase:
    the selecting network's)."""
    loaded = _grid(grid, overrides)
    return _noted(history_frame(_records(loaded, results, seeds)), loaded)


def run(grid: GridLike, results: str | Path = "runs", *, cache: str | Path | None = None, seeds: int | None = None,
        overrides: Iterable[str] = (), workers: int | None = None, devices: list[str] | None = None,
        progress: bool = False, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run every cell of ``grid`` that has no current record (as ``nlbench run`` does: inputs checked first,
    finished cells skipped, each cell under its claim), then return ``results(grid, results)``.

    ``workers``/``devices``: run the cells in that many worker processes, one per GPU (``devices=['0', '1']``);
    ``cache``: the feature cache folder (default ``$NLBENCH_CACHE`` or ``~/.cache/nlbench``)."""
    from nlbench.engine.features import default_cache_dir
    from nlbench.run.runner import run_grid
    from nlbench.run.validate import check_run, claim_results

    loaded = _grid(grid, overrides)
    folder = Path(results)
    cache_folder = Path(cache) if cache is not None else default_cache_dir()
    check_run(loaded, expand(loaded, seeds=seeds), results=folder, cache=cache_folder)
    claim_results(loaded, folder)
    run_grid(loaded, results=folder, cache=cache_folder, seeds=seeds, progress=progress, log=log, workers=workers,
             devices=devices)
    return _noted(results_frame(_records(loaded, folder, seeds)), loaded)
