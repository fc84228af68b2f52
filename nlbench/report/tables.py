"""Leaderboards from run records, in the paper's layouts (markdown, LaTeX/booktabs, CSV).

'table1' (the paper's CIFAR-100 table): rows FFT / LP / LP-FFT × method, columns backbone × noise
setting, mean ± std over seeds, best per column in bold. 'real' (Clothing1M / WebVision): rows
backbone, columns mode × method, cells "best / last".
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from importlib import resources

import numpy as np
import pandas as pd

from nlbench.errors import ConfigError
from nlbench.registry import METHODS
from nlbench.report.metrics import FORMATS, LOWER_IS_BETTER, METRICS, UNRANKED
from nlbench.run.frames import last_pair_disagreement

MODE_ORDER = ["fft", "lp", "lp-fft"]
MODE_LABEL = {"fft": "FFT", "lp": "LP", "lp-fft": "LP-FFT"}
NOISE_ORDER = ["sym", "asym", "inst", "none"]

MISSING = "–"  # a cell without records (markdown); LaTeX prints "--", CSV leaves the field empty

# A cell whose training did not leave chance level is a finding, not a rank: marked, never bold. At chance:
# mean best test accuracy ≤ 100/C + min(100/(2C), 5) points. The margin: about 3 binomial standard errors of
# a chance-level classifier on the smallest shipped test set (digits, 360 images: 3·√(0.1·0.9/360) = 4.7
# points at C = 10); half of chance where that is less (C > 10: CIFAR-100's 10,000 test images put 3 standard
# errors at 0.3 points, so 1.5 % at C = 100 marks no model that trained).
CHANCE_MARGIN_MAX = 5.0
CHANCE_MARK = "†"


def record_classes(record: dict) -> int | None:
    """C of a record's dataset: the size of its realized transition matrix (None under real noise)."""
    transition = (record.get("noise_audit") or {}).get("transition")
    return len(transition) if transition else None


def chance_reason(mode: str, method: str, params: Mapping, train: Mapping) -> str:
    """The known cause of a chance-level cell ('' where none is known)."""
    if (mode == "fft" and method.partition("@")[0] == "coteaching_plus"
            and params.get("loss_input", "softmax") == "softmax" and train.get("fft_optimizer", "sgd") == "sgd"):
        return ("Co-teaching+'s code loss (CE of softmax outputs, loss_input 'softmax') barely trains under "
                "the engine's SGD; its reference trains with Adam (docs/fidelity.md)")
    return ""


def at_chance(best: float, classes: float | None) -> bool:
    """Whether a mean best test accuracy (%) did not leave chance level for C = ``classes`` (unknown: False)."""
    return (classes is not None and not math.isnan(classes) and classes > 1 and not math.isnan(best)
            and best <= chance_threshold(classes))


def chance_threshold(classes: float) -> float:
    """The best test accuracy (%) at or below which a cell counts as at chance: 100/C + min(100/(2C), 5)."""
    return 100.0 / classes + min(50.0 / classes, CHANCE_MARGIN_MAX)


def method_key(record: dict) -> str:
    """A record's method as a table row names it: ``dividemix``, or ``dividemix@long`` for a tagged variant."""
    tag = record.get("method_tag")
    return f"{record['method']}@{tag}" if tag else record["method"]


# Methods' table facts given by the caller (``method_facts``); None: read from the registry.
_FACTS: ContextVar[Mapping[str, Mapping] | None] = ContextVar("method_facts", default=None)


@contextlib.contextmanager
def method_facts(facts: Mapping[str, Mapping]) -> Iterator[None]:
    """Within the block, tables take methods' label, order and paper name from ``facts`` (name → its
    registration's values, as ``nlbench.run.grid_memo`` remembers them) instead of the registry, whose
    loading imports every method's code (torch). Methods missing from ``facts`` still come from the registry."""
    token = _FACTS.set(facts)
    try:
        yield
    finally:
        _FACTS.reset(token)


def _method_meta(name: str) -> Mapping:
    """A method's registration (label, order, paper name); {} for a method no longer registered (its old
    records still tabulate, under their key)."""
    facts = _FACTS.get()
    if facts is not None and name in facts:
        return facts[name]
    return METHODS.entry(name).meta if name in METHODS else {}


def method_label(key: str) -> str:
    """Display name of a method key, as the method registered it: 'DMix', 'DMix@long'."""
    base, _, tag = key.partition("@")
    label = _method_meta(base).get("label", base)
    return f"{label}@{tag}" if tag else label


def row_label(mode: str, key: str) -> str:
    return f"{MODE_LABEL.get(mode, mode)} {method_label(key)}"


def _metric(record: dict, metric: str) -> float:
    if metric == "time":
        # Records written before costs were recorded have no 'cost': an empty cell, not a crash.
        return float((record.get("cost") or {}).get("wall_s", math.nan))
    if metric in ("backbone_forward_images", "backbone_backward_images"):
        return float((record.get("cost") or {}).get(metric, math.nan))
    if metric == "realized_rate":
        audit = record.get("noise_audit") or {}
        return audit.get("realized_rate", math.nan)
    if metric == "pair_disagreement":
        return last_pair_disagreement(record)
    if metric == "selection_f1":
        sel = (record.get("selection") or [{}])[-1]
        p, r = sel.get("precision"), sel.get("recall")
        return 2 * p * r / (p + r) if p is not None and r is not None and p + r > 0 else math.nan
    value = record.get(metric)
    return math.nan if value is None else float(value)


def records_frame(records: list[dict], metric: str) -> pd.DataFrame:
    """One row per record: mode, method, backbone, noise, rate, seed, value (and realized rate)."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; expected one of: {', '.join(METRICS)}")
    rows = [{
        "mode": r["mode"], "method": method_key(r), "backbone": r["backbone"], "dataset": r["dataset"],
        "noise": r["noise"], "rate": nominal_rate(r["noise"], r["rate"]), "seed": r["seed"],
        "value": _metric(r, metric), "last": _metric(r, "test_acc_last"), "realized": _metric(r, "realized_rate"),
        "best": _metric(r, "test_acc_best"), "classes": record_classes(r) or math.nan,
        "chance_reason": chance_reason(r["mode"], method_key(r), (r.get("config") or {}).get("method_params") or {},
                                       (r.get("config") or {}).get("train") or {}),
    } for r in records]
    return pd.DataFrame(rows)


def nominal_rate(noise: str, rate: float) -> float:
    """A record's nominal rate as tables group it: real noise (model 'none') has none, so every rate a grid
    gave it falls in one column."""
    return 0.0 if noise == "none" else float(rate)


def setting_label(noise: str, rate: float, *, clean: bool = False) -> str:
    """How a (noise, rate) column is shown; tables group and sort by the numbers, never by this text. Model
    'none' is "real" noise (labels as given by a real-noise dataset), or "clean" when ``clean``: the labels
    as given are the clean ones (see ``none_is_clean``)."""
    if noise == "none":
        return "clean" if clean else "real"
    return f"{noise} {rate:g}"


def none_is_clean(df: pd.DataFrame) -> bool:
    """Whether the model-'none' rows of a ``records_frame`` are clean runs: every one has a realized rate of 0
    (its training labels are the clean ones). Real-noise datasets have a realized rate above 0, or none at all
    where no clean label is known (Clothing1M, WebVision)."""
    realized = df.loc[df["noise"] == "none", "realized"]
    return bool(len(realized)) and bool((realized == 0.0).all())


def setting_order(settings) -> list[tuple[str, float]]:
    """(noise, rate) pairs in the paper's order: sym, asym, inst, real, then other models; rates ascending."""
    return sorted(set(settings), key=lambda s: (NOISE_ORDER.index(s[0]) if s[0] in NOISE_ORDER else 9, s[0], s[1]))


def setting_labels(settings: list[tuple[str, float]], *, clean: bool = False) -> dict[tuple[str, float], str]:
    """Display labels of distinct settings; two rates that ``:g`` would print alike get their exact value.
    ``clean``: model 'none' is a clean run (``setting_label``)."""
    labels = {s: setting_label(*s, clean=clean) for s in settings}
    shown = [labels[s] for s in settings]
    return {s: (f"{s[0]} {s[1]!r}" if shown.count(labels[s]) > 1 else labels[s]) for s in settings}


def _fmt(mean: float, std: float, n: int, fmt: str, bold: bool) -> str:
    if math.isnan(mean):
        return MISSING
    if n > 1 and not math.isnan(std):
        text = f"{mean:.2f} $\\pm$ {std:.2f}" if fmt == "latex" else f"{mean:.2f}±{std:.2f}"
    else:
        text = f"{mean:.2f}"
    if bold:
        return f"\\textbf{{{text}}}" if fmt == "latex" else f"**{text}**" if fmt == "markdown" else text
    return text


def _row_key(mode: str, method: str) -> tuple[int, int, str]:
    base = method.partition("@")[0]
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else 99, _method_meta(base).get("order", 10**6), method)


def table1(df: pd.DataFrame, *, fmt: str, higher_is_better: bool = True, realized: bool = False,
           ranked: bool = True) -> pd.DataFrame:
    """Rows (mode, method), columns (backbone, noise setting); mean ± std over seeds, best in bold (none where not
    ``ranked``). Cells are grouped by the numeric (noise, rate) columns; labels are made for display only."""
    cell = ["mode", "method", "backbone", "noise", "rate"]
    stats = df.groupby(cell)["value"].agg(["mean", "std", "count"])
    backbones = list(dict.fromkeys(df["backbone"]))
    settings = setting_order(zip(df["noise"], df["rate"], strict=True))
    labels = setting_labels(settings, clean=none_is_clean(df))
    rows = sorted({(m, k) for m, k in zip(df["mode"], df["method"], strict=True)}, key=lambda t: _row_key(*t))
    realized_by = df.groupby(["backbone", "noise", "rate"])["realized"].mean()
    paper_by = df.groupby(cell)["paper"].first() if "paper" in df else pd.Series(dtype=float)
    columns = []
    for b in backbones:
        for s in settings:
            label = labels[s]
            if realized and (b, *s) in realized_by.index and not math.isnan(realized_by[(b, *s)]):
                label = f"{label} (realized {realized_by[(b, *s)]:.2f})"
            columns.append((b, s, label))
    chance = chance_cells(df)
    table = {}
    for b, s, label in columns:
        means = {r: stats.loc[(*r, b, *s), "mean"] if (*r, b, *s) in stats.index and (*r, b, *s) not in chance
                 else math.nan for r in rows}
        finite = [v for v in means.values() if not math.isnan(v)]
        best = (max(finite) if higher_is_better else min(finite)) if finite and ranked else math.nan
        col = []
        for r in rows:
            if (*r, b, *s) in stats.index:
                st = stats.loc[(*r, b, *s)]
                text = _fmt(st["mean"], st["std"], int(st["count"]), fmt, bold=bool(np.isclose(st["mean"], best)))
                if (*r, b, *s) in chance:
                    text += "$^\\dagger$" if fmt == "latex" else CHANCE_MARK
                if (*r, b, *s) in paper_by.index and not math.isnan(paper_by[(*r, b, *s)]):
                    text += f" ({paper_by[(*r, b, *s)]:.2f})"
                col.append(text)
            else:
                col.append(MISSING)
        table[(b, label)] = col
    index = [row_label(m, k) for m, k in rows]
    return pd.DataFrame(table, index=pd.Index(index, name="method"))


def chance_cells(df: pd.DataFrame) -> dict[tuple, str]:
    """{(mode, method, backbone, noise, rate): known reason or ''} of the cells at chance level (``at_chance`` of
    their mean best test accuracy); {} for a frame without the ``best`` and ``classes`` columns."""
    if "best" not in df or "classes" not in df:
        return {}
    cell = ["mode", "method", "backbone", "noise", "rate"]
    reasons = df["chance_reason"] if "chance_reason" in df else pd.Series("", index=df.index)
    grouped = df.assign(chance_reason=reasons.fillna("")).groupby(cell)
    best, classes, reason = grouped["best"].mean(), grouped["classes"].max(), grouped["chance_reason"].max()
    return {key: reason[key] for key in best.index if at_chance(best[key], classes[key])}


def chance_note(df: pd.DataFrame) -> str:
    """The table's footnote on its chance-level cells ('' where there are none)."""
    chance = chance_cells(df)
    if not chance:
        return ""
    known = sorted({f"{row_label(k[0], k[1])}: {why}" for k, why in chance.items() if why})
    return (f"{CHANCE_MARK} training did not leave chance level (mean best test accuracy ≤ 100/C + "
            f"min(50/C, {CHANCE_MARGIN_MAX:g}) points); not ranked." + "".join(f" {line}." for line in known))


def real_noise(df: pd.DataFrame, *, fmt: str) -> pd.DataFrame:
    """Rows backbone, columns mode+method, cells "best / last" (mean over seeds)."""
    means = df.groupby(["backbone", "mode", "method"])[["value", "last"]].mean()
    methods = sorted({(m, k) for m, k in zip(df["mode"], df["method"], strict=True)},
                     key=lambda t: (["lp", "fft", "lp-fft"].index(t[0]) if t[0] in MODE_ORDER else 9,
                                    _row_key(*t)))
    backbones = list(dict.fromkeys(df["backbone"]))
    table = {}
    for m, k in methods:
        col = []
        for b in backbones:
            if (b, m, k) in means.index:
                best, last = means.loc[(b, m, k)]
                col.append(f"{best:.2f} / {last:.2f}")
            else:
                col.append(MISSING)
        table[row_label(m, k)] = col
    return pd.DataFrame(table, index=pd.Index(backbones, name="backbone"))


PAPER_TABLES = {"cifar100": "table1_cifar100", "clothing1m": "clothing1m", "webvision": "webvision"}


def paper_results() -> pd.DataFrame:
    """Every number of the paper's three tables (transcribed from its summary into nlbench/data/paper_results.csv)."""
    with resources.files("nlbench").joinpath("data/paper_results.csv").open() as f:
        return pd.read_csv(f)


def paper_value(paper: pd.DataFrame, *, dataset: str, backbone: str, noise: str, rate: float, mode: str,
                method: str, metric: str) -> float:
    """The paper's number for one cell, or NaN where the paper has none (tagged variants included)."""
    table, paper_name = PAPER_TABLES.get(dataset), _method_meta(method).get("paper_name")
    if table is None or paper_name is None:
        return math.nan
    if table == "table1_cifar100":
        rows = paper[(paper.table == table) & (paper.noise == noise) & np.isclose(paper.rate.fillna(-1), rate)
                     & (paper.metric == "test_acc")]
    else:
        rows = paper[(paper.table == table) & (paper.metric == metric)]
    rows = rows[(rows.backbone == backbone) & (rows["mode"] == MODE_LABEL.get(mode, mode))
                & (rows.method == paper_name)]
    return float(rows.value.iloc[0]) if len(rows) else math.nan


def with_paper(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Add each record's paper value as column ``paper``."""
    paper = paper_results()
    values = [paper_value(paper, dataset=r.dataset, backbone=r.backbone, noise=r.noise, rate=r.rate, mode=r.mode,
                          method=r.method, metric=metric) for r in df.itertuples()]
    return df.assign(paper=values)


def latex_tabular(table: pd.DataFrame) -> str:
    """A booktabs tabular of ``table``. Row and column labels (backbone, method and tag names) go through
    pandas' LaTeX escaper, as ``_ & % # $ { } ~ ^ \\`` would stop pdflatex; cells hold the markup we made
    (``\\textbf``, ``$\\pm$``). The index name ('method', 'backbone') heads the label column in the last
    header row; as an index name pandas would give it a row of its own, empty but for it."""
    table = table.replace(MISSING, "--")
    table.columns = table.columns.set_names([None] * (table.columns.nlevels - 1) + [table.index.name])
    styler = (table.style
              .format_index(escape="latex", axis=0)
              .format_index(escape="latex", axis=1)
              .hide(names=True, axis="index"))
    return styler.to_latex(hrules=True, multicol_align="c", column_format="l" + "c" * table.shape[1])


def render(records: list[dict], *, layout: str = "table1", metric: str = "test_acc_best",
           fmt: str = "markdown", realized: bool = False, paper: bool = False) -> str:
    """The leaderboard of ``records`` as markdown, LaTeX (booktabs) or CSV text; ``paper`` adds the paper's
    number of each cell in parentheses (where the paper has that cell)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if not records:
        raise ConfigError("no finished records to tabulate (run the grid first: nlbench run --grid NAME)")
    return render_frame(records_frame(records, metric), layout=layout, metric=metric, fmt=fmt, realized=realized,
                        paper=paper)


def render_frame(df: pd.DataFrame, *, layout: str = "table1", metric: str = "test_acc_best", fmt: str = "markdown",
                 realized: bool = False, paper: bool = False) -> str:
    """``render`` of a frame in ``records_frame``'s columns (``nlbench.report.leaderboard`` makes one from the
    tidy frame of ``nlbench.results``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if paper:
        df = with_paper(df, metric)
    if layout == "real":
        table = real_noise(df, fmt=fmt)
    else:
        table = table1(df, fmt=fmt, higher_is_better=metric not in LOWER_IS_BETTER, realized=realized,
                       ranked=metric not in UNRANKED)
    if fmt == "csv":
        flat = table.replace(MISSING, "")  # an empty field: pandas reads it back as NaN
        if isinstance(flat.columns, pd.MultiIndex):
            flat.columns = [" / ".join(c) for c in flat.columns]
        return flat.to_csv()
    if fmt == "latex":
        return latex_tabular(table)
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        single = len(set(flat.columns.get_level_values(0))) == 1
        flat.columns = [c[1] if single else f"{c[0]} · {c[1]}" for c in flat.columns]
    text = flat.to_markdown(colalign=("left",) + ("right",) * flat.shape[1])
    note = chance_note(df) if layout != "real" else ""
    return f"{text}\n\n{note}" if note else text
