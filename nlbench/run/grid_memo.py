"""A grid's cells remembered between commands, so that ``table``, ``status`` and ``report`` answer without torch.

Which records belong to a grid is decided by its cells' ids and config hashes. Computing them loads every
method's code (a method's parameter defaults enter the hash, and its facts decide which ``[train]`` fields
do), and with it torch and timm: seconds before the first line. A command that expands a grid (``run``, or
``table`` after a change) stores what those commands read: the checked grid, each cell's id and config
hash, and the table facts of its methods (label, row order, the paper's name). The entry sits in the user
cache (``$NLBENCH_CACHE/grid-cells``) and is used only while everything it was computed from is unchanged:

- the grid file's bytes and path, and the ``--seeds`` override;
- nlbench's own source files (size and modification time of every ``.py``, methods and backbones
  included) and the installed plug-ins (distribution and version; an editable plug-in turns remembering
  off, as its code can change under the same version);
- the files the grid names by absolute path (weights, mapping files, dataset files: their hashes or their
  existence enter the cells), checked on every use.

Anything else (no entry, a damaged one, a process that has already imported torch, whose registries may
hold entries registered in-process) expands the grid as ``run`` does. Writing an entry is best effort: a
read-only cache costs only the speed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

import nlbench
from nlbench.atomic import atomic_write_bytes
from nlbench.registry import METHODS, PLUGIN_GROUPS
from nlbench.run.grids import Grid, grid_files
from nlbench.run.spec import CellSpec

MEMO_VERSION = 1
# The facts of a method's registration that tables read (nlbench.report.tables).
TABLE_FACTS = ("label", "order", "paper_name")


@dataclass(frozen=True)
class CellRef:
    """What finds a cell's record and tells whether it is current: what ``load_records``, ``is_done`` and
    ``cell_statuses`` read of a ``CellSpec``."""

    grid: str
    cell_id: str
    config_hash: str


@dataclass(frozen=True)
class GridCells:
    """A checked grid, its cells (``CellSpec``s when just expanded, ``CellRef``s when remembered) and the
    table facts of its methods (name → label, order, paper_name)."""

    grid: Grid
    cells: list[CellSpec] | list[CellRef]
    methods: dict[str, dict[str, Any]]
    remembered: bool


def memo_dir() -> Path:
    """``$NLBENCH_CACHE/grid-cells`` (the feature cache's root: ``nlbench.engine.features.default_cache_dir``,
    which this module cannot import without torch)."""
    return Path(os.environ.get("NLBENCH_CACHE") or Path.home() / ".cache" / "nlbench") / "grid-cells"


def grid_cells(name_or_path: str, *, seeds: int | None = None, overrides: Iterable[str] = ()) -> GridCells:
    """The grid ``name_or_path`` (a registered name or a grid file) checked and expanded, from the memo when
    nothing it depends on changed, else as ``run`` expands it (and remembered). ``overrides`` (``--set``) are
    never remembered: such a grid is expanded each time. Bad input raises the ConfigError ``load_grid`` and
    ``expand`` raise."""
    overrides = tuple(overrides)
    path = _grid_file(name_or_path)
    key = _key(path, seeds) if path is not None and not overrides and "torch" not in sys.modules else None
    if key is not None:
        known = _recall(path, key)
        if known is not None:
            return known
    grid, cells = expand_and_remember(name_or_path, seeds=seeds, overrides=overrides)
    return GridCells(grid=grid, cells=cells, methods=table_facts(cells), remembered=False)


def expand_and_remember(name_or_path: str, *, seeds: int | None = None,
                        overrides: Iterable[str] = ()) -> tuple[Grid, list[CellSpec]]:
    """``load_grid`` and ``expand``, as ``run`` calls them, remembered for the next command. Only a process
    that had not imported torch before remembers: its registries hold what the code files register, never
    an entry registered in-process (a test's, a notebook's)."""
    from nlbench.run.grids import expand, load_grid  # expand: torch-backed (every method's code)

    overrides = tuple(overrides)
    path = _grid_file(name_or_path)
    key = _key(path, seeds) if path is not None and not overrides and "torch" not in sys.modules else None
    grid = load_grid(name_or_path, overrides)
    cells = expand(grid, seeds=seeds)
    # The key as read before and after: a file edited meanwhile may have given either version's cells.
    if key is not None and _key(path, seeds) == key:
        _remember(path, key, grid=grid, cells=cells)
    return grid, cells


def table_facts(cells: list[CellSpec]) -> dict[str, dict[str, Any]]:
    """The registered table facts of the cells' methods."""
    return {name: {k: METHODS.entry(name).meta.get(k) for k in TABLE_FACTS}
            for name in dict.fromkeys(c.method for c in cells)}


def _remember(path: Path, key: dict[str, Any], *, grid: Grid, cells: list[CellSpec]) -> None:
    """Store the expansion of grid file ``path`` under ``key``."""
    entry = {
        "version": MEMO_VERSION, "key": key, "depends_on": [_file_state(p) for p in _named_files(grid.raw)],
        "grid": {f.name: getattr(grid, f.name) for f in fields(grid)},
        "cells": [[c.grid, c.cell_id, c.config_hash] for c in cells],
        "methods": table_facts(cells),
    }
    try:
        data = json.dumps(entry, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError):  # a value JSON cannot hold exactly (a TOML date): not remembered
        return
    try:
        atomic_write_bytes(_memo_file(path, key["seeds"]), data)
    except OSError:
        pass  # a read-only or full cache: the next command expands the grid again


def _recall(path: Path, key: dict[str, Any]) -> GridCells | None:
    try:
        entry = json.loads(_memo_file(path, seeds=key["seeds"]).read_bytes())
        if entry.get("version") != MEMO_VERSION or entry["key"] != key:
            return None
        if any(_file_state(p) != [p, *state] for p, *state in entry["depends_on"]):
            return None
        grid = Grid(**entry["grid"])
        cells = [CellRef(grid=g, cell_id=c, config_hash=h) for g, c, h in entry["cells"]]
        methods = {name: dict(facts) for name, facts in entry["methods"].items()}
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: expand instead
        return None
    return GridCells(grid=grid, cells=cells, methods=methods, remembered=True)


def _grid_file(name_or_path: str) -> Path | None:
    """The file ``load_grid`` reads for ``name_or_path`` (a registered name first), None where it would
    refuse it (the expansion then raises its error)."""
    files = grid_files()
    if name_or_path in files:
        return Path(files[name_or_path]).resolve()
    path = Path(name_or_path)
    return path.resolve() if path.suffix == ".toml" and path.is_file() else None


def _memo_file(path: Path, seeds: int | None) -> Path:
    name = hashlib.sha256(json.dumps([str(path), seeds]).encode()).hexdigest()[:24]
    return memo_dir() / f"{name}.json"


def _key(path: Path, seeds: int | None) -> dict[str, Any] | None:
    """What an entry must match: None where remembering is off (an unreadable grid file, an editable or
    unidentifiable plug-in)."""
    code = code_identity()
    if code is None:
        return None
    try:
        grid_sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return {"grid_file": str(path), "grid_sha256": grid_sha256, "seeds": seeds, "code": code}


def code_identity(root: Path | None = None) -> str | None:
    """A digest of the code that decides a grid's cells: nlbench's version, every ``.py`` file of the
    package (``root``; path, size, modification time; methods/ and backbones/ through their links) and the
    installed plug-ins. None when a plug-in cannot be identified by its version (editable, or from no
    distribution)."""
    root = Path(root) if root is not None else Path(nlbench.__file__).parent
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                files.append([os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns])
    plugins = []
    all_entry_points = metadata.entry_points()
    for group in PLUGIN_GROUPS:
        for ep in sorted(all_entry_points.select(group=group), key=lambda e: e.name):
            if ep.dist is None or _editable(ep.dist):
                return None
            plugins.append([group, ep.name, ep.value, ep.dist.name, ep.dist.version])
    payload = {"version": nlbench.__version__, "root": str(root), "files": files, "plugins": plugins}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _editable(dist: metadata.Distribution) -> bool:
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return True
    return bool(info.get("dir_info", {}).get("editable"))


def _named_files(value: Any) -> list[str]:
    """Every absolute path among a grid table's strings (its loader resolved the relative ones)."""
    if isinstance(value, str):
        return [value] if os.path.isabs(value) else []
    if isinstance(value, dict):
        return [p for v in value.values() for p in _named_files(v)]
    if isinstance(value, list):
        return [p for v in value for p in _named_files(v)]
    return []


def _file_state(path: str) -> list:
    """[path, size, modification time] of a file or folder, [path, None, None] where there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]
