"""LP budget sweep: the quickstart's LP rows at several LP epoch budgets, over several seeds.

The quickstart counts its LP budget in optimiser steps, not epochs (benchmarks/grids/quickstart.toml):
this script shows what the choice does. For each budget E it writes a grid with the quickstart's
dataset, backbone, [train] table and LP method rows, ``lp_epochs = E``, the given noise settings, runs it
for seeds 0..S-1 on one shared feature cache, and prints the best-by-validation and last-epoch tables.

    python benchmarks/lp_budget.py [--epochs 20 50 100] [--seeds 5] [--noise sym:0.6 sym:0.9] [--results DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

from nlbench.grids import grid_files

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
            subprocess.run([sys.executable, "-m", "nlbench.cli", "run", *common, "--cache", str(root / "cache"),
                            "--no-progress"], check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            for metric in ("test_acc_best", "test_acc_last"):
                subprocess.run([sys.executable, "-m", "nlbench.cli", "table", *common, "--metric", metric], check=True)
                print()


if __name__ == "__main__":
    main()
