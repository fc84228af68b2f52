"""What every command module of the CLI shares: the parser class with nlbench's error convention, argument
types, the results folder of a command line and a grid's table as the commands print it.

``nlbench.cli.main`` (list, run, table, report) and the command modules beside it (``cluster``, ``data``,
``backbones``, ``check``) import this module; it imports none of them, and nothing heavier than the standard
library at module level (``nlbench --help`` loads it).
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

from nlbench.errors import ConfigError


class Parser(argparse.ArgumentParser):
    """argparse with nlbench's error convention: one line ``nlbench: error: …`` and exit code 2, no usage
    dump (``--help`` shows it). Subcommand parsers inherit the class."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"nlbench: error: {' '.join(message.split())}\n")

    def _get_values(self, action: argparse.Action, arg_strings: list[str]):
        # argparse turns `--opt=--` into [] without calling the option's type; refuse it instead.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {'/'.join(action.option_strings)}: expected one value; got '--'")
        return super()._get_values(action, arg_strings)


def int_at_least(minimum: int, maximum: int | None = None) -> typing.Callable[[str], int]:
    """argparse type: an integer ≥ ``minimum`` (and ≤ ``maximum`` where given), refused with the bad value and the
    valid range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected an integer ≥ {minimum}") from None
        if value < minimum:
            why = "is negative" if minimum == 0 else f"is not ≥ {minimum}"
            raise argparse.ArgumentTypeError(f"{value} {why}; expected an integer ≥ {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{value} is above {maximum}; expected an integer from {minimum} to "
                                             f"{maximum}")
        return value

    parse.__name__ = f"integer ≥ {minimum}"  # argparse names the type in its messages
    return parse


positive_int = int_at_least(1)
# `--seeds N` expands to seeds 0..N-1, one cell each per method and setting: a bound keeps a typo (an extra digit or
# ten) a one-line error instead of a MemoryError while the cells are listed.
MAX_SEED_COUNT = 1000
seed_count = int_at_least(1, MAX_SEED_COUNT)
non_negative_int = int_at_least(0)


def results_folder(args: argparse.Namespace) -> Path:
    """The command line's ``--results``, else the default folder of run records. An empty one is an error:
    ``Path('')`` is the current folder, which nobody means."""
    from nlbench.run.records import default_results_dir  # pydantic's record schema: not for `--help`

    if args.results is not None and not args.results.strip():
        raise ConfigError(f"--results {args.results!r} is empty; expected a folder (default: ./runs)")
    return Path(args.results) if args.results is not None else default_results_dir()


def check_output_file(path: str, what: str) -> None:
    """``path`` can be written as a file: not empty, not a folder, its folder not a file."""
    if not path.strip():
        raise ConfigError(f"{what} {path!r} is empty; expected a file name")
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {path!r} is a folder; expected the path of a file")
    if p.parent.exists() and not p.parent.is_dir():
        raise ConfigError(f"{what} {path!r}: {str(p.parent)!r} is a file, not a folder")


def check_output_folder(path: str, what: str) -> None:
    """``path`` can be (or already is) a folder: not empty, not a file, no file on the way to it."""
    if not path.strip():
        raise ConfigError(f"{what} {path!r} is empty; expected a folder")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {path!r} is a file; expected a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {path!r}: {str(parent)!r} is a file, not a folder")
            break


def table_text(grid, records, *, metric: str, fmt: str, realized: bool, paper: bool = False) -> str:
    """A grid's leaderboard as ``nlbench table`` prints it (markdown gets a caption line): the records' tidy
    frame (``nlbench.results``) through ``nlbench.report.leaderboard``, as a user's filtered frame goes."""
    from nlbench.report.leaderboard import leaderboard  # pandas: loaded when a table is printed
    from nlbench.run.frames import results_frame

    return leaderboard(results_frame(records), layout=grid.layout, metric=metric, fmt=fmt, realized=realized,
                       paper=paper)
