"""Helpers of the bad-input tests: write a grid dict as a real TOML file, run the CLI in-process.

The TOML writer covers what grids hold (strings, numbers incl. nan/inf, booleans, lists, nested tables as
inline tables); the tests write files and let nlbench's own parser read them, so nothing is mocked.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path

from nlbench.cli.main import main

# A valid tiny grid: digits × efficientnet_lite0 at 16 px, one LP cell (seconds when it runs at all).
VALID = {
    "description": "bad-input test grid",
    "datasets": ["digits"],
    "backbones": ["efficientnet_lite0"],
    "seeds": [0],
    "noise": [{"model": "sym", "rate": 0.4}],
    "methods": [{"method": "ce", "mode": "lp"}],
    "train": {"input_size": 16, "lp_epochs": 1, "eval_batch_size": 512},
}

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class RawToml(str):
    """A value written into the file as it is (TOML text the writer could not produce by recursion, e.g. a
    value nested thousands of levels deep)."""


def toml_value(value: object) -> str:
    if isinstance(value, RawToml):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def write_toml(path: Path, grid: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in grid.items()))
    return path


def cli(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``nlbench ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("nlbench: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def tree(folder: Path) -> list[str]:
    """Every path under ``folder`` (empty when it does not exist)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []
