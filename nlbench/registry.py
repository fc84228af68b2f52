"""Name → object registries for methods, backbones, noise models, datasets and grids.

One small type serves all five: ``@METHODS.register("gce", modes=("fft", "lp"))`` on a class or
function records it under a name with a one-line description (its docstring's first line) and any
metadata the kind needs. Registering a name twice raises; an unknown name raises with the valid ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nlbench.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with its name, one-line description and metadata."""

    name: str
    obj: T
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


class Registry(Generic[T]):
    """A named collection of one kind of thing (``kind`` is used in error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, description: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description=description, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, description: str | None = None, **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        desc = description if description is not None else _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, desc, dict(meta))

    def entry(self, name: str) -> Entry[T]:
        _load_builtin()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; expected one of: {', '.join(sorted(self._entries))}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        _load_builtin()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        _load_builtin()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        _load_builtin()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))


METHODS: Registry[Any] = Registry("method")
BACKBONES: Registry[Any] = Registry("backbone")
NOISE: Registry[Any] = Registry("noise model")
DATASETS: Registry[Any] = Registry("dataset")

MODES = ("fft", "lp", "lp-fft")

# Each module registers its entries on import; importing them explicitly (not by scanning a folder)
# makes a broken file fail loudly.
_BUILTIN_MODULES = ("nlbench.noise", "nlbench.datasets", "nlbench.methods", "nlbench.backbones")
_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def register_method(name: str, *, modes: tuple[str, ...], description: str | None = None) -> Callable:
    """Register a method class; ``modes`` lists the tuning modes it supports (subset of MODES)."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"method {name!r}: unknown modes {bad}; expected a subset of {MODES}")
    return METHODS.register(name, description=description, modes=tuple(modes))


def register_backbone(name: str, **meta: Any) -> Callable:
    """Register a backbone factory (``meta``: source, checkpoint, feature_dim, licence)."""
    return BACKBONES.register(name, **meta)


def register_noise(name: str, **meta: Any) -> Callable:
    """Register a noise model."""
    return NOISE.register(name, **meta)


def register_dataset(name: str, **meta: Any) -> Callable:
    """Register a dataset loader."""
    return DATASETS.register(name, **meta)
