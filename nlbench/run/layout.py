"""Where a cell's working files go under the results folder, besides its record (nlbench.run.records)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nlbench.run.spec import CellSpec


def checkpoint_dir(results: str | Path, spec: CellSpec) -> Path:
    """Folder of one cell's checkpoints; the config hash keeps a changed cell from resuming a stale run."""
    return Path(results) / spec.grid / "checkpoints" / f"{spec.cell_id}-{spec.config_hash}"


def remove_checkpoints(results: str | Path, spec: CellSpec) -> None:
    shutil.rmtree(checkpoint_dir(results, spec), ignore_errors=True)


def finetuned_features_path(results: str | Path, spec: CellSpec) -> Path:
    """Where a cell's before/after test features go: ``<results>/<grid>/features/<cell_id>.npz``."""
    return Path(results) / spec.grid / "features" / f"{spec.cell_id}.npz"
