"""Feature-cache benchmark: the quickstart's LP cells without and with a warm feature cache.

Cold: every LP cell starts from an empty cache, so each one runs the backbone over all splits (what
a benchmark without a cache does). Warm: the cache is filled once, then every LP cell reads it.
Prints both wall times and their ratio (target ≥ 20×, docs/performance.md).

    python benchmarks/cache.py [--grid quickstart] [--input-size PX] [--noise MODEL:RATE ...] [--json OUT]

``--input-size`` overrides the grid's input resolution (the paper's backbones take 224 px; the quickstart
upsamples digits to 48), ``--noise`` keeps only the LP cells of those noise settings.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quickstart")
    parser.add_argument("--input-size", type=int, help="input resolution in pixels (default: the grid's)")
    parser.add_argument("--noise", nargs="+", help="only these noise settings, as MODEL:RATE (default: all)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    cells = [c for c in expand(load_grid(args.grid)) if c.mode == "lp"]
    if args.noise:
        wanted = {(n.split(":")[0], float(n.split(":")[1])) for n in args.noise}
        cells = [c for c in cells if (c.noise, c.rate) in wanted]
    if args.input_size:
        cells = [replace(c, train={**c.train, "input_size": args.input_size}) for c in cells]
    if not cells:
        parser.error("no LP cell left to measure")
    quiet = lambda s: None  # noqa: E731
    cold_s: dict[str, float] = {}
    warm_s: dict[str, float] = {}
    forwards = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, cell in enumerate(cells):  # every cell on an empty cache: its own backbone passes
            start = time.perf_counter()
            run_cell(cell, tmp / "cold-results", tmp / f"cold-cache-{i}", log=quiet)
            cold_s[cell.method] = cold_s.get(cell.method, 0.0) + time.perf_counter() - start
        for cell in cells:  # fill the shared cache with every view any cell needs (not timed)
            run_cell(cell, tmp / "fill-results", tmp / "warm-cache", log=quiet)
        for cell in cells:
            start = time.perf_counter()
            record = run_cell(cell, tmp / "warm-results", tmp / "warm-cache", log=quiet)
            warm_s[cell.method] = warm_s.get(cell.method, 0.0) + time.perf_counter() - start
            forwards += record["cost"]["backbone_forward_images"]
    cold, warm = sum(cold_s.values()), sum(warm_s.values())
    figures = {
        "grid": args.grid, "input_size": cells[0].train_config.input_size, "lp_cells": len(cells),
        "cold_s": round(cold, 2), "warm_s": round(warm, 2),
        "ratio": round(cold / warm, 1), "warm_backbone_forward_images": forwards,
        "per_method": {m: {"cold_s": round(cold_s[m], 2), "warm_s": round(warm_s[m], 2),
                           "ratio": round(cold_s[m] / warm_s[m], 1)} for m in cold_s},
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"{len(cells)} LP cells of {args.grid} at {figures['input_size']} px: cold cache {cold:.2f} s, "
          f"warm cache {warm:.2f} s, ratio {cold / warm:.1f}x; backbone forwards with a warm cache: {forwards}")
    for method, row in figures["per_method"].items():
        print(f"  {method:<10} cold {row['cold_s']:6.2f} s  warm {row['warm_s']:6.2f} s  ratio {row['ratio']:5.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
