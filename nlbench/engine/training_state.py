"""What a cell's training loops accumulate, and how one loop saves and resumes it.

``CellProgress`` is the bookkeeping a ``Trainer`` owns for its cell: the selections methods log, the cost
counters, the seconds of each fine-tuning epoch and where resumed phases restarted. Every training loop
(the engine's ``fine_tune``, the two networks of ``NetworkPair``) adds to it through its methods.

``EpochCheckpoint`` is the one per-epoch checkpoint of a training loop with any number of networks: their
weights, optimisers and schedulers, the random states (``nlbench.engine.checkpoint.rng_state``, plus NumPy
generators), the ``CellProgress``, the ``Fit``'s history and best/last fields and the loop's own state (a
criterion's tensors, per-epoch subsets, a method's lists). A checkpoint whose fingerprint differs from the
loop's belongs to another run and is ignored, with a log line; a restored loop ends bit for bit as the
uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nlbench.engine.checkpoint import (
    load_checkpoint,
    restore_selections,
    rng_state,
    save_checkpoint,
    selections_state,
    set_rng_state,
)


@dataclass
class Fit:
    """Outcome of one training phase. history: one dict per epoch (train_loss, val_acc, test_acc;
    test_acc is None where it was not needed)."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    val_acc_best: float = float("nan")
    test_acc_best: float = float("nan")
    test_acc_last: float = float("nan")
    extra_test_acc_best: dict = field(default_factory=dict)  # extra test sets (WebVision's ImageNet val)
    extra_test_acc_last: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)



# The Fit fields a checkpoint carries (``model`` is saved as a network, ``extra`` is filled after training).
FIT_FIELDS = ("history", "best_epoch", "val_acc_best", "test_acc_best", "test_acc_last", "extra_test_acc_best",
              "extra_test_acc_last")
# Bumped when the checkpoint layout changes: an older checkpoint then reads as another run's, not as garbage.
CHECKPOINT_FORMAT = 2


def _initial_counters() -> dict[str, int]:
    return {"backbone_forward_images": 0, "backbone_backward_images": 0, "backbones_built": 0}


@dataclass
class CellProgress:
    """A cell's bookkeeping across its training phases (the record's ``selection`` and ``cost`` fields).

    selections: one {phase, epoch, mask} per logged selected set; counters: cost counters (backbone passes,
    backbones built, a method's own); epoch_seconds: seconds of each fine-tuning epoch, None while no
    fine-tuning ran (the SLURM executor's time-limit estimate reads them); resumed_from: the (call, epoch) each
    resumed loop restarted from, None when none resumed."""

    selections: list[dict] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=_initial_counters)
    epoch_seconds: list[float] | None = None
    resumed_from: list[dict] | None = None

    def log_selection(self, selected: np.ndarray, num_train: int, *, epoch: int, phase: str) -> None:
        """A selected set: indices or a boolean mask over the ``num_train`` training samples."""
        selected = np.asarray(selected)
        if selected.dtype == bool:
            mask = selected.copy()
        else:
            mask = np.zeros(num_train, dtype=bool)
            mask[selected] = True
        self.selections.append({"phase": phase, "epoch": epoch, "mask": mask})

    def count(self, name: str, value: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def start_timing(self) -> None:
        """A fine-tuning loop starts: its epochs' seconds are recorded (an empty list, not None)."""
        if self.epoch_seconds is None:
            self.epoch_seconds = []

    def note_epoch_seconds(self, seconds: float) -> None:
        self.start_timing()
        self.epoch_seconds.append(round(seconds, 3))

    def note_resume(self, call: int | str, epoch: int) -> None:
        self.resumed_from = (self.resumed_from or []) + [{"call": call, "epoch": epoch}]

    def state(self) -> dict[str, Any]:
        """Selections, counters and epoch seconds in a ``weights_only``-loadable form."""
        return {"selections": selections_state(self.selections), "counters": dict(self.counters),
                "epoch_seconds": list(self.epoch_seconds or [])}

    def restore(self, state: dict[str, Any]) -> None:
        """Back to ``state`` (from ``state()``): what the interrupted run had logged and counted."""
        self.selections = restore_selections(state["selections"])
        self.counters.update(state["counters"])
        self.epoch_seconds = list(state["epoch_seconds"])


def pack(value: Any) -> Any:
    """``value`` with NumPy arrays as tagged tensors and Python ints beyond 64 bits as text, so that
    ``torch.load(weights_only=True)`` reads it back (``unpack`` reverses it; a string of the loop's own that
    starts with ``int:`` would come back as an int, so loop states keep such strings out)."""
    if isinstance(value, dict):
        return {k: pack(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [pack(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**63:
        return f"int:{value}"  # NumPy's PCG64 state holds 128-bit integers
    return value


def unpack(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return value["__ndarray__"].cpu().numpy()
        return {k: unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unpack(v) for v in value]
    if isinstance(value, str) and value.startswith("int:"):
        return int(value[4:])
    return value


@dataclass
class Network:
    """One trained network of a loop with its optimiser and learning-rate schedule."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any


class EpochCheckpoint:
    """The per-epoch checkpoint of one training loop at ``path`` (None: the loop keeps none).

    fingerprint: what identifies the run (a checkpoint with another one is ignored); label: the loop's name
    in log lines; call: its name in ``CellProgress.resumed_from``; epochs: the loop's length (for the log).
    """

    def __init__(self, path: Path | None, fingerprint: dict, *, label: str, call: int | str, epochs: int,
                 log: Callable[[str], None], device: torch.device | str = "cpu") -> None:
        self.path = None if path is None else Path(path)
        self.fingerprint = {"format": CHECKPOINT_FORMAT, **fingerprint}
        self.label, self.call, self.epochs, self.log, self.device = label, call, epochs, log, device

    @property
    def active(self) -> bool:
        """Whether the loop keeps a checkpoint (``save`` writes nothing otherwise)."""
        return self.path is not None

    def resume(self, *, networks: Sequence[Network], generator: torch.Generator, progress: CellProgress, fit: Fit,
               numpy_generators: Sequence[np.random.Generator] = ()) -> tuple[int, dict]:
        """(first epoch to run, the loop's own saved state): restores every network, optimiser and schedule,
        the random states, ``progress`` and ``fit``'s fields from the checkpoint; (0, {}) when there is none
        or it belongs to another run."""
        state = load_checkpoint(self.path, self.device) if self.path is not None else None
        if state is not None and state.get("fingerprint") != self.fingerprint:
            self.log(f"{self.label}: ignoring checkpoint {self.path} (it belongs to a different run: "
                     f"{state.get('fingerprint')} != {self.fingerprint})")
            state = None
        if state is None:
            return 0, {}
        for net, saved in zip(networks, state["networks"], strict=True):
            net.model.load_state_dict(saved["model"])
            net.optimizer.load_state_dict(saved["optimizer"])
            net.scheduler.load_state_dict(saved["scheduler"])
        progress.restore(state["progress"])
        for key in FIT_FIELDS:
            setattr(fit, key, state["fit"][key])
        set_rng_state(state["rng"], generator)
        for gen, saved in zip(numpy_generators, unpack(state["numpy_generators"]), strict=True):
            gen.bit_generator.state = saved
        first = state["epoch"]
        progress.note_resume(self.call, first)
        self.log(f"{self.label}: resumed from {self.path} after epoch {first} of {self.epochs}")
        return first, unpack(state["loop"])

    def save(self, epoch: int, *, networks: Sequence[Network], generator: torch.Generator, progress: CellProgress,
             fit: Fit, numpy_generators: Sequence[np.random.Generator] = (), loop: dict | None = None) -> None:
        """After ``epoch`` (0-based) is trained and recorded: everything ``resume`` restores. ``loop``: the
        loop's own state (tensors, arrays, numbers, lists, dicts)."""
        if self.path is None:
            return
        save_checkpoint(self.path, {
            "fingerprint": self.fingerprint,
            "epoch": epoch + 1,
            "networks": [{"model": n.model.state_dict(), "optimizer": n.optimizer.state_dict(),
                          "scheduler": n.scheduler.state_dict()} for n in networks],
            "rng": rng_state(generator),
            "numpy_generators": pack([g.bit_generator.state for g in numpy_generators]),
            "progress": progress.state(),
            "fit": {key: getattr(fit, key) for key in FIT_FIELDS},
            "loop": pack(loop or {}),
        })
