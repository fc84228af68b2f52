"""How long the command line takes to answer, and whether it loads torch and timm to do it.

Times each command as a user runs it (the ``nlbench`` console script in a child process, wall clock from
start to exit, as hyperfine does): ``--help``, ``list methods``, ``table``, ``status``, ``report`` and
``run --dry-run`` on the quickstart grid, with a results folder holding one record per quickstart cell
(numbers made up, written by nlbench's own record writer: no cell is trained). The commands run in the
order listed, starting with an empty grid memo; each runs once (``first s``: for ``table``, the first call
after a code change), then ``--runs`` more times (``median s``, ``min s``); one more run under an ``atexit``
probe says whether torch and timm were imported.

``--baseline TREE`` measures another source tree the same way, by ``PYTHONPATH=TREE`` (e.g. a worktree of an
older commit: ``git worktree add /tmp/cli_before 549d34c``), beside this checkout. ``--write`` puts the
table into benchmarks/README.md (section "CLI latency"), replacing the one there.

    python benchmarks/cli_latency.py --runs 7 --baseline /tmp/cli_before --write
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "benchmarks" / "README.md"
SECTION = "## CLI latency"
MACHINE = "2-core AMD EPYC CPU VM, 24 GiB, no GPU"

# Written by the tree under test, so that the records carry that tree's config hashes.
WRITE_RECORDS = """
import sys
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import Cost, NoiseAudit, Record, cell_fields, record_path, write_record
results = sys.argv[1]
for i, spec in enumerate(expand(load_grid("quickstart"))):
    acc = 50.0 + (i * 7) % 40
    record = Record(
        **cell_fields(spec), test_acc_best=acc, test_acc_last=acc - 1.0, extra_test_acc_best={},
        extra_test_acc_last={}, val_acc_best=acc, best_epoch=1,
        history=[{"epoch": 0, "train_loss": 2.0, "val_acc": acc - 5, "test_acc": acc - 5},
                 {"epoch": 1, "train_loss": 1.5, "val_acc": acc, "test_acc": acc}],
        extra={}, noise_audit=NoiseAudit(convention="reference", realized_rate=spec.rate, labels_sha256=None,
                                         transition=None),
        selection=[], cost=Cost(wall_s=1.0 + i, peak_rss_mb=900.0, peak_cuda_mb=None, feature_cache={},
                                fft_epoch_s=[], resumed_from=[], counters={"backbone_forward_images": 0}),
        env={"python": "3.11", "versions": {}, "git_commit": None, "cuda": None}, determinism=None)
    write_record(record_path(results, spec), record)
print(i + 1)
"""

# Runs the CLI and says, on stderr's last line, which of the heavy modules it imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("HEAVY=" + ",".join(m for m in ("torch", "timm") if m in sys.modules), file=sys.stderr))
from nlbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def commands(work: Path) -> list[tuple[str, list[str]]]:
    results = str(work / "runs")
    return [
        ("nlbench --help", ["--help"]),
        ("nlbench list methods", ["list", "methods"]),
        ("nlbench table --grid quickstart", ["table", "--grid", "quickstart", "--results", results]),
        ("nlbench status --grid quickstart", ["status", "--grid", "quickstart", "--results", results]),
        ("nlbench report --grid quickstart", ["report", "--grid", "quickstart", "--results", results,
                                              "--out", str(work / "report")]),
        ("nlbench run --grid quickstart --dry-run", ["run", "--grid", "quickstart", "--results", results,
                                                     "--dry-run"]),
    ]


def environment(tree: Path | None, cache: Path) -> dict[str, str]:
    env = {**os.environ, "NLBENCH_CACHE": str(cache), "CI": "1"}
    env.pop("PYTHONPATH", None)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def heavy_modules(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    line = [x for x in done.stderr.splitlines() if x.startswith("HEAVY=")]
    return (line[-1].removeprefix("HEAVY=").replace(",", ", ") or "neither") if line else "?"


def measure(tree: Path | None, runs: int, label: str) -> dict[str, dict]:
    """Every command of ``tree`` (None: the installed nlbench, this checkout): first, median, min, heavy."""
    exe = shutil.which("nlbench")
    if exe is None:
        raise SystemExit("the nlbench console script is not on PATH (pip install -e .)")
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="cli_latency_") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        env = environment(tree, cache)
        written = subprocess.run([sys.executable, "-c", WRITE_RECORDS, str(work / "runs")], env=env, cwd=work,
                                 check=True, capture_output=True, text=True).stdout.split()[-1]
        out["records"] = int(written)
        shutil.rmtree(cache, ignore_errors=True)  # the first timed call starts with no memo
        for name, args in commands(work):
            first = timed([exe, *args], env, work)
            times = [timed([exe, *args], env, work) for _ in range(runs)]
            out[name] = {"first": first, "median": statistics.median(times), "min": min(times),
                         "heavy": heavy_modules(args, env, work)}
            print(f"[{label}] {name}: first {first:.2f} s, median {out[name]['median']:.2f} s, "
                  f"min {out[name]['min']:.2f} s; imports {out[name]['heavy']}", flush=True)
    return out


def bare_python(runs: int) -> float:
    return statistics.median(timed([sys.executable, "-c", "pass"], dict(os.environ), ROOT) for _ in range(runs))


def table(after: dict[str, dict], before: dict[str, dict] | None, before_label: str) -> str:
    head = "| command | first s | median s | min s | imports torch / timm |"
    rule = "|---|---|---|---|---|"
    if before is not None:
        head = f"| command | {before_label}: median s | {before_label}: imports | " + head.removeprefix("| command | ")
        rule = "|---|---|---|---|---|---|---|"
    lines = [head, rule]
    for name, a in after.items():
        if name == "records":
            continue
        row = f"| `{name}` | "
        if before is not None:
            b = before[name]
            row += f"{b['median']:.2f} | {b['heavy']} | "
        row += f"{a['first']:.2f} | **{a['median']:.2f}** | {a['min']:.2f} | {a['heavy']} |"
        lines.append(row)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per command after the first (default 7)")
    parser.add_argument("--baseline", type=Path, help="another source tree to measure beside this checkout")
    parser.add_argument("--baseline-label", default="before", help="its column title (default: before)")
    parser.add_argument("--write", action="store_true", help="write the table into benchmarks/README.md")
    args = parser.parse_args()

    load_start = os.getloadavg()[0]
    bare = bare_python(args.runs)
    before = measure(args.baseline.resolve(), args.runs, args.baseline_label) if args.baseline else None
    after = measure(None, args.runs, "this checkout")
    load_end = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    baseline_commit = ""
    if args.baseline:
        baseline_commit = subprocess.run(["git", "-C", str(args.baseline), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip()
    text = table(after, before, args.baseline_label)
    print()
    print(text)
    if not args.write:
        return
    baseline_note = (f" Columns '{args.baseline_label}': the tree of commit {baseline_commit} measured the same way "
                     f"(`--baseline`), in the same session." if args.baseline else "")
    section = f"""{SECTION}

- Machine: {MACHINE}; Python {platform.python_version()}. Measured {datetime.date.today().isoformat()} on a
  machine shared with other work (load average {load_start:.1f} at the start, {load_end:.1f} at the end); a
  bare `python -c pass` took {bare:.2f} s (median).
- Command: `python benchmarks/cli_latency.py --runs {args.runs}{' --baseline TREE' if args.baseline else ''} --write` on
  commit {commit} with the working tree's changes. Each command is the `nlbench` console script in a child
  process, wall clock to exit, against a results folder holding one record per quickstart cell
  ({after["records"]}, written by nlbench's record writer; nothing trained). `first`: the command's first
  call, the commands run in the order shown with an empty grid memo at the start
  (`nlbench.run.grid_memo`, shared by table, status and report: the first `table` after a code change pays
  the grid's expansion, the commands after it find it remembered); median and min of the {args.runs} calls
  after it. The last column: whether the command imported torch or timm (one extra run under an `atexit`
  probe).{baseline_note}

{text}

- Targets (issue 21): `--help`, `table`, `status` under 1 s and, with `report`, without torch or timm;
  `list` and `run --dry-run` import only what they need (`list methods` loads every method's code, which
  imports torch and timm; the dry run checks the data and weights and estimates costs from the backbones).
"""
    readme = README.read_text()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    readme = pattern.sub(lambda _m: section + "\n", readme) if pattern.search(readme) else \
        readme.rstrip("\n") + "\n\n" + section
    README.write_text(readme)
    print(f"wrote {README.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
