"""Run records: one JSON file per finished cell, written atomically.

A record lands under ``<results>/<grid>/records/<cell_id>.json`` only when its cell has finished:
written to a temporary file in the same folder, flushed, then renamed over the target, so readers
never see half a record and many array tasks can write side by side (two writers of the same cell: the
last rename wins, both complete). The folder is fsynced after the rename where the filesystem allows, so
a record that a job reported is not lost when the node crashes. "Done" means a complete record whose
config hash matches the cell, not merely an existing file. A record that exists but may not be read
(permissions) is an error, never "not done": rerunning its cell would overwrite someone else's result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nlbench.atomic import atomic_write_bytes
from nlbench.errors import ConfigError
from nlbench.spec import CellSpec


def default_results_dir() -> Path:
    return Path("runs")


def records_dir(results: Path, grid: str) -> Path:
    return Path(results) / grid / "records"


def record_path(results: Path, spec: CellSpec) -> Path:
    return records_dir(results, spec.grid) / f"{spec.cell_id}.json"


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON to ``path`` atomically."""
    atomic_write_bytes(Path(path), json.dumps(record, indent=1, sort_keys=True, default=_jsonable).encode())
    _fsync_dir(Path(path).parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; some network filesystems refuse, which costs only durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(path: Path) -> dict | None:
    """The record at ``path``, or None if missing or not a finished record (a foreign file: records are
    written atomically, so never a torn one); ``ConfigError`` if it exists but cannot be read."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read record {path} ({exc.strerror or exc}); fix its permissions or use "
                          f"another --results folder") from None
    return record if isinstance(record, dict) and record.get("status") == "done" else None


def is_done(results: Path, spec: CellSpec) -> bool:
    record = read_record(record_path(results, spec))
    return record is not None and record.get("config_hash") == spec.config_hash


def load_records(results: Path, cells: list[CellSpec]) -> list[dict]:
    """Current records of ``cells`` (those whose config hash matches), in cell order."""
    out = []
    for spec in cells:
        record = read_record(record_path(results, spec))
        if record is not None and record.get("config_hash") == spec.config_hash:
            out.append(record)
    return out
