"""Cluster commands of the CLI: ``nlbench status`` and the SLURM side of ``nlbench run``.

``nlbench run --grid NAME --executor slurm`` submits every cell that is neither done nor queued/running
as one job array and returns (``--wait``: polls until none is queued or running, then prints the
status and the table). ``nlbench status --grid NAME`` shows each cell as done / running / queued /
failed / pending, with its job id, and the last lines of a failed cell's log.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nlbench.cli.common import results_folder, seed_count, table_text
from nlbench.errors import ConfigError
from nlbench.run.executors import EXECUTORS

if TYPE_CHECKING:  # annotations only: the commands import what they run (nlbench.cli.main's docstring)
    from nlbench.run.executors import SlurmOptions
    from nlbench.run.grids import Grid


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands on the ``nlbench`` parser."""
    p = sub.add_parser("status", help="done / running / queued / failed / pending cells of a grid run on SLURM")
    p.add_argument("--grid", required=True, help="registered grid name or path of a grid .toml file")
    p.add_argument("--results", help="folder of run records (default: ./runs)")
    p.add_argument("--seeds", type=seed_count, help="seeds 0..N-1 instead of the grid's seed list")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="the overrides the grid runs with (nlbench run --set), e.g. train.lp_epochs=50")
    p.add_argument("--tail", type=int, default=8, help="log lines shown under a failed cell (default: 8)")
    p.add_argument("--hide-done", action="store_true", help="list only cells that are not done")
    p.add_argument("--no-sacct", action="store_true",
                   help="ignore accounting (sacct); use squeue -t all and submitit's result files only")
    p.set_defaults(func=cmd_status)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``nlbench run`` options of the executors (the run subparser calls this)."""
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: this process, cell after cell (default); slurm: one job array through submitit; "
                        "debug: submitit's in-process debug executor (pdb on an error)")
    p.add_argument("--wait", action="store_true",
                   help="slurm: wait until no cell is queued or running, then print the status and the table")
    g = p.add_argument_group("SLURM options (override the grid's [slurm] table and the user config file)")
    g.add_argument("--slurm-partition", dest="slurm_partition")
    g.add_argument("--slurm-account", dest="slurm_account")
    g.add_argument("--slurm-qos", dest="slurm_qos")
    g.add_argument("--slurm-gpus", dest="slurm_gpus", type=int, help="GPUs per job (one task per job)")
    g.add_argument("--slurm-cpus", dest="slurm_cpus_per_task", type=int, help="CPUs per task")
    g.add_argument("--slurm-mem-gb", dest="slurm_mem_gb", type=float, help="memory per job in GB")
    g.add_argument("--slurm-time", dest="slurm_time_min", type=int, help="time limit per job in minutes (default 240)")
    g.add_argument("--slurm-array-parallelism", dest="slurm_array_parallelism", type=int,
                   help="array tasks running at once (default 64)")
    g.add_argument("--slurm-signal-delay", dest="slurm_signal_delay_s", type=int,
                   help="seconds before the time limit at which the job checkpoints and requeues (default 120)")
    g.add_argument("--slurm-max-requeues", dest="slurm_max_requeues", type=int,
                   help="how often a timed-out job may requeue itself (default 10)")
    g.add_argument("--slurm-extra", dest="slurm_extra", action="append", default=[], metavar="FLAG",
                   help="another sbatch flag, e.g. --slurm-extra=--constraint=a100 (repeatable)")
    g.add_argument("--slurm-setup", dest="slurm_setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before each job, e.g. 'module load cuda' (repeatable)")
    g.add_argument("--slurm-config", dest="slurm_config",
                   help="user SLURM config file (default: $NLBENCH_SLURM_CONFIG or ~/.config/nlbench/slurm.toml)")


def slurm_options(args: argparse.Namespace, grid: Grid) -> SlurmOptions:
    """The resolved ``SlurmOptions`` of a ``run`` command line."""
    from nlbench.run.executors import resolve_slurm_options

    cli = {name: getattr(args, f"slurm_{name}", None) for name in
           ("partition", "account", "qos", "gpus", "cpus_per_task", "mem_gb", "time_min", "array_parallelism",
            "signal_delay_s", "max_requeues")}
    cli["extra"] = tuple(args.slurm_extra or ())
    cli["setup"] = tuple(args.slurm_setup or ())
    config = Path(args.slurm_config) if args.slurm_config else None
    return resolve_slurm_options(grid, cli, config_file=config)


def run_slurm(args: argparse.Namespace, grid: Grid, results: Path, cache: Path, options: SlurmOptions) -> int:
    """Submit; with --wait, poll to the end and print status and table. Exit code 1 if a cell failed."""
    # torch-backed: the grid's cells and the runner (nlbench.cli.main's docstring)
    from nlbench.run.grids import expand
    from nlbench.run.records import load_records
    from nlbench.run.runner import submit_grid
    from nlbench.run.status import ClusterUnavailable, counts, format_status, wait_for_cells

    try:
        submit_grid(grid, results=results, options=options, cache=cache, seeds=args.seeds)
        if not args.wait:
            return 0
        cells = expand(grid, seeds=args.seeds)
        statuses = wait_for_cells(cells, results)
    except ClusterUnavailable as exc:
        raise ConfigError(f"cannot query SLURM for grid {grid.name!r}: {exc}") from None
    print(format_status(grid.name, statuses))
    records = load_records(results, cells, warn=False)  # submit_grid's plan named torn records
    if records:
        print()
        print(table_text(grid, records, metric="test_acc_best", fmt="markdown", realized=False))
    return 1 if counts(statuses)["failed"] else 0


def cmd_status(args: argparse.Namespace) -> int:
    from nlbench.run.grid_memo import grid_cells  # no torch once remembered (see its docstring)
    from nlbench.run.status import ClusterUnavailable, cell_statuses, format_status

    known = grid_cells(args.grid, seeds=args.seeds, overrides=args.overrides)
    results = results_folder(args)
    try:
        statuses = cell_statuses(known.cells, results, use_sacct=not args.no_sacct)
    except ClusterUnavailable as exc:
        raise ConfigError(f"cannot query SLURM for grid {known.grid.name!r}: {exc}") from None
    print(format_status(known.grid.name, statuses, tail=args.tail, show_done=not args.hide_done))
    return 0
