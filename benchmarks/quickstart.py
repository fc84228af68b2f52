"""Quickstart benchmark: wall time and peak memory of `nlbench run --grid quickstart` from scratch.

Runs the whole grid in this process with an empty results folder and feature cache, as a new user's
first run does (targets: ≤ 5 minutes and ≤ 4 GiB on 2 CPU cores, shared/spec/performance.md).

    python benchmarks/quickstart.py [--grid quickstart]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from nlbench.grids import load_grid
from nlbench.runner import run_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quickstart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        records = run_grid(load_grid(args.grid), results=Path(tmp) / "runs", cache=Path(tmp) / "cache",
                           log=lambda s: None)
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.grid}: {len(records)} cells in {wall:.1f} s ({wall / 60:.2f} min); peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
