"""``nlbench export --grid G --to mlflow [--tracking-uri URI] | --to tensorboard DIR``: a grid's records in an
experiment tracker (``nlbench.report.export``)."""

from __future__ import annotations

import argparse

from nlbench.cli.common import results_folder, seed_count
from nlbench.errors import ConfigError


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``nlbench export`` on the ``nlbench`` parser."""
    p = sub.add_parser("export", help="log a grid's records to MLflow (one run per record) or TensorBoard")
    p.add_argument("--grid", required=True, help="registered grid name or path of a grid .toml file")
    p.add_argument("--results", help="folder of run records (default: ./runs)")
    p.add_argument("--seeds", type=seed_count, help="seeds 0..N-1 instead of the grid's seed list")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="the overrides the grid ran with (nlbench run --set), e.g. train.lp_epochs=50")
    p.add_argument("--to", required=True, nargs="+", metavar=("TARGET", "DIR"),
                   help="mlflow, or tensorboard DIR (the folder of the event files)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's own "
                                          "default, sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment (default: the grid's name)")
    p.set_defaults(func=cmd_export)


TARGETS = ("mlflow", "tensorboard")  # nlbench.report.export's


def parse_target(values: list[str]) -> tuple[str, str | None]:
    """``--to mlflow`` → ('mlflow', None); ``--to tensorboard DIR`` → ('tensorboard', DIR)."""
    target, rest = values[0], values[1:]
    if target not in TARGETS:
        raise ConfigError(f"--to {target!r}; expected one of: mlflow, tensorboard DIR")
    if target == "mlflow" and rest:
        raise ConfigError(f"--to mlflow takes no folder (got {' '.join(rest)!r}); the store is --tracking-uri")
    if target == "tensorboard" and len(rest) != 1:
        raise ConfigError("--to tensorboard needs one folder: --to tensorboard DIR")
    return target, (rest[0] if rest else None)


def cmd_export(args: argparse.Namespace) -> int:
    from nlbench.report.export import export_mlflow, export_tensorboard
    from nlbench.run.grids import expand, load_grid  # torch-backed (nlbench.cli.main's docstring)
    from nlbench.run.records import load_records

    target, folder = parse_target(args.to)
    if target == "tensorboard" and (args.tracking_uri or args.experiment):
        raise ConfigError("--tracking-uri and --experiment are MLflow's; --to tensorboard DIR takes a folder")
    grid = load_grid(args.grid, args.overrides)
    records = load_records(results_folder(args), expand(grid, seeds=args.seeds))
    if not records:
        raise ConfigError(f"grid {grid.name!r} has no finished records in {results_folder(args)} to export "
                          f"(run it first: nlbench run --grid {args.grid})")
    if target == "mlflow":
        export_mlflow(records, tracking_uri=args.tracking_uri, experiment=args.experiment)
    else:
        export_tensorboard(records, folder)
    return 0
