"""``nlbench check method NAME`` and ``nlbench check backbone NAME``: one registry entry against the engine's
promises (``nlbench.run.checks``), one line per check as it finishes, exit code 0 when every check passed
and 1 otherwise. An unknown name is one ``nlbench: error:`` line with the valid names (exit code 2).
"""

from __future__ import annotations

import argparse
import sys
import time

from nlbench.errors import ConfigError
from nlbench.registry import MODES


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``check`` on the ``nlbench`` parser."""
    p = sub.add_parser("check", help="run a method or backbone through the engine's invariants on a toy cell")
    kinds = p.add_subparsers(dest="kind", required=True)
    m = kinds.add_parser("method", help="every declared mode on digits × efficientnet_lite0 at 16 px: a valid "
                                        "record, the same record twice, no backbone pass on a cached LP cell, "
                                        "resume equal to an uninterrupted run")
    m.add_argument("name", help="a registered method (nlbench list methods)")
    m.add_argument("--mode", action="append", choices=MODES, help="check this mode only (repeatable; default: "
                                                                  "every mode the method declares)")
    m.add_argument("--work", help="keep the checks' records and feature cache in this folder (default: a "
                                  "temporary folder, removed)")
    m.set_defaults(func=cmd_check)
    b = kinds.add_parser("backbone", help="build with the declared facts, features of the declared shape and "
                                          "preprocessing, deterministic features, no backbone pass on a cached "
                                          "LP cell")
    b.add_argument("name", help="a registered backbone (nlbench list backbones)")
    b.add_argument("--input-size", type=int, help="input size in pixels of the LP cell (default: the "
                                                  "checkpoint's own)")
    b.add_argument("--work", help="keep the checks' records and feature cache in this folder")
    b.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nlbench.run.checks import check_backbone, check_method  # torch-backed: the checks run cells

    def report(result) -> None:
        print(result.line(), flush=True)

    if args.kind == "backbone" and args.input_size is not None and args.input_size < 1:
        raise ConfigError(f"--input-size {args.input_size}; expected a positive number of pixels")
    work = Path(args.work) if args.work else None
    started = time.perf_counter()
    if args.kind == "method":
        results = check_method(args.name, modes=args.mode, report=report, work=work)
    else:
        results = check_backbone(args.name, input_size=args.input_size, report=report, work=work)
    failed = sum(not r.passed for r in results)
    print(f"{args.kind} {args.name}: {len(results) - failed} of {len(results)} checks passed "
          f"({time.perf_counter() - started:.0f} s)", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
