"""TURN's GMM regularisation measured: ``gmm_reg_covar`` 5e-4 (DivideMix's value) against 1e-6 (scikit-learn's).

TURN has no code, so a choice beneath its "GMM threshold" is shown by measurement (issue 23, point 7). On the
quickstart's data and recipe (digits, EfficientNet-Lite0 at 48 px), under the four noise settings, both GMM
scopes and both regularisations, over seeds, each seed with its own noise draw (``noise_seed = "per-seed"``: the
choice should hold across draws):

- default (selection): each (setting, seed) cell's TURN probe (GCE, 20 epochs, the cell's own Trainer and feature
  cache) is trained once, then every variant's GMM selection and class-balanced D_clean are drawn from it exactly
  as ``TURN.run`` draws them; printed: clean candidates, their precision and recall, |D_clean|, its precision and
  recall (mean ± std over seeds). Minutes on a CPU.
- ``--cells``: the real TURN cells (5 FFT epochs) of every variant, tabulated from their records with the final
  and best test accuracy. About 10 minutes a cell on a loaded 2-core CPU.

    python benchmarks/turn_reg_covar.py --out /tmp/turn_reg [--seeds 3] [--dataset digits|fashion_mnist] [--cells]

Grid, records and feature cache go under --out; a second run reuses finished cells and cached features.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import nlbench
from nlbench.datasets import load_dataset
from nlbench.engine.losses import GCELoss
from nlbench.engine.selection import balanced_subset
from nlbench.methods.turn import TURN
from nlbench.run.build import build_trainer
from nlbench.run.grids import expand, load_grid
from nlbench.run.labels import noisy_labels

VARIANTS = {  # tag → TURN params beyond the defaults (per_class scope); each floor named, whatever the default
    None: {"gmm_reg_covar": 5e-4},
    "r1e-6": {"gmm_reg_covar": 1e-6},
    "global": {"gmm_scope": "global", "gmm_reg_covar": 5e-4},
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


NOISE = ["sym:0.6", "sym:0.9", "asym:0.4", "inst:0.4"]


def grid_text(dataset: str, seeds: int, noise: list[str] = NOISE, scopes: tuple[str, ...] = ("per_class", "global")
              ) -> str:
    recipe = DATASETS[dataset]
    settings = ", ".join(f'{{ model = "{n.split(":")[0]}", rate = {n.split(":")[1]} }}' for n in noise)
    lines = [f'description = "TURN gmm_reg_covar 5e-4 vs 1e-6 on {dataset} (benchmarks/turn_reg_covar.py)"',
             f'datasets = ["{dataset}"]', 'backbones = ["efficientnet_lite0"]', f"seeds = {list(range(seeds))}",
             'noise_seed = "per-seed"',
             f"noise = [{settings}]", "methods = ["]
    for tag, params in VARIANTS.items():
        if params.get("gmm_scope", "per_class") not in scopes:
            continue
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


def scores(mask: np.ndarray, clean: np.ndarray) -> tuple[int, float, float]:
    """(size, precision %, recall %) of a selected mask against the true clean mask (nlbench.run.cell's)."""
    tp = int((mask & clean).sum())
    return int(mask.sum()), 100.0 * tp / max(1, int(mask.sum())), 100.0 * tp / max(1, int(clean.sum()))


def selection(grid: Path, cache: Path) -> pd.DataFrame:
    """Every variant's selection from one probe per (setting, seed): the default variant's cells' probes."""
    rows = []
    for spec in expand(load_grid(str(grid))):
        if spec.method_tag is not None:
            continue
        dataset = load_dataset(spec.dataset, **spec.dataset_options)
        train_labels, val_labels, _ = noisy_labels(spec, dataset, cache)
        clean = np.asarray(train_labels) == dataset.train.labels
        trainer = build_trainer(spec, dataset, cache, labels=train_labels, val_labels=val_labels,
                                test_labels=dataset.test.labels, log=lambda _msg: None)
        torch.manual_seed(spec.seed)
        probe = trainer.linear_probe(GCELoss(0.7), epochs=20, desc="TURN LP")
        for params in VARIANTS.values():
            turn = TURN(lp_epochs=20, fft_epochs=5, **params)
            candidates, losses, fits = turn.select(trainer, probe.model)
            subset = np.zeros(len(clean), dtype=bool)
            subset[balanced_subset(candidates, trainer.labels, trainer.num_classes,
                                   rng=np.random.default_rng(spec.seed), losses=losses,
                                   min_per_class=turn.min_per_class)] = True
            (n_c, p_c, r_c), (n_d, p_d, r_d) = scores(candidates, clean), scores(subset, clean)
            rows.append({"setting": f"{spec.noise} {spec.rate:g}", "scope": turn.gmm_scope,
                         "reg_covar": turn.gmm_reg_covar, "seed": spec.seed, "candidates": n_c,
                         "cand. precision %": p_c, "cand. recall %": r_c, "|D_clean|": n_d,
                         "precision %": p_d, "recall %": r_d,
                         "EM iterations": float(np.mean([f["n_iter"] for f in fits])),
                         "probe test acc.": probe.test_acc_last})
        print(f"  {spec.cell_id}: probe {probe.test_acc_last:.1f} %", flush=True)
    frame = pd.DataFrame(rows)
    values = [c for c in frame.columns if c not in ("setting", "scope", "reg_covar", "seed")]
    stats = frame.groupby(["setting", "scope", "reg_covar"], sort=False)[values].agg(["mean", "std"])
    return pd.DataFrame({
        name: [f"{m:.1f} ± {s:.1f}" for m, s in zip(stats[(name, "mean")], stats[(name, "std")], strict=True)]
        for name in values}, index=stats.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the grid, records and feature cache")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--cells", action="store_true", help="run the real TURN cells (5 FFT epochs) instead")
    parser.add_argument("--noise", nargs="+", default=NOISE, metavar="MODEL:RATE", help="noise settings")
    parser.add_argument("--scopes", nargs="+", default=["per_class", "global"], choices=["per_class", "global"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = args.out / f"turn_reg_{args.dataset}{'_cells' if args.cells else ''}.toml"
    grid.write_text(grid_text(args.dataset, args.seeds, args.noise, tuple(args.scopes)))
    start = time.time()
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    if not args.cells:
        torch.set_num_threads(2)
        table = selection(grid, args.out / "cache")
        print(f"\n{args.dataset}, lite0, TURN's GCE probe (20 epochs) and selection, mean ± std over {args.seeds} "
              f"seeds (each its own noise draw); {time.time() - start:.0f} s\n")
        print(table.to_markdown())
        return
    subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", str(grid), "--results", str(args.out / "runs"),
                    "--cache", str(args.out / "cache"), "--no-progress"], check=True)
    print(f"\n{args.dataset}, lite0, TURN (GCE probe 20 epochs, 5 FFT epochs), mean ± std over {args.seeds} seeds "
          f"(each its own noise draw); {time.time() - start:.0f} s\n")
    print(summary(grid, args.out / "runs").to_markdown())


if __name__ == "__main__":
    main()
