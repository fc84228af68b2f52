"""LNL methods, one file each, registered with ``@register_method(name, modes=...)``.

A method is a frozen dataclass of its hyperparameters (defaults with their sources beside them) and
a ``run(trainer, mode) -> Fit``. Loss-based methods (CE, GCE, ELR) only supply ``criterion``; methods
with phases of their own (TURN; DivideMix and UNICON with two networks) drive the trainer's phases.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from nlbench.errors import ConfigError
from nlbench.registry import METHODS


class LossMethod:
    """Mixin for methods that are a training criterion: LP trains a head with it, FFT the whole model."""

    def criterion(self, num_samples: int, num_classes: int):
        raise NotImplementedError

    def run(self, trainer, mode: str):
        criterion = self.criterion(trainer.num_train, trainer.num_classes)
        if mode == "lp":
            return trainer.linear_probe(criterion, desc=f"LP {type(self).__name__}")
        return trainer.fine_tune(criterion, desc=f"FFT {type(self).__name__}")


def build_method(name: str, mode: str, params: dict[str, Any] | None = None):
    """Instantiate method ``name`` with ``params`` for tuning ``mode``; bad names, modes or values raise
    ConfigError with the valid choices."""
    entry = METHODS.entry(name)
    if mode not in entry.meta["modes"]:
        raise ConfigError(
            f"method {name!r} does not support mode {mode!r}; supported: {', '.join(entry.meta['modes'])}"
        )
    cls = entry.obj
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(params or {}) - known)
    if unknown:
        raise ConfigError(
            f"method {name!r} has no parameter(s) {', '.join(unknown)}; expected: {', '.join(sorted(known)) or 'none'}"
        )
    return cls(**(params or {}))


def method_params(method) -> dict[str, Any]:
    """All hyperparameters of a method instance, defaults included (they go into records and hashes)."""
    return asdict(method)


# Import each method explicitly so that a broken file fails loudly.
from nlbench.methods import ce, cl, dividemix, elr, gce, turn, unicon  # noqa: E402,F401
