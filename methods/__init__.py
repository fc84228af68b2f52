"""LNL methods, one file each: every module of this package is imported, and registers its method(s).

A method is a frozen dataclass of its hyperparameters (defaults with their sources beside them) that
subclasses ``Method`` and implements ``run(ctx) -> Fit``, or subclasses ``LossMethod`` and implements
``criterion`` only (see ``nlbench.engine.method_api``). ``@register_method`` checks the interface when the file
is imported. Methods from other distributions register through the ``nlbench.methods`` entry point group.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict
from typing import Any

from nlbench.engine.method_api import (
    CellContext,
    DatasetFacts,
    LossMethod,
    Method,
    MethodInterfaceError,
    NominalNoise,
    register_method,
)
from nlbench.errors import ConfigError
from nlbench.registry import METHODS

__all__ = ["CellContext", "DatasetFacts", "LossMethod", "Method", "MethodInterfaceError", "NominalNoise",
           "build_method", "method_params", "register_method"]


def build_method(name: str, mode: str, params: dict[str, Any] | None = None) -> Method:
    """Instantiate method ``name`` with ``params`` for tuning ``mode``; a bad name or mode, or a value outside
    the method's ranges (its own ``__post_init__``), raises ConfigError with the valid choices. The names and
    types of a grid's ``params`` are the grid schema's check (``nlbench.run.schema.check_params``), made before
    a grid reaches here; a caller in code passing a name the method lacks gets Python's TypeError."""
    entry = METHODS.entry(name)
    if mode not in entry.meta["modes"]:
        raise ConfigError(
            f"method {name!r} does not support mode {mode!r}; supported: {', '.join(entry.meta['modes'])}"
        )
    return entry.obj(**(params or {}))


def method_params(method: Method) -> dict[str, Any]:
    """All hyperparameters of a method instance, defaults included (they go into records and hashes)."""
    return asdict(method)


# Every module of the folder, in name order: a new method is one file and nothing else to edit. An import
# error propagates, so a broken file fails loudly.
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
