"""Training checkpoints: what a preempted or killed cell needs to finish as if it had never stopped.

Full fine-tuning saves one checkpoint per epoch under ``<results>/<grid>/checkpoints/<cell_id>-<config
hash>/``: model, optimiser and scheduler state, every random number generator the loop draws from
(torch CPU and CUDA, the loop's own generator, NumPy, Python), the epoch reached, the evaluation
history so far, the criterion's persistent tensors (ELR's targets), the per-epoch training subsets and
the trainer's logged selections. A checkpoint is written to a temporary name and renamed, so a kill
during the write leaves the previous one intact; its sha256 (hashed as the bytes are written, no
re-read) goes into ``<name>.sha256`` beside it and is checked before loading: a damaged checkpoint is
reported and the cell starts over rather than resume from garbage (torch.load does not check its zip
CRCs). ``nlbench.run.cell.run_cell`` deletes the folder once the cell's record is written.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlbench.atomic import atomic_write, atomic_write_bytes, hash_file
from nlbench.errors import ConfigError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically, then its sha256 to ``<path>.sha256``.

    The previous checksum goes first, so a kill at any point leaves a checkpoint with its own checksum or
    with none (loaded unverified), never one with the previous checkpoint's (which would discard it)."""
    checksum_path(path).unlink(missing_ok=True)
    digest = atomic_write(path, lambda f: torch.save(state, f), sha256=True)
    atomic_write_bytes(checksum_path(path), f"{digest}\n".encode())


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """The checkpoint at ``path`` (tensors on ``device``), or None when absent, damaged or unreadable.

    A checkpoint whose bytes do not match its ``.sha256`` is damaged (warned). One without a ``.sha256``
    (a kill between the two renames, or an older nlbench) is loaded: the rename made it complete.
    Only tensors, containers and plain values are stored, so the file loads with ``weights_only=True``
    (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        recorded = checksum_path(path).read_text().strip() if checksum_path(path).is_file() else None
        with open(path, "rb") as f:  # streamed: a checkpoint may be GBs (ViT-B with optimiser state)
            actual = hash_file(f).hexdigest() if recorded is not None else None
    except PermissionError as exc:
        raise ConfigError(f"cannot read checkpoint: {exc}") from None
    except OSError:
        return None
    if recorded is not None and actual != recorded:
        warnings.warn(f"checkpoint {path} does not match its checksum (damaged or changed); starting the cell "
                      f"over", stacklevel=2)
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception:  # a foreign or damaged file: start over rather than crash the cell
        return None


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random state a training epoch may draw from, in a ``weights_only``-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def criterion_state(criterion: Any) -> dict[str, Any]:
    """The persistent state of a training criterion: its ``state_dict()`` if it has one, else its tensor
    and array attributes (ELR's per-sample targets); a plain function has none."""
    if hasattr(criterion, "state_dict") and callable(criterion.state_dict):
        return {"state_dict": criterion.state_dict()}
    attrs = {}
    for name, value in getattr(criterion, "__dict__", {}).items():
        if isinstance(value, torch.Tensor):
            attrs[name] = value.detach().clone()
        elif isinstance(value, np.ndarray):
            attrs[name] = torch.from_numpy(value.copy())
    return {"attrs": attrs, "numpy": sorted(k for k, v in getattr(criterion, "__dict__", {}).items()
                                           if isinstance(v, np.ndarray))}


def set_criterion_state(criterion: Any, state: dict[str, Any]) -> None:
    if "state_dict" in state:
        criterion.load_state_dict(state["state_dict"])
        return
    for name, value in state["attrs"].items():
        if name in state["numpy"]:
            value = value.cpu().numpy()
        else:
            current = getattr(criterion, name, None)
            value = value.to(current.device) if isinstance(current, torch.Tensor) else value
        setattr(criterion, name, value)


def selections_state(selections: list[dict]) -> list[dict]:
    return [{"phase": s["phase"], "epoch": int(s["epoch"]), "mask": torch.from_numpy(np.asarray(s["mask"]))}
            for s in selections]


def restore_selections(state: list[dict]) -> list[dict]:
    return [{"phase": s["phase"], "epoch": s["epoch"], "mask": s["mask"].cpu().numpy()} for s in state]
