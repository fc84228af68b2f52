"""nlbench: benchmark learning-with-noisy-labels methods on pre-trained backbones.

The Python API (docs/api.md): ``nlbench.results(grid)``, ``nlbench.history(grid)``, ``nlbench.load_grid(grid)``,
``nlbench.run(grid)`` and ``nlbench.leaderboard(frame)``, defined in ``nlbench.api``. They load on first use, so
``import nlbench`` (and the command line's ``--help``) does not import torch or pandas.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

API = ("results", "history", "load_grid", "leaderboard")
__all__ = ["__version__", *API, "run"]


def __getattr__(name: str):
    if name in API:
        # importlib, not an import statement: nlbench.api sits in the top layer of the import contract, and
        # modules of lower layers import this package (for __version__).
        return getattr(importlib.import_module("nlbench.api"), name)
    raise AttributeError(f"module 'nlbench' has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    """``nlbench.run`` is the package of the grid level (``nlbench.run.grids``, ...) and, called, the API's
    ``run(grid, ...)``: Python sets a subpackage as its parent's attribute on import, so a plain function of
    that name would be replaced by the package the first time any of its modules loads."""

    def __call__(self, *args, **kwargs):
        return importlib.import_module("nlbench.api").run(*args, **kwargs)


importlib.import_module("nlbench.run").__class__ = _CallablePackage  # its __init__ is a docstring: light
_CallablePackage.__call__.__doc__ = "Run a grid and return its results frame: ``nlbench.api.run``."
sys.modules["nlbench.run"].__doc__ = (sys.modules["nlbench.run"].__doc__ or "") + (
    "\n\nCalled, ``nlbench.run(grid, ...)`` runs a grid and returns its results frame (``nlbench.api.run``).")
