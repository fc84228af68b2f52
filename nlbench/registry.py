"""Name → object registries for methods, backbones, noise models and datasets.

One small type serves all four: ``@BACKBONES.register("vit_b16", feature_dim=768)`` on a class or function
records it under a name with a one-line description (its docstring's first line), the distribution it
comes from, and any metadata the kind needs. Registering a name twice raises; an unknown name raises with
the valid ones.

Entries come from nlbench's own modules and from plug-ins: any installed distribution can declare
entry points in the groups ``nlbench.methods``, ``nlbench.backbones``, ``nlbench.datasets`` and
``nlbench.noise`` (``mypkg.my_method = "mypkg.my_method"``); each names a module, imported once, whose
decorators register its entries. A plug-in that fails to import is one ConfigError naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
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
            first = self._entries[name].meta.get("distribution", "nlbench")
            raise ConfigError(f"{self.kind} {name!r} is registered twice (by {first} and by {_distribution})")
        desc = description if description is not None else _first_line(getattr(obj, "__doc__", None))
        self._entries[name] = Entry(name, obj, desc, {**meta, "distribution": _distribution})

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

# Each module registers its entries on import; a broken module fails loudly.
_BUILTIN_MODULES = ("nlbench.noise", "nlbench.datasets", "nlbench.methods", "nlbench.backbones")
PLUGIN_GROUPS = ("nlbench.noise", "nlbench.datasets", "nlbench.methods", "nlbench.backbones")
_loaded = False
_distribution = "nlbench"  # who registers now: nlbench, or the plug-in distribution being loaded


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins()


def plugin_entry_points() -> list[tuple[str, metadata.EntryPoint]]:
    """(group, entry point) of every installed plug-in, in group then name order."""
    found = []
    for group in PLUGIN_GROUPS:
        found += [(group, ep) for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name)]
    return found


def load_plugins() -> None:
    """Import every plug-in module; each registers its entries tagged with its distribution."""
    global _distribution
    for group, ep in plugin_entry_points():
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
        _distribution = ep.dist.name if ep.dist is not None else ep.name
        try:
            ep.load()
        except ConfigError as exc:  # a registration problem: already one line that names the file
            raise ConfigError(f"plug-in {ep.name!r} ({group} = {ep.value!r}, from {dist}): {exc}") from None
        except Exception as exc:
            raise ConfigError(f"plug-in {ep.name!r} ({group} = {ep.value!r}, from {dist}) failed to import: "
                              f"{type(exc).__name__}: {exc}; fix or uninstall {dist.split()[0]}") from None
        finally:
            _distribution = "nlbench"


def register_backbone(name: str, **meta: Any) -> Callable:
    """Register a backbone factory (``meta``: source, checkpoint, feature_dim, licence)."""
    return BACKBONES.register(name, **meta)


def register_noise(name: str, **meta: Any) -> Callable:
    """Register a noise model."""
    return NOISE.register(name, **meta)


def register_dataset(name: str, **meta: Any) -> Callable:
    """Register a dataset loader."""
    return DATASETS.register(name, **meta)
