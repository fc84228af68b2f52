"""Quickstart benchmark: wall time and peak memory of `nlbench run --grid quickstart` from scratch.

Runs the real command in a child process with an empty results folder and feature cache, as a new
user's first run does, and prints its output followed by the figures (targets: ≤ 5 minutes and
≤ 4 GiB on 2 CPU cores, docs/performance.md). Peak memory is the child's maximum resident set.

    python benchmarks/quickstart.py [--grid quickstart] [--results DIR]

``--results DIR`` keeps the run records there (it must not hold records of the grid yet) for further
tables, e.g. ``nlbench table --grid quickstart --results DIR --metric test_acc_last``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quickstart")
    parser.add_argument("--results", help="keep the run records in this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NLBENCH_CACHE": os.path.join(tmp, "cache")}
        results = args.results or os.path.join(tmp, "runs")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", args.grid, "--results",
                               results], env=env, stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\n{args.grid}: exit {done.returncode}, {wall:.1f} s ({wall / 60:.2f} min) wall; "
          f"peak RSS {peak:.0f} MiB; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
