"""TURN's GMM regularisation measured: ``gmm_reg_covar`` 5e-4 (DivideMix's value) against 1e-6 (scikit-learn's).

TURN has no code, so a choice beneath its "GMM threshold" is shown by measurement (issue 23, point 7). This runs
real TURN cells (GCE probe of 20 epochs, GMM selection, class-balanced D_clean, 5 FFT epochs) on the quickstart's
data and recipe (digits, EfficientNet-Lite0 at 48 px) under the four noise settings, both GMM scopes and both
regularisations, over seeds, each seed with its own noise draw (``noise_seed = "per-seed"``: the choice should
hold across draws), and prints per setting the mean ± std over seeds of: clean candidates, |D_clean|, D_clean
precision and recall (the record's ``selection``), and the final and best test accuracy.

    python benchmarks/turn_reg_covar.py --out /tmp/turn_reg [--seeds 3] [--dataset digits|fashion_mnist]

Grid, records and feature cache go under --out; a second run reuses finished cells.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

import nlbench

VARIANTS = {  # tag → TURN params beyond the defaults (per_class scope, reg_covar 5e-4)
    None: {},
    "r1e-6": {"gmm_reg_covar": 1e-6},
    "global": {"gmm_scope": "global"},
    "global-r1e-6": {"gmm_scope": "global", "gmm_reg_covar": 1e-6},
}
DATASETS = {
    # The quickstart's recipe (benchmarks/grids/quickstart.toml).
    "digits": {"train": {"input_size": 48, "fft_batch_size": 32, "threads": 2}, "options": {}},
    # fmnist_table1's subsample (benchmarks/grids/fmnist_table1.toml).
    "fashion_mnist": {"train": {"input_size": 32, "fft_batch_size": 32, "threads": 2},
                      "options": {"split_seed": 0, "train_size": 3000, "val_size": 300, "test_size": 1000}},
}


def toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def grid_text(dataset: str, seeds: int) -> str:
    recipe = DATASETS[dataset]
    lines = [f'description = "TURN gmm_reg_covar 5e-4 vs 1e-6 on {dataset} (benchmarks/turn_reg_covar.py)"',
             f'datasets = ["{dataset}"]', 'backbones = ["efficientnet_lite0"]', f"seeds = {list(range(seeds))}",
             'noise_seed = "per-seed"',
             'noise = [{ model = "sym", rate = 0.6 }, { model = "sym", rate = 0.9 }, { model = "asym", rate = 0.4 },'
             ' { model = "inst", rate = 0.4 }]', "methods = ["]
    for tag, params in VARIANTS.items():
        entry = {"method": "turn", "mode": "lp-fft", "params": {"lp_epochs": 20, "fft_epochs": 5, **params}}
        if tag:
            entry["tag"] = tag
        lines.append(f"    {toml_value(entry)},")
    lines.append("]")
    if recipe["options"]:
        lines += [f"[dataset_options.{dataset}]"] + [f"{k} = {toml_value(v)}" for k, v in recipe["options"].items()]
    lines += ["[train]"] + [f"{k} = {toml_value(v)}" for k, v in recipe["train"].items()]
    return "\n".join(lines) + "\n"


def summary(grid: Path, runs: Path) -> pd.DataFrame:
    frame = nlbench.results(str(grid), str(runs))
    candidates = {}
    for path in runs.rglob("records/*.json"):
        record = json.loads(path.read_text())
        candidates[record["cell_id"]] = record["extra"]["clean_candidates"]
    frame["candidates"] = frame["cell_id"].map(candidates)
    frame["scope"] = frame["params.gmm_scope"]
    frame["reg_covar"] = frame["params.gmm_reg_covar"]
    frame["setting"] = frame["noise"] + " " + frame["rate"].map("{:g}".format)
    columns = {"candidates": "candidates", "selection_size": "|D_clean|", "selection_precision": "precision %",
               "selection_recall": "recall %", "test_acc_last": "test acc. last", "test_acc_best": "test acc. best"}
    stats = frame.groupby(["setting", "scope", "reg_covar"], sort=False)[list(columns)].agg(["mean", "std"])
    table = pd.DataFrame({
        name: [f"{m:.1f} ± {s:.1f}" for m, s in zip(stats[(col, "mean")], stats[(col, "std")], strict=True)]
        for col, name in columns.items()}, index=stats.index)
    table["seeds"] = frame.groupby(["setting", "scope", "reg_covar"], sort=False).size().values
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the grid, records and feature cache")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = args.out / f"turn_reg_{args.dataset}.toml"
    grid.write_text(grid_text(args.dataset, args.seeds))
    start = time.time()
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", str(grid), "--results", str(args.out / "runs"),
                    "--cache", str(args.out / "cache"), "--no-progress"], check=True)
    print(f"\n{args.dataset}, lite0, TURN (GCE probe 20 epochs, 5 FFT epochs), mean ± std over {args.seeds} seeds "
          f"(each its own noise draw); {time.time() - start:.0f} s\n")
    print(summary(grid, args.out / "runs").to_markdown())


if __name__ == "__main__":
    main()
