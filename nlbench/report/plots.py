"""Pictures of a grid's results: grouped bars of a leaderboard (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

from nlbench.report.tables import (
    METRICS,
    _row_key,
    none_is_clean,
    records_frame,
    row_label,
    setting_labels,
    setting_order,
)


def leaderboard_bars(records: list[dict], path: str | Path, *, metric: str = "test_acc_best") -> Path:
    """Save a PNG with one panel per backbone: noise settings on the x axis, one bar per method row
    (mean over seeds, error bar = std)."""
    import matplotlib  # matplotlib: loaded only for `table --plot`

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = records_frame(records, metric)
    df = df.assign(row=[row_label(m, k) for m, k in zip(df["mode"], df["method"], strict=True)])
    rows = [row_label(m, k)
            for m, k in sorted({(m, k) for m, k in zip(df["mode"], df["method"], strict=True)},
                               key=lambda t: _row_key(*t))]
    backbones = list(dict.fromkeys(df["backbone"]))
    settings = setting_order(zip(df["noise"], df["rate"], strict=True))  # bars grouped by the numbers
    labels = setting_labels(settings, clean=none_is_clean(df))
    size = (max(6.0, 0.4 * len(settings) * len(rows)), 3.6 * len(backbones))
    fig, axes = plt.subplots(len(backbones), 1, figsize=size, squeeze=False)
    width = 0.8 / max(1, len(rows))
    cmap = plt.get_cmap("tab10")
    for ax, backbone in zip(axes[:, 0], backbones, strict=True):
        sub = df[df["backbone"] == backbone]
        stats = sub.groupby(["row", "noise", "rate"])["value"].agg(["mean", "std"])
        for i, row in enumerate(rows):
            xs, means, stds = [], [], []
            for j, setting in enumerate(settings):
                if (row, *setting) in stats.index:
                    xs.append(j + (i - (len(rows) - 1) / 2) * width)
                    means.append(stats.loc[(row, *setting), "mean"])
                    stds.append(stats.loc[(row, *setting), "std"])
            ax.bar(xs, means, width, yerr=[0 if s != s else s for s in stds], label=row, color=cmap(i % 10))
        ax.set_xticks(range(len(settings)), [labels[s] for s in settings])
        ax.set_title(backbone)
        ax.set_ylabel(METRICS[metric])
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=min(len(rows), 5), fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
