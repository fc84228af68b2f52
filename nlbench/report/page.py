"""``nlbench report``: one static HTML page of a grid's records — leaderboard, paper delta, ranks with a
critical-difference diagram, memorisation, selection, noise, cost and feature distortion.

Everything comes from the records (and, for feature distortion, the test features fine-tuning cells
save when the grid sets ``[train] save_finetuned_features = true``). The page is ``<out>/index.html``
with its figures under ``<out>/figures/`` (PNG shown, PDF beside it), no script and no network, so it
opens from a file URL. Several seeds → mean ± std over seeds in every table.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from nlbench import __version__
from nlbench.atomic import atomic_write_bytes
from nlbench.engine.distortion import knn_accuracy, load_test_features, tsne_embedding
from nlbench.errors import ConfigError
from nlbench.report import figures as figs
from nlbench.report.stats import friedman_nemenyi, score_matrix
from nlbench.report.tables import (
    CHANCE_MARK,
    NOISE_ORDER,
    _row_key,
    at_chance,
    chance_reason,
    chance_threshold,
    method_key,
    nominal_rate,
    none_is_clean,
    paper_results,
    paper_value,
    record_classes,
    row_label,
    setting_label,
)
from nlbench.run.frames import pair_disagreement_shares

DELTA_SCALE = 10.0  # accuracy points at which a delta's colour saturates
MEMORISATION_SCALE = 20.0


@dataclass
class Cell:
    text: str
    style: str = ""
    title: str = ""


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    corner: str = ""


@dataclass
class Section:
    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)  # HTML (escaped by the builder)
    tables: list[Table] = field(default_factory=list)
    figures: list[figs.FigureFiles] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- data
def report_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: row label (mode + method), backbone, setting, block, seed, best/last accuracy,
    wall time and the record itself."""
    if not records:
        raise ConfigError("no finished records to report (run the grid first: nlbench run --grid NAME)")
    rows = []
    for r in records:
        key = method_key(r)
        rows.append({
            "mode": r["mode"], "method": key, "row": row_label(r["mode"], key), "dataset": r["dataset"],
            "backbone": r["backbone"], "noise": r["noise"], "rate": nominal_rate(r["noise"], r["rate"]),
            "setting": "", "realized": _number((r.get("noise_audit") or {}).get("realized_rate")), "seed": r["seed"],
            "best": _number(r.get("test_acc_best")), "last": _number(r.get("test_acc_last")),
            "wall_s": _number((r.get("cost") or {}).get("wall_s")), "record": r,
        })
    df = pd.DataFrame(rows)
    # Model 'none' is headed "clean" where every such run trained on the clean labels, as `nlbench table` heads it.
    clean = none_is_clean(df)
    df["setting"] = [setting_label(n, r, clean=clean) for n, r in zip(df["noise"], df["rate"], strict=True)]
    many_datasets, many_backbones = df["dataset"].nunique() > 1, df["backbone"].nunique() > 1
    df["column"] = [" · ".join([*([d] if many_datasets else []), *([b] if many_backbones else []), s])
                    for d, b, s in zip(df["dataset"], df["backbone"], df["setting"], strict=True)]
    df["block"] = df["column"]
    return df


def _number(value) -> float:
    return math.nan if value is None else float(value)


def row_order(df: pd.DataFrame) -> list[str]:
    pairs = sorted({(m, k) for m, k in zip(df["mode"], df["method"], strict=True)}, key=lambda t: _row_key(*t))
    return [row_label(m, k) for m, k in pairs]


def column_order(df: pd.DataFrame) -> list[str]:
    def key(c):
        first = df[df["column"] == c].iloc[0]
        noise = NOISE_ORDER.index(first["noise"]) if first["noise"] in NOISE_ORDER else 9
        return (first["dataset"], first["backbone"], noise, first["rate"])

    return sorted(df["column"].unique(), key=key)


def mean_std(values: pd.Series) -> tuple[float, float, int]:
    values = values.dropna()
    if values.empty:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std()) if len(values) > 1 else math.nan, len(values)


def fmt_mean_std(mean: float, std: float, n: int, digits: int = 2) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    if n > 1 and not math.isnan(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"


def _background(value: float, scale: float, cmap: str) -> str:
    import matplotlib  # matplotlib: loaded only when a figure is drawn

    if math.isnan(value):
        return ""
    norm = max(-1.0, min(1.0, value / scale)) * 0.5 + 0.5
    rgba = matplotlib.colormaps[cmap](0.15 + 0.7 * norm)  # avoid the darkest ends, where text is unreadable
    return f"background:{matplotlib.colors.to_hex(rgba)}"


def pivot_table(df: pd.DataFrame, value: Callable[[pd.DataFrame], Cell], caption: str, *,
                rows: list[str] | None = None, columns: list[str] | None = None, corner: str = "method") -> Table:
    """A rows × columns table (method rows × settings by default) whose cell is ``value`` of that cell's
    records (all seeds)."""
    columns = column_order(df) if columns is None else columns
    body = []
    for row in row_order(df) if rows is None else rows:
        cells = []
        for column in columns:
            sub = df[(df["row"] == row) & (df["column"] == column)]
            cells.append(value(sub) if len(sub) else Cell("–", title="not run"))
        body.append((row, cells))
    return Table(caption=caption, columns=columns, rows=body, corner=corner)


# ------------------------------------------------------------------------------------------ sections
def leaderboard_section(df: pd.DataFrame) -> Section:
    def cell(sub, metric):
        text = fmt_mean_std(*mean_std(sub[metric]))
        first = sub["record"].iloc[0]
        classes = record_classes(first)
        if at_chance(float(sub["best"].mean()), classes):  # a finding, not a number
            config = first.get("config") or {}
            why = chance_reason(first["mode"], method_key(first), config.get("method_params") or {},
                                config.get("train") or {})
            return Cell(text + CHANCE_MARK, style="color:#888",
                        title=f"training did not leave chance level (best ≤ {chance_threshold(classes):.1f} %)"
                              + (f": {why}" if why else ""))
        return Cell(text)

    seeds = df["seed"].nunique()
    return Section("leaderboard", "Leaderboard", [
        f"Test accuracy (%) at the best validation epoch and at the last epoch; mean ± std over "
        f"{seeds} seed(s) where a cell has more than one. {CHANCE_MARK} (grey): training did not leave chance "
        f"level (mean best ≤ 100/C + min(50/C, 5) points; the tooltip gives the cause where known)."],
        tables=[pivot_table(df, lambda s: cell(s, "best"), "test accuracy (%) at the best validation epoch"),
                pivot_table(df, lambda s: cell(s, "last"), "test accuracy (%) at the last epoch")])


def paper_delta_section(df: pd.DataFrame) -> Section:
    paper = paper_results()
    values = [paper_value(paper, dataset=r.dataset, backbone=r.backbone, noise=r.noise, rate=r.rate, mode=r.mode,
                          method=r.method, metric="test_acc_best") for r in df.itertuples()]
    df = df.assign(paper=values)
    section = Section("paper", "Distance from the paper")
    if df["paper"].isna().all():
        datasets = ", ".join(sorted(df["dataset"].unique()))
        section.paragraphs.append(
            f"The paper (Ahn et al., IJCAI 2024) reports no number for any cell of this grid (dataset(s): "
            f"{html.escape(datasets)}; its tables cover CIFAR-100, Clothing1M and WebVision), so there is no "
            f"delta to show.")
        return section

    def cell(sub):
        mean, std, n = mean_std(sub["best"])
        ours = fmt_mean_std(mean, std, n)
        ref = sub["paper"].iloc[0]
        if math.isnan(ref):
            return Cell(f"no paper number<br><small>ours {ours}</small>", style="color:#777",
                        title="the paper has no number for this cell")
        delta = mean - ref
        return Cell(f"{delta:+.2f}<br><small>{ours} vs {ref:.2f}</small>",
                    style=_background(delta, DELTA_SCALE, "RdYlGn"), title=f"ours − paper = {delta:+.2f}")

    section.paragraphs.append(
        "Ours − paper per cell, in accuracy points (test accuracy at the best validation epoch against the "
        "paper's number); below it our mean ± std over seeds and the paper's value. Green: above the paper, "
        f"red: below; the colour saturates at ±{DELTA_SCALE:g} points.")
    section.tables.append(pivot_table(df, cell, "ours − paper (accuracy points)"))
    return section


def ranks_section(df: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("ranks", "Ranks across settings")
    frame = df[["block", "row", "best"]].rename(columns={"row": "method"})
    matrix, incomplete = score_matrix(frame, value="best")
    matrix = matrix.reindex(index=[c for c in column_order(df) if c in matrix.index])
    test = friedman_nemenyi(matrix)
    section.paragraphs.append(
        "Each setting (a column of the leaderboard) is a block; a method's score in it is its mean test "
        "accuracy over seeds, ranked within the block (1 = best, ties share the average rank). The Friedman "
        "test (SciPy, tie-corrected) asks whether the methods' ranks differ at all; Nemenyi's post-hoc test "
        "(scikit-posthocs) joins in the diagram the methods it cannot tell apart (Demšar, JMLR 2006).")
    if incomplete:
        section.paragraphs.append("Left out (a method has no record there): " + html.escape(", ".join(incomplete)))
    if test.note:
        section.paragraphs.append(f"No test: {html.escape(test.note)}.")
    else:
        verdict = "differ" if test.p_value < test.alpha else "do not differ significantly"
        section.paragraphs.append(
            f"Friedman χ² = {test.statistic:.3f} over N = {test.blocks} settings and k = {test.methods} methods, "
            f"p = {test.p_value:.3g}: at α = {test.alpha:g} the methods' ranks {verdict}. Nemenyi's critical "
            f"difference is {test.critical_difference:.2f} ranks.")
        section.figures.append(figs.cd_diagram(
            test.ranks, test.pairwise_p, cd=test.critical_difference, alpha=test.alpha, out_dir=out_dir,
            name="critical_difference",
            caption=f"Critical-difference diagram: average rank over {test.blocks} settings (1 = best); methods "
                    f"joined by a bar are not significantly different (Nemenyi, α = {test.alpha:g}); CD: the "
                    f"critical difference."))
    if len(matrix):
        ranks = matrix.rank(axis=1, ascending=False, method="average")
        rows = [(m, [Cell(f"{matrix.loc[b, m]:.2f} ({ranks.loc[b, m]:g})") for b in matrix.index]
                 + [Cell(f"{test.ranks[m]:.2f}", style="font-weight:bold")]) for m in test.ranks.index]
        section.tables.append(Table("mean test accuracy (%) per setting and its rank; last column: average rank",
                                    [*matrix.index, "average rank"], rows))
    return section


def memorisation_section(df: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("memorisation", "Memorisation: best − last")

    def cell(sub):
        gap = sub["best"] - sub["last"]
        mean, std, n = mean_std(gap)
        return Cell(fmt_mean_std(mean, std, n), style=_background(mean, MEMORISATION_SCALE, "PuOr_r"))

    section.paragraphs.append(
        "Test accuracy at the best validation epoch minus test accuracy at the last epoch, in points (mean ± "
        "std over seeds): a method that fits the noisy labels late in training peaks and decays (large gap, "
        "orange); a robust one holds (gap near 0).")
    section.tables.append(pivot_table(df, cell, "best − last (accuracy points)"))
    curves = []
    for r in df.itertuples():
        history = r.record.get("history") or []
        for h in history:
            curves.append({"panel": r.column, "row": r.row, "seed": r.seed,
                           "progress": (h["epoch"] + 1) / len(history), "val_acc": h.get("val_acc"),
                           "test_acc": h.get("test_acc")})
    if curves:
        frame = pd.DataFrame(curves).astype({"val_acc": float, "test_acc": float})
        val = df["record"].iloc[0].get("val_labels", "noisy")
        section.paragraphs.append(
            f"Per-epoch curves of every setting (mean over seeds; x: epoch / epochs of the phase the record's "
            f"history holds, so 100-epoch probes and 3-epoch fine-tuning share an axis). Solid: validation "
            f"accuracy against the {html.escape(val)} validation labels, measured every epoch; markers: test "
            f"accuracy, which records hold at each new best validation epoch and at the last epoch.")
        section.figures.append(figs.accuracy_curves(
            frame, rows=row_order(df), panels=column_order(df), out_dir=out_dir, name="curves",
            caption="Accuracy over training per setting: validation every epoch (solid), test where recorded "
                    "(markers)."))
    return section


def selection_section(df: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("selection", "Clean-sample selection and label noise")
    steps = []
    for r in df.itertuples():
        for i, s in enumerate(r.record.get("selection") or []):
            steps.append({"row": r.row, "setting": r.column, "seed": r.seed, "step": i, "size": s.get("size"),
                          "precision": s.get("precision"), "recall": s.get("recall")})
    if steps:
        frame = pd.DataFrame(steps).astype({"size": float, "precision": float, "recall": float})
        rows = [r for r in row_order(df) if r in set(frame["row"])]
        section.paragraphs.append(
            "Every selecting method logs its clean set at each re-selection (DivideMix/UNICON every epoch after "
            "the warm-up, TURN once before fine-tuning): its size and its precision and recall against the "
            "true clean mask, which the methods never see. Mean ± std over seeds.")
        section.figures.append(figs.selection_curves(
            frame, rows=rows, settings=column_order(df), out_dir=out_dir, name="selection",
            caption="Clean-set size, precision and recall per selection step."))
        last = frame.sort_values("step").groupby(["row", "setting", "seed"]).tail(1)
        last = last.rename(columns={"setting": "column"})

        def cell(sub):
            p, r, n = mean_std(sub["precision"]), mean_std(sub["recall"]), mean_std(sub["size"])
            return Cell(f"{fmt_mean_std(*n, digits=0)}<br><small>P {fmt_mean_std(*p, digits=1)} · "
                        f"R {fmt_mean_std(*r, digits=1)}</small>")

        section.tables.append(pivot_table(last, cell, "last clean set: size, precision (P, %) and recall (R, %)",
                                          rows=rows, columns=column_order(df)))
    else:
        section.paragraphs.append("No method of this grid selects a clean set.")
    pair_disagreement(section, df)
    matrices = []
    audited = df[[r.get("noise_audit") is not None for r in df["record"]]]
    for column in column_order(audited) if len(audited) else []:
        first = audited[audited["column"] == column].sort_values("seed").iloc[0]
        audit = first["record"]["noise_audit"]
        if audit.get("transition") is None:
            continue
        matrices.append((f"{column}\nrealized rate {audit['realized_rate']:.2f} (seed {first['seed']})",
                         np.asarray(audit["transition"], dtype=float)))
    if matrices:
        section.figures.append(figs.transition_heatmaps(
            matrices, out_dir=out_dir, name="transition",
            caption="Noise transition matrix of each setting: P(noisy label | true class) over the training set."))
    return section


def pair_disagreement(section: Section, df: pd.DataFrame) -> None:
    """The two networks of a pair method learn from where they differ: the share of the samples on which their
    predictions disagreed, first and last epoch (the records' ``extra.pair_disagreement``)."""
    pairs = []
    for r in df.itertuples():
        shares = pair_disagreement_shares(r.record)
        if shares:
            pairs.append({"row": r.row, "column": r.column, "seed": r.seed, "first": 100 * shares[0],
                          "last": 100 * shares[-1]})
    if not pairs:
        return
    frame = pd.DataFrame(pairs)
    section.paragraphs.append(
        "Two-network methods (Co-teaching, Co-teaching+, JoCoR, DivideMix, UNICON) learn from their networks' "
        "disagreement: the share of the samples on which the two predictions differed, in the first and the last "
        "epoch, mean ± std over seeds. Near 0 the pair has become one network (docs/fidelity.md).")
    section.tables.append(pivot_table(
        frame, lambda sub: Cell(f"{fmt_mean_std(*mean_std(sub['first']), digits=1)} → "
                                f"{fmt_mean_std(*mean_std(sub['last']), digits=1)}"),
        "pair disagreement (%), first → last epoch", rows=[r for r in row_order(df) if r in set(frame["row"])],
        columns=column_order(df)))


def pareto_front(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (at most the cost and at least the accuracy,
    strictly better in one)."""
    cost, acc = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    front = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        front[i] = not dominated.any()
    return front


def cost_section(df: pd.DataFrame, out_dir: Path) -> Section:
    section = Section("cost", "Cost")
    gpu = any((r.get("env") or {}).get("cuda") for r in df["record"])
    scale, unit = (1 / 3600.0, "GPU-hours per cell") if gpu else (1.0, "wall seconds per cell")
    df = df.assign(cost=df["wall_s"] * scale,
                   forward=[float((r.get("cost") or {}).get("backbone_forward_images", math.nan))
                            for r in df["record"]],
                   backward=[float((r.get("cost") or {}).get("backbone_backward_images", math.nan))
                             for r in df["record"]])
    points, table_rows = [], []
    for row in row_order(df):
        sub = df[df["row"] == row]
        # Per seed: mean over the settings; then mean ± std over seeds.
        per_seed = sub.groupby("seed")[["cost", "best"]].mean()
        cost, cost_std, n = mean_std(per_seed["cost"])
        acc, acc_std, _ = mean_std(per_seed["best"])
        points.append({"row": row, "cost": cost, "cost_std": 0.0 if math.isnan(cost_std) else cost_std,
                       "acc": acc, "acc_std": 0.0 if math.isnan(acc_std) else acc_std})
        table_rows.append((row, [Cell(fmt_mean_std(acc, acc_std, n)), Cell(fmt_mean_std(cost, cost_std, n, 3)),
                                 Cell(f"{sub['forward'].mean():,.0f}"), Cell(f"{sub['backward'].mean():,.0f}")]))
    frame = pd.DataFrame(points)
    frame["pareto"] = pareto_front(frame["cost"], frame["acc"])
    for (_, cells), on_front in zip(table_rows, frame["pareto"], strict=True):
        cells.append(Cell("yes" if on_front else "", style="font-weight:bold" if on_front else ""))
    section.paragraphs.append(
        f"Accuracy (test at the best validation epoch, mean over settings) against cost ({unit}"
        f"{'' if gpu else '; the records come from a machine without a GPU'}), mean ± std over seeds. A "
        "feature-cache fill is paid by the first cell that needs it, so LP cells after it cost little. The "
        "Pareto front holds the rows no other row beats on both accuracy and cost.")
    section.tables.append(Table(f"accuracy and cost per method row ({unit})",
                                ["test acc (%)", unit, "backbone forward images", "backbone backward images",
                                 "Pareto front"], table_rows))
    section.figures.append(figs.cost_pareto(frame, cost_label=unit, out_dir=out_dir, name="cost",
                                            caption=f"Accuracy against {unit}; ringed: the Pareto front."))
    return section


def distortion_section(df: pd.DataFrame, results: Path, out_dir: Path) -> Section:
    section = Section("distortion", "Feature distortion")
    found = []
    for r in df[df["mode"].isin(["fft", "lp-fft"])].itertuples():
        path = Path(results) / r.record["grid"] / "features" / f"{r.record['cell_id']}.npz"
        features = load_test_features(path)
        if features is not None and features.config_hash == r.record.get("config_hash"):
            found.append((r, features))
    if not found:
        section.paragraphs.append(
            "No fine-tuning cell of this grid saved its test features. Set <code>save_finetuned_features = "
            "true</code> under <code>[train]</code> in the grid to have each full fine-tuning cell save them "
            "(one extra pass over the test split) and rerun.")
        return section
    section.paragraphs.append(
        "As in the paper's Fig. 2: test-set features of the pre-trained backbone (from the feature cache) and "
        "of the backbone after full fine-tuning on noisy labels. k-NN accuracy (k = 10, cosine, 5-fold "
        "out-of-fold) of the clean test labels measures how well the features keep the classes apart; a drop "
        "after fine-tuning is distortion by the noisy labels. Mean ± std over seeds.")
    scores, before_scores = [], {}
    for r, features in found:
        # Cells of one backbone save the same pre-trained features (the feature cache's): score each set once.
        before_key = hashlib.sha256(np.ascontiguousarray(features.before).tobytes()).hexdigest()
        if before_key not in before_scores:
            before_scores[before_key] = knn_accuracy(features.before, features.labels)
        scores.append({"row": r.row, "column": r.column, "seed": r.seed, "before": before_scores[before_key],
                       "after": knn_accuracy(features.after, features.labels)})
    frame = pd.DataFrame(scores)

    def cell(sub):
        before, after = mean_std(sub["before"]), mean_std(sub["after"])
        change = float((sub["after"] - sub["before"]).mean())
        return Cell(f"{fmt_mean_std(*before, digits=1)} → {fmt_mean_std(*after, digits=1)}",
                    style=_background(change, DELTA_SCALE, "RdYlGn"), title=f"after − before = {change:+.2f}")

    section.tables.append(pivot_table(
        frame, cell, "k-NN accuracy (%) of clean test labels: pre-trained → fine-tuned features",
        rows=[r for r in row_order(df) if r in set(frame["row"])],
        columns=[c for c in column_order(df) if c in set(frame["column"])]))
    # t-SNE of one backbone at the lowest and highest rate of one noise model (sym where there is one), the
    # lowest seed of each method; the pre-trained map is the same for every method of that backbone.
    first = min(found, key=lambda t: (t[0].dataset, t[0].backbone))[0]
    same = [(r, f) for r, f in found if (r.dataset, r.backbone) == (first.dataset, first.backbone)]
    rates_of = {n: {r.rate for r, _ in same if r.noise == n} for n in {r.noise for r, _ in same}}
    models = sorted(rates_of, key=lambda n: (n != "sym", -len(rates_of[n]), n))
    same = [(r, f) for r, f in same if r.noise == models[0]]
    rates = sorted({r.rate for r, _ in same})
    chosen_rates = [rates[0]] + ([rates[-1]] if rates[-1] != rates[0] else [])
    panels = []
    before_map = None
    for rate in chosen_rates:
        at_rate = [(r, f) for r, f in same if r.rate == rate]
        seed = min(r.seed for r, _ in at_rate)
        rows = {r.row: (r, f) for r, f in at_rate if r.seed == seed}
        if before_map is None:
            f0 = next(iter(rows.values()))[1]
            coords, index = tsne_embedding(f0.before)
            before_map = ("pre-trained", coords, f0.labels[index])
        row_panels = [before_map]
        for label in [r for r in row_order(df) if r in rows]:
            r, f = rows[label]
            coords, index = tsne_embedding(f.after)
            row_panels.append((f"{label}, {r.setting}", coords, f.labels[index]))
        panels.append(row_panels)
    section.figures.append(figs.tsne_grid(
        panels, out_dir=out_dir, name="tsne",
        caption=f"t-SNE of {first.backbone}'s {first.dataset} test features, coloured by clean label: pre-trained "
                f"(left) and after fine-tuning under {models[0]} noise at rate "
                f"{' and '.join(f'{x:g}' for x in chosen_rates)} (one row each; lowest seed)."))
    return section


# ---------------------------------------------------------------------------------------------- page
def build_report(grid, records: list[dict], *, results: str | Path, out: str | Path) -> Path:
    """Write ``<out>/index.html`` and its figures for ``records`` of ``grid``; returns the page's path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a file; expected a folder (created if missing)")
    df = report_frame(records)
    sections = [leaderboard_section(df), paper_delta_section(df), ranks_section(df, out),
                memorisation_section(df, out), selection_section(df, out), cost_section(df, out),
                distortion_section(df, Path(results), out)]
    env = jinja2.Environment(loader=jinja2.PackageLoader("nlbench", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    commits = sorted({str((r.get("env") or {}).get("git_commit"))[:10] for r in records})
    page = env.get_template("report.html.j2").render(
        grid=grid.name, description=grid.raw.get("description", ""), sections=sections,
        cells=len(records), seeds=sorted(df["seed"].unique().tolist()),
        datasets=", ".join(df["dataset"].unique()), backbones=", ".join(df["backbone"].unique()),
        generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__, commits=", ".join(commits))
    index = out / "index.html"
    atomic_write_bytes(index, page.encode())
    return index
