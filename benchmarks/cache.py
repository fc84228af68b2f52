"""Feature-cache benchmark: the quickstart's LP cells without and with a warm feature cache.

Cold: every LP cell starts from an empty cache, so each one runs the backbone over all splits (what
a benchmark without a cache does). Warm: the cache is filled once, then every LP cell reads it.
Prints both wall times and their ratio (target ≥ 20×, shared/spec/performance.md).

    python benchmarks/cache.py [--grid quickstart] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from nlbench.grids import expand, load_grid
from nlbench.runner import run_cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quickstart")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    cells = [c for c in expand(load_grid(args.grid)) if c.mode == "lp"]
    quiet = lambda s: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        for i, cell in enumerate(cells):
            run_cell(cell, tmp / "cold-results", tmp / f"cold-cache-{i}", log=quiet)
        cold = time.perf_counter() - start

        run_cell(cells[0], tmp / "fill-results", tmp / "warm-cache", log=quiet)  # fill once (not timed)
        start = time.perf_counter()
        forwards = 0
        for cell in cells:
            record = run_cell(cell, tmp / "warm-results", tmp / "warm-cache", log=quiet)
            forwards += record["cost"]["backbone_forward_images"]
        warm = time.perf_counter() - start
    figures = {
        "grid": args.grid, "lp_cells": len(cells), "cold_s": round(cold, 2), "warm_s": round(warm, 2),
        "ratio": round(cold / warm, 1), "warm_backbone_forward_images": forwards,
        "torch_threads": torch.get_num_threads(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"{len(cells)} LP cells of {args.grid}: cold cache {cold:.2f} s, warm cache {warm:.2f} s, "
          f"ratio {cold / warm:.1f}x; backbone forwards with a warm cache: {forwards}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
