"""Overrides of a grid file from the command line: ``--set train.lp_epochs=50 --set methods.gce.q=0.5``.

Each override is ``KEY=VALUE`` in the dot-list style of Hydra/OmegaConf. It is applied to the grid file's
parsed TOML table before the schema checks it (``grids.load_grid``), so an overridden value is typed, bounded
and hashed exactly as one written in the file. KEY is a dotted path into the grid file:

- ``train.FIELD`` (a [train] field), ``slurm.FIELD``, ``dataset_options.DATASET.OPTION``;
- ``methods.METHOD.PARAM``: the parameter PARAM of every ``methods`` entry of METHOD (every mode);
  ``methods.METHOD@TAG.PARAM`` the entry tagged TAG only;
- a top-level field (``seeds``, ``val_labels``, ``name``, ``datasets``, ``noise``, ...), replaced whole.

VALUE is read as a TOML value (``50``, ``0.5``, ``true``, ``[0, 1, 2]``, ``{ model = "sym", rate = 0.2 }``,
``"text"``); a value TOML cannot read is taken as a string (``device=cpu``), which the schema then checks.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterable
from typing import Any

from nlbench.errors import ConfigError
from nlbench.run.schema import GridTable

# Top-level fields holding tables that a path may descend into; every other field is replaced whole.
NESTED = ("train", "slurm", "dataset_options")


def parse_value(text: str) -> Any:
    """A TOML value; text that is none (``cpu``, ``clean``) is the string itself."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def split_override(override: str) -> tuple[list[str], Any]:
    """``'train.lp_epochs=50'`` → (['train', 'lp_epochs'], 50); ConfigError when it is not KEY=VALUE."""
    key, eq, text = override.partition("=")
    path = key.strip().split(".")
    if not eq or not all(path) or not text.strip():
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE with a dotted KEY, e.g. train.lp_epochs=50 or "
                          f"methods.gce.q=0.5")
    return path, parse_value(text.strip())


def _set_in_table(table: dict, path: list[str], value: Any, override: str) -> None:
    for part in path[:-1]:
        inner = table.setdefault(part, {})
        if not isinstance(inner, dict):
            raise ConfigError(f"--set {override!r}: {part!r} holds {inner!r}, not a table")
        table = inner
    table[path[-1]] = value


def _set_method_param(raw: dict, path: list[str], value: Any, override: str) -> None:
    if len(path) != 3:
        raise ConfigError(f"--set {override!r}: a method's parameter is methods.METHOD.PARAM (or "
                          f"methods.METHOD@TAG.PARAM), e.g. methods.gce.q=0.5")
    selector, param = path[1], path[2]
    name, _, tag = selector.partition("@")
    entries = [m for m in raw.get("methods") or [] if isinstance(m, dict)]
    chosen = [m for m in entries if m.get("method") == name and (not tag or m.get("tag") == tag)]
    if not chosen:
        present = ", ".join(dict.fromkeys(f"{m.get('method')}@{m['tag']}" if m.get("tag") else str(m.get("method"))
                                          for m in entries))
        raise ConfigError(f"--set {override!r}: the grid has no method {selector!r}; its methods: {present}")
    for entry in chosen:
        params = entry.setdefault("params", {})
        if not isinstance(params, dict):
            raise ConfigError(f"--set {override!r}: the params of {selector!r} are {params!r}, not a table")
        params[param] = value


def apply_overrides(raw: dict, overrides: Iterable[str]) -> dict:
    """A copy of the parsed grid file ``raw`` with ``overrides`` (``KEY=VALUE`` strings) applied in order."""
    out = copy.deepcopy(raw)
    for override in overrides:
        path, value = split_override(override)
        top = path[0]
        if top not in GridTable.model_fields:
            raise ConfigError(f"--set {override!r}: unknown key {top!r}; expected one of: "
                              f"{', '.join(GridTable.model_fields)}")
        if top == "methods" and len(path) > 1:
            _set_method_param(out, path, value, override)
        elif len(path) > 1 and top not in NESTED:
            raise ConfigError(f"--set {override!r}: {top!r} is set whole (e.g. --set '{top}=...'); the keys that "
                              f"take a dotted path are {', '.join(NESTED)} and methods.METHOD.PARAM")
        else:
            _set_in_table(out, path, value, override)
    return out


def describe_overrides(overrides: Iterable[str]) -> str:
    """The plan's line of a run with overrides (``nlbench run --dry-run``)."""
    return "overrides (--set): " + " ".join(overrides)
