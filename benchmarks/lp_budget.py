"""LP budget sweep: the quickstart's LP rows at several LP epoch budgets, over several seeds.

The quickstart counts its LP budget in optimiser steps, not epochs (benchmarks/grids/quickstart.toml):
this script shows what the choice does. For each budget E it writes a grid with the quickstart's
dataset, backbone, [train] table and LP method rows, ``lp_epochs = E``, the given noise settings, runs it
for seeds 0..S-1 on one shared feature cache, and prints the best-by-validation and last-epoch tables.

    python benchmarks/lp_budget.py [--epochs 20 50 100] [--seeds 5] [--noise sym:0.6 sym:0.9] [--results DIR]
                                   [--plot PNG]

``--plot`` also draws test accuracy against the LP budget, one line per method (mean ± std over seeds),
one panel per noise setting and metric. Done cells are skipped, so a second call with ``--plot`` and the
same ``--results`` only draws.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pandas as pd

from nlbench.run.grids import grid_files

LP_METHODS = ["ce", "gce", "elr", "dividemix", "unicon", "cl"]


def grid_text(base: dict, epochs: int, noise: list[tuple[str, float]]) -> str:
    train = {**base.get("train", {}), "lp_epochs": epochs}
    lines = [
        f'description = "quickstart LP rows at lp_epochs = {epochs}"',
        f"datasets = {base['datasets']!r}".replace("'", '"'),
        f"backbones = {base['backbones']!r}".replace("'", '"'),
        "noise = [" + ", ".join(f'{{ model = "{m}", rate = {r} }}' for m, r in noise) + "]",
        "methods = [" + ", ".join(f'{{ method = "{m}", mode = "lp" }}' for m in LP_METHODS) + "]",
        "[train]",
        *(f"{k} = {v}" for k, v in train.items()),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", nargs="+", default=["sym:0.6", "sym:0.9"], help="MODEL:RATE settings")
    parser.add_argument("--results", help="keep grids and records here (default: a temporary folder)")
    parser.add_argument("--plot", help="also save accuracy against LP epochs as this PNG file")
    args = parser.parse_args()
    base = tomllib.loads(grid_files()["quickstart"].read_text())
    noise = [(n.split(":")[0], float(n.split(":")[1])) for n in args.noise]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.results or tmp)
        root.mkdir(parents=True, exist_ok=True)
        for epochs in args.epochs:
            grid = root / f"lp_budget_e{epochs}.toml"
            grid.write_text(grid_text(base, epochs, noise))
            common = ["--grid", str(grid), "--results", str(root / "runs"), "--seeds", str(args.seeds)]
            subprocess.run([sys.executable, "-m", "nlbench", "run", *common, "--cache", str(root / "cache"),
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            for metric in ("test_acc_best", "test_acc_last"):
                subprocess.run([sys.executable, "-m", "nlbench", "table", *common, "--metric", metric], check=True)
                print()
        if args.plot:
            print(f"wrote {plot_budget(root, args.epochs, args.seeds, args.plot)}")


def plot_budget(root: Path, budgets: list[int], seeds: int, path: str) -> Path:
    """Accuracy (mean ± std over seeds) against LP epochs: rows best-by-validation / last epoch, columns
    noise settings, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nlbench.report.tables import method_label, records_frame
    from nlbench.run.grids import expand, load_grid
    from nlbench.run.records import load_records

    metrics = {"test_acc_best": "best-by-validation", "test_acc_last": "last epoch"}
    frames = []
    for epochs in budgets:
        records = load_records(root / "runs", expand(load_grid(str(root / f"lp_budget_e{epochs}.toml")), seeds=seeds))
        for metric in metrics:
            frames.append(records_frame(records, metric).assign(epochs=epochs, metric=metric))
    df = pd.concat(frames)
    df["setting"] = [f"{n} {r:g}" for n, r in zip(df["noise"], df["rate"], strict=True)]
    settings = list(dict.fromkeys(df["setting"]))
    fig, axes = plt.subplots(len(metrics), len(settings), figsize=(4.2 * len(settings), 3.4 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        for j, setting in enumerate(settings):
            ax = axes[i, j]
            sub = df[(df["metric"] == metric) & (df["setting"] == setting)]
            stats = sub.groupby(["method", "epochs"])["value"].agg(["mean", "std"])
            for method in LP_METHODS:
                if method in stats.index.get_level_values(0):
                    row = stats.loc[method]
                    ax.errorbar(row.index, row["mean"], yerr=row["std"], marker="o", capsize=3,
                                label=f"LP {method_label(method)}")
            ax.set_title(f"{setting}, {metrics[metric]}", fontsize=10)
            ax.set_xticks(budgets)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("test accuracy (%)")
            if i == len(metrics) - 1:
                ax.set_xlabel("LP epochs (10 optimiser steps each)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=9)
    fig.suptitle(f"quickstart LP rows against the LP budget, mean ± std over {seeds} seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    out = Path(path)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


if __name__ == "__main__":
    main()
