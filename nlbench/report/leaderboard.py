"""The leaderboard of ``nlbench table`` from a tidy results frame (``nlbench.results``), so that a frame
filtered in pandas prints in the paper's layout. ``nlbench table``, ``nlbench run`` and ``nlbench status
--wait`` print their tables through ``leaderboard`` too (``nlbench.cli.common.table_text``).
"""

from __future__ import annotations

import pandas as pd

from nlbench.errors import ConfigError
from nlbench.report.tables import FORMATS, METRICS, chance_reason, nominal_rate, render_frame

# The tidy frame's column of each metric of ``nlbench table --metric`` (the others have the metric's name).
METRIC_COLUMN = {"time": "wall_s"}
NEEDED = ("mode", "method_key", "backbone", "dataset", "noise", "rate", "seed", "test_acc_last", "realized_rate")


def table_frame(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The frame the table layouts read (``tables.records_frame``'s columns), from a tidy results frame."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of: {', '.join(METRICS)}")
    column = METRIC_COLUMN.get(metric, metric)
    missing = [c for c in (*NEEDED, column) if c not in frame.columns]
    if missing:
        raise ConfigError(f"the frame lacks column(s) {', '.join(missing)}; expected a frame of nlbench.results() "
                          f"(rows may be filtered, these columns kept)")
    # What marks a chance-level cell, where the frame has it (the tables' ``chance_cells``).
    chance = {}
    if "test_acc_best" in frame.columns and "num_classes" in frame.columns:
        params = [{"loss_input": v} for v in frame.get("params.loss_input", pd.Series(None, index=frame.index))]
        train = [{"fft_optimizer": v} for v in frame.get("train.fft_optimizer", pd.Series(None, index=frame.index))]
        chance = {"best": frame["test_acc_best"].astype(float).tolist(),
                  "classes": frame["num_classes"].astype(float).tolist(),
                  "chance_reason": [chance_reason(m, k, {n: v for n, v in p.items() if isinstance(v, str)},
                                                  {n: v for n, v in t.items() if isinstance(v, str)})
                                    for m, k, p, t in zip(frame["mode"], frame["method_key"], params, train,
                                                          strict=True)]}
    return pd.DataFrame({
        "mode": frame["mode"].tolist(), "method": frame["method_key"].tolist(),
        "backbone": frame["backbone"].tolist(), "dataset": frame["dataset"].tolist(),
        "noise": frame["noise"].tolist(),
        "rate": [nominal_rate(n, r) for n, r in zip(frame["noise"], frame["rate"], strict=True)],
        "seed": frame["seed"].tolist(), "value": frame[column].astype(float).tolist(),
        "last": frame["test_acc_last"].astype(float).tolist(),
        "realized": frame["realized_rate"].astype(float).tolist(), **chance,
    })


def default_layout(frame: pd.DataFrame) -> str:
    """The grid's layout where ``nlbench.results`` noted it (``frame.attrs['layout']``), else 'real' when every
    row has real noise (model 'none') and 'table1' otherwise."""
    layout = frame.attrs.get("layout")
    if layout in ("table1", "real"):
        return layout
    return "real" if len(frame) and (frame["noise"] == "none").all() else "table1"


def leaderboard(frame: pd.DataFrame, *, metric: str = "test_acc_best", fmt: str = "markdown",
                layout: str | None = None, realized: bool = False, paper: bool = False, caption: bool = True) -> str:
    """The leaderboard of the rows of ``frame`` (a frame of ``nlbench.results``, filtered or not) as
    ``nlbench table`` prints it: markdown (with a caption line unless ``caption=False``), LaTeX or CSV.

    ``layout``: 'table1' (rows mode × method, columns backbone × noise setting) or 'real' (rows backbone,
    cells best / last); default: the grid's. ``paper`` adds the paper's number of each cell in parentheses."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    layout = layout if layout is not None else default_layout(frame)
    if layout not in ("table1", "real"):
        raise ConfigError(f"unknown layout {layout!r}; expected one of: real, table1")
    if not len(frame):
        raise ConfigError("no finished records to tabulate (run the grid first: nlbench run --grid NAME)")
    text = render_frame(table_frame(frame, metric), layout=layout, metric=metric, fmt=fmt, realized=realized,
                        paper=paper)
    if fmt != "markdown" or not caption:
        return text
    grids = ", ".join(dict.fromkeys(frame["grid"])) if "grid" in frame.columns else "results"
    backbones = ", ".join(dict.fromkeys(frame["backbone"]))
    datasets = ", ".join(dict.fromkeys(frame["dataset"]))
    seeds = frame["seed"].nunique()
    line = f"{grids}: {METRICS[metric]} — {datasets}, {backbones}; {len(frame)} cells, {seeds} seed(s)"
    if layout == "real":
        line += "; cells: best / last"
    return line + spread_note(frame) + "\n\n" + text


def spread_note(frame: pd.DataFrame) -> str:
    """Which variance a table's ± shows: training seeds under one noisy-label draw per setting (the references'
    saved noise file), or a new draw with every seed (noise and training together). '' without a spread."""
    if "noise_seed" not in frame.columns or frame["seed"].nunique() < 2:
        return ""
    setting = [c for c in ("dataset", "backbone", "backbone_tag", "noise", "rate", "mode", "method_key")
               if c in frame.columns]
    if (frame.groupby(setting, dropna=False)["noise_seed"].nunique() == 1).all():
        draws = frame["noise_seed"].unique()
        which = f" (noise_seed {draws[0]})" if len(draws) == 1 else ""
        return f"; ± = std over training seeds, one noise draw per setting{which}"
    if (frame["noise_seed"] == frame["seed"]).all():
        return "; ± = std over seeds, each with its own noise draw (noise_seed per-seed: noise and training variance)"
    return "; ± mixes rows of one noise draw and rows redrawn per seed"
