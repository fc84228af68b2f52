"""The report's figures (matplotlib, no display): each saved as a PNG for the page and a PDF for a paper.

Every function takes plain data (pandas frames, arrays) already averaged by ``nlbench.report.page`` and
returns the files it wrote; none reads records.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nlbench.atomic import atomic_write_bytes

PNG_DPI = 100


@dataclass(frozen=True)
class FigureFiles:
    png: str  # path relative to the page
    pdf: str
    caption: str


def _pyplot():
    import matplotlib  # matplotlib: loaded only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, out_dir: Path, name: str, caption: str) -> FigureFiles:
    """Write ``fig`` as ``figures/<name>.png`` and ``.pdf`` under ``out_dir``, each atomically."""
    plt = _pyplot()
    files = []
    for ext, kwargs in (("png", {"dpi": PNG_DPI}), ("pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=ext, bbox_inches="tight", metadata={"Creator": "nlbench report"}
                    if ext == "pdf" else None, **kwargs)
        relative = f"figures/{name}.{ext}"
        atomic_write_bytes(Path(out_dir) / relative, buffer.getvalue())
        files.append(relative)
    plt.close(fig)
    return FigureFiles(png=files[0], pdf=files[1], caption=caption)


def colours(labels: list[str]) -> dict[str, tuple]:
    """One stable colour per method row (tab10, then tab20 for longer lists)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def cd_diagram(ranks: pd.Series, pairwise_p: pd.DataFrame, *, cd: float, alpha: float, out_dir: Path, name: str,
               caption: str) -> FigureFiles:
    """Critical-difference diagram (scikit-posthocs): average ranks on the axis, methods that Nemenyi's
    test cannot tell apart at ``alpha`` joined by a bar."""
    import scikit_posthocs as sp  # scikit-posthocs (scipy): heavy, for the rank diagram only

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(ranks) + 1.2))
    sp.critical_difference_diagram(ranks, pairwise_p, cd=cd, alpha=alpha, ax=ax,
                                   label_fmt_left="{label} ({rank:.2f})", label_fmt_right="({rank:.2f}) {label}",
                                   label_props={"fontsize": 9})
    return save(fig, out_dir, name, caption)


def accuracy_curves(curves: pd.DataFrame, *, rows: list[str], panels: list[str], out_dir: Path, name: str,
                    caption: str) -> FigureFiles:
    """One panel per setting; per method row the validation accuracy of every epoch (solid, mean over seeds)
    and the test accuracy where the record has it (markers, dashed). ``curves`` has columns panel, row,
    progress (fraction of the run), val_acc, test_acc."""
    plt = _pyplot()
    palette = colours(rows)
    cols = min(4, len(panels))
    nrows = int(np.ceil(len(panels) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 2.9 * nrows), squeeze=False, sharey=True)
    for ax, panel in zip(axes.flat, panels, strict=False):
        sub = curves[curves["panel"] == panel]
        for row in rows:
            line = sub[sub["row"] == row].groupby("progress")[["val_acc", "test_acc"]].mean().sort_index()
            if line.empty:
                continue
            ax.plot(line.index, line["val_acc"], color=palette[row], lw=1.3, label=row)
            test = line["test_acc"].dropna()
            ax.plot(test.index, test.values, color=palette[row], lw=0.8, ls="--", marker="o", ms=3)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("fraction of the training run")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
               bbox_to_anchor=(0.5, -0.02 - 0.03 * int(np.ceil(len(labels) / 5))))
    fig.tight_layout()
    return save(fig, out_dir, name, caption)


def selection_curves(selection: pd.DataFrame, *, rows: list[str], settings: list[str], out_dir: Path, name: str,
                     caption: str) -> FigureFiles:
    """Rows: selecting methods; columns: size, precision, recall of the clean set per selection step (mean ±
    std over seeds), one line per setting. ``selection`` has columns row, setting, step, size, precision,
    recall."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator  # matplotlib: loaded only when a figure is drawn

    palette = colours(settings)
    metrics = [("size", "selected samples"), ("precision", "precision (%)"), ("recall", "recall (%)")]
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 2.4 * len(rows) + 0.4), squeeze=False)
    for i, row in enumerate(rows):
        for j, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for setting in settings:
                sub = selection[(selection["row"] == row) & (selection["setting"] == setting)]
                if sub.empty:
                    continue
                stats = sub.groupby("step")[metric].agg(["mean", "std"]).sort_index()
                ax.plot(stats.index, stats["mean"], marker="o" if len(stats) < 3 else None, ms=4,
                        color=palette[setting], label=setting)
                ax.fill_between(stats.index, stats["mean"] - stats["std"].fillna(0),
                                stats["mean"] + stats["std"].fillna(0), color=palette[setting], alpha=0.15)
            ax.set_title(f"{row}: {label}", fontsize=9)
            ax.set_xlabel("selection step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            last_step = selection.loc[selection["row"] == row, "step"].max()
            ax.set_xlim(-0.5, last_step + 0.5)  # a method that selects once is one point at step 0
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out_dir, name, caption)


def transition_heatmaps(matrices: list[tuple[str, np.ndarray]], *, out_dir: Path, name: str,
                        caption: str) -> FigureFiles:
    """One heat map per setting: row = true class, column = noisy label, value = P(noisy | true)."""
    plt = _pyplot()
    cols = min(4, len(matrices))
    nrows = int(np.ceil(len(matrices) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(3.3 * cols, 3.1 * nrows), squeeze=False)
    image = None
    for ax, (title, matrix) in zip(axes.flat, matrices, strict=False):
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("noisy label")
        ax.set_ylabel("true class")
        if len(matrix) <= 20:
            ax.set_xticks(range(len(matrix)))
            ax.set_yticks(range(len(matrix)))
            ax.tick_params(labelsize=6)
    for ax in axes.flat[len(matrices):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="P(noisy label | true class)")
    return save(fig, out_dir, name, caption)


def cost_pareto(points: pd.DataFrame, *, cost_label: str, out_dir: Path, name: str, caption: str) -> FigureFiles:
    """Accuracy against cost, one point per method row (error bars: std over seeds); the Pareto front
    (no other row both cheaper and more accurate) drawn as a step line, its points ringed. ``points`` has
    columns row, cost, cost_std, acc, acc_std, pareto."""
    plt = _pyplot()
    palette = colours(list(points["row"]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for p in points.itertuples():
        ax.errorbar(p.cost, p.acc, xerr=p.cost_std, yerr=p.acc_std, fmt="o", color=palette[p.row], ms=6,
                    capsize=2, label=p.row)
        if p.pareto:
            ax.scatter([p.cost], [p.acc], s=180, facecolors="none", edgecolors="black", lw=1.2, zorder=3)
    front = points[points["pareto"]].sort_values("cost")
    ax.step(front["cost"], front["acc"], where="post", color="black", lw=1, ls=":", label="Pareto front")
    if points["cost"].min() > 0 and points["cost"].max() / points["cost"].min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test accuracy (%), mean over settings")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save(fig, out_dir, name, caption)


def tsne_grid(panels: list[list[tuple[str, np.ndarray, np.ndarray]]], *, out_dir: Path, name: str,
              caption: str) -> FigureFiles:
    """Rows of t-SNE maps; each panel (title, (N, 2) coordinates, labels) coloured by the clean test label."""
    plt = _pyplot()
    cols = max(len(r) for r in panels)
    fig, axes = plt.subplots(len(panels), cols, figsize=(2.9 * cols, 2.9 * len(panels)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for i, row in enumerate(panels):
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(row):
                ax.axis("off")
                continue
            title, coords, labels = row[j]
            ax.scatter(coords[:, 0], coords[:, 1], c=[cmap(int(c) % 10) for c in labels], s=4, alpha=0.8, lw=0)
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return save(fig, out_dir, name, caption)
