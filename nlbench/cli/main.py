"""The ``nlbench`` command line: list, run, table, report (other areas' commands live in cluster, data,
backbones and check beside this module; what they share is common).

Bad input (an unknown name, a mode a method lacks, a rate outside [0, 1], an unreadable grid file)
ends with one line ``nlbench: error: …`` on stderr and exit code 2, before anything is written.

The command modules import at module level only what building the parser needs, and each command imports
the rest when it runs: ``--help`` and a bad argument's error line load neither pandas nor torch, and
``table``, ``status`` and ``report`` read a grid's cells through ``nlbench.run.grid_memo`` (no torch once
the grid has been expanded since the code last changed). Commands that train, draw labels or build
backbones (run, noise audit, fetch-weights, check) import torch when they start.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path

from nlbench import interrupts
from nlbench.atomic import DISK_FULL, atomic_write_bytes
from nlbench.cli import advise as cli_advise
from nlbench.cli import backbones as cli_backbones
from nlbench.cli import check as cli_check
from nlbench.cli import cluster as cli_cluster
from nlbench.cli import data as cli_data
from nlbench.cli import export as cli_export
from nlbench.cli.common import (
    Parser,
    check_output_file,
    check_output_folder,
    int_at_least,
    non_negative_int,
    positive_int,
    results_folder,
    seed_count,
    table_text,
)
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES, DATASETS, METHODS, NOISE
from nlbench.report.metrics import FORMATS, METRICS

__all__ = ["Parser", "build_parser", "int_at_least", "main", "non_negative_int", "positive_int"]

KINDS = ("methods", "backbones", "noise", "datasets", "grids")


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on a terminal, off in CI and pipes unless asked for."""
    if args.progress is not None:
        return args.progress
    return sys.stderr.isatty() and not os.environ.get("CI")


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind == "grids":  # grid files only: no registry, no torch
        from nlbench.run.grids import list_grids

        rows = list_grids()
        width = max(len(n) for n, _ in rows)
        for name, desc in rows:
            print(f"{name:<{width}}  {desc}")
        return 0
    from nlbench.engine.method_api import LossMethod  # torch-backed: loading a registry imports its code

    registry = {"methods": METHODS, "backbones": BACKBONES, "noise": NOISE, "datasets": DATASETS}[args.kind]
    entries = list(registry)
    width = max(len(e.name) for e in entries)
    for e in entries:
        meta = e.meta
        if args.kind == "methods":
            # A loss's 'lp-fft' is LP-FT (probe with the loss, fine-tune from the probed head); TURN's selects first.
            modes = [f"{m} (LP-FT)" if m == "lp-fft" and issubclass(e.obj, LossMethod) else m for m in meta["modes"]]
            extra = (f"  [row {meta['label']}; modes: {', '.join(modes)}; "
                     f"source: {meta.get('source') or 'not given'}]")
        elif args.kind == "backbones":
            extra = (f"  [{meta.get('source')}; {meta.get('checkpoint')}; dim {meta.get('feature_dim')};"
                     f" licence: {meta.get('licence')}]")
        else:
            extra = ""
        # Plug-ins say which installed distribution they come from.
        plugin = f"  (plug-in from {meta['distribution']})" if meta.get("distribution", "nlbench") != "nlbench" else ""
        print(f"{e.name:<{width}}  {e.description}{extra}{plugin}")
    return 0


def _cache(args: argparse.Namespace) -> Path:
    from nlbench.engine.features import default_cache_dir  # torch-backed

    return Path(args.cache) if args.cache is not None else default_cache_dir()


def cmd_run(args: argparse.Namespace) -> int:
    # torch-backed: the grid's cells, the runner, the checks of data and weights (see the module docstring)
    from nlbench.run.grid_memo import expand_and_remember
    from nlbench.run.grids import expand, load_grid
    from nlbench.run.records import load_records
    from nlbench.run.runner import check_results_folder, describe_plan, plan, run_grid
    from nlbench.run.validate import check_run, claim_results
    from nlbench.run.workers import parse_devices, worker_devices

    devices = parse_devices(args.devices) if args.devices is not None else None
    if (args.workers is not None or devices) and args.executor != "local":
        raise ConfigError(f"--workers/--devices start local worker processes; got --executor {args.executor}")
    if args.weights:
        grid = cli_backbones.apply_weights_overrides(load_grid(args.grid, args.overrides), args.weights)
        cells = expand(grid, seeds=args.seeds)
    else:  # the grid as its file says: remembered for the table, status and report that follow
        grid, cells = expand_and_remember(args.grid, seeds=args.seeds, overrides=args.overrides)
    results = results_folder(args)
    cache = _cache(args)
    options = None
    if args.executor == "slurm":
        options = cli_cluster.slurm_options(args, grid)
    # Every value of the grid, its files and the output folders, before the first cell (and on a dry run).
    missing: list[str] = []
    check_run(grid, cells, results=results, cache=cache, missing_data=missing.append if args.dry_run else None)
    for message in missing:
        print(f"warning: {message} (a run here stops on it; the plan below skips the checks that need its files)")
    if args.dry_run:
        print(describe_plan(grid, results=results, cache=cache, seeds=args.seeds, executor=args.executor,
                            options=options))
        if args.workers is not None or devices:
            where = ", ".join(f"GPU {d}" if d is not None else "CPU" for d in worker_devices(args.workers, devices))
            print(f"workers: {where} (one process each, sharing the cells through their claims)")
        return 0
    # A damaged record stops the run before its folder is claimed; run_grid's plan names torn records.
    plan(grid, results, seeds=args.seeds, warn=False)
    if args.executor == "slurm":
        check_results_folder(results, log=lambda _msg: None)  # SLURM's results folder must exist: don't create it
        claim_results(grid, results)
        return cli_cluster.run_slurm(args, grid, results, cache, options)
    claim_results(grid, results)
    run_grid(grid, results=results, cache=cache, seeds=args.seeds, executor=args.executor, progress=_progress(args),
             workers=args.workers, devices=devices)
    cells, _ = plan(grid, results, seeds=args.seeds, warn=False)
    records = load_records(results, cells, warn=False)  # a torn record left (another process's cell) was named
    if records:
        print()
        print(table_text(grid, records, metric="test_acc_best", fmt="markdown", realized=False))
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from nlbench.report.tables import method_facts
    from nlbench.run.grid_memo import grid_cells  # no torch once remembered (see its docstring)
    from nlbench.run.records import load_records

    for option, path in (("--output", args.output), ("--plot", args.plot)):
        if path is not None:
            check_output_file(path, option)
    known = grid_cells(args.grid, seeds=args.seeds, overrides=args.overrides)
    records = load_records(results_folder(args), known.cells)
    with method_facts(known.methods):
        text = table_text(known.grid, records, metric=args.metric, fmt=args.format, realized=args.realized,
                          paper=args.paper)
        if args.plot:
            from nlbench.report.plots import leaderboard_bars

            print(f"wrote {leaderboard_bars(records, args.plot, metric=args.metric)}")
    if args.output:
        atomic_write_bytes(Path(args.output), (text + "\n").encode())
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nlbench.report.page import build_report
    from nlbench.report.tables import method_facts
    from nlbench.run.grid_memo import grid_cells  # no torch once remembered (see its docstring)
    from nlbench.run.records import load_records

    if args.screenshot_width < 100:
        raise ConfigError(f"--screenshot-width {args.screenshot_width}; expected a width of at least 100 pixels")
    # Both outputs are checked before the records are read and the page is built, not after.
    if args.out is not None:
        check_output_folder(args.out, "--out")
    if args.screenshot is not None:
        check_output_file(args.screenshot, "--screenshot")
    started = time.perf_counter()
    known = grid_cells(args.grid, seeds=args.seeds, overrides=args.overrides)
    results = results_folder(args)
    records = load_records(results, known.cells)
    out = Path(args.out) if args.out else results / known.grid.name / "report"
    with method_facts(known.methods):
        index = build_report(known.grid, records, results=results, out=out)
    print(f"wrote {index} ({len(records)} records, {time.perf_counter() - started:.1f} s)")
    if args.screenshot:
        from nlbench.report.browser import check_page, shrink_png

        check = check_page(index, screenshot=args.screenshot)
        shrink_png(args.screenshot, width=args.screenshot_width)
        print(f"wrote {args.screenshot}; headless Chromium: {check.summary()}")
        return 0 if check.ok else 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nlbench", description="Benchmark learning-with-noisy-labels methods on pre-trained backbones."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list registered methods, backbones, noise models, datasets or grids")
    p.add_argument("kind", choices=KINDS)
    p.set_defaults(func=cmd_list)

    def grid_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--grid", required=True, help="registered grid name or path of a grid .toml file")
        p.add_argument("--results", help="folder of run records (default: ./runs)")
        p.add_argument("--seeds", type=seed_count, help="run seeds 0..N-1 instead of the grid's seed list")
        p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                       help="override a value of the grid file, e.g. train.lp_epochs=50 or methods.gce.q=0.5 "
                            "(repeatable; docs/grids.md)")

    p = sub.add_parser("run", help="run every cell of a grid that is not done yet, then print its table")
    grid_args(p)
    p.add_argument("--cache", help="feature cache folder (default: $NLBENCH_CACHE or ~/.cache/nlbench)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan: cells, which are done, cache state; with --executor slurm or debug also "
                        "the jobs the cells are grouped into and the sbatch parameters")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: on a terminal, off when CI is set)")
    p.add_argument("--weights", action="append", metavar="[NAME=]PATH",
                   help="local checkpoint file for a backbone of the grid (repeatable); works offline")
    p.add_argument("--workers", type=positive_int,
                   help="run the cells in N worker processes, one per GPU of this machine (CPU: the cores split)")
    p.add_argument("--devices", metavar="0,1,...", help="GPUs of the workers, one worker each (implies --workers)")
    cli_cluster.add_run_arguments(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table", help="leaderboard of a grid's records in the paper's layout")
    grid_args(p)
    p.add_argument("--format", default="markdown", choices=FORMATS)
    p.add_argument("--metric", default="test_acc_best", choices=list(METRICS))
    p.add_argument("--realized", action="store_true", help="show the realized noise rate next to the nominal")
    p.add_argument("--paper", action="store_true",
                   help="show the paper's number of each cell in parentheses (Table 1 layout)")
    p.add_argument("--output", help="write the table to this file (atomically) instead of stdout")
    p.add_argument("--plot", help="also save grouped bars of the leaderboard as this PNG file")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("report", help="one static HTML page of a grid's results: paper delta, ranks, "
                                      "memorisation, selection, cost, feature distortion")
    grid_args(p)
    p.add_argument("--out", help="folder of the page (index.html, figures/); default: RESULTS/GRID/report")
    p.add_argument("--screenshot", metavar="PNG",
                   help="also open the page in headless Chromium, check it and save a screenshot of its top")
    p.add_argument("--screenshot-width", type=int, default=900, help="width in pixels of the saved screenshot")
    p.set_defaults(func=cmd_report)

    # Commands of other areas live beside their code; each module adds its own subparsers.
    for module in (cli_data, cli_backbones, cli_cluster, cli_check, cli_export, cli_advise):
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with interrupts.sigterm_raises():
            code = args.func(args)
            sys.stdout.flush()  # inside the try: a closed pipe shows up here
            return code
    except ConfigError as exc:
        print(f"nlbench: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`nlbench run --dry-run | head`): stop quietly, as tools killed by SIGPIPE do.
        # stdout goes to /dev/null so that the interpreter's last flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: finished records stay, temp files are gone
        interrupts.ignore_further_signals()
        print(f"nlbench: {interrupts.describe(exc)}", file=sys.stderr)
        return interrupts.exit_code(exc)
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        remedy = ("the file size limit (ulimit -f) stops it: raise the limit" if exc.errno == errno.EFBIG
                  else "free space")
        print(f"nlbench: error: {(exc.strerror or str(exc)).lower()} writing {exc.filename}; finished records "
              f"are kept: {remedy} and rerun to continue", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
