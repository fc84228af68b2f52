"""Name → object registries for methods, backbones, noise models and datasets.

One small type serves all four: ``REGISTRY.register(name, **meta)`` on a class or function records it under
a name with a description (its docstring's summary: the first paragraph, however many lines it wraps over),
the distribution it comes from, and any metadata the kind needs. Registering a name twice raises; an
unknown name raises with the valid ones. Each kind registers through one function that checks its facts:
``register_method`` (``nlbench.engine.method_api``), ``register_backbone`` (``nlbench.backbones``),
``register_dataset`` and ``register_noise`` (here).

Entries come from nlbench's own modules and from plug-ins: any installed distribution can declare
entry points in the groups ``nlbench.methods``, ``nlbench.backbones``, ``nlbench.datasets`` and
``nlbench.noise`` (``mypkg.my_method = "mypkg.my_method"``); each names a module, imported once, whose
decorators register its entries. A plug-in that fails to import is one ConfigError naming it.
"""

from __future__ import annotations

import importlib
import inspect
import re
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


def docstring_summary(doc: str | None) -> str:
    """The summary of a docstring: its first paragraph (up to the first blank line) on one line. A summary
    that wraps over several lines is kept whole, not cut at the end of its first line."""
    paragraph = re.split(r"\n[ \t]*\n", inspect.cleandoc(doc or ""), maxsplit=1)[0]
    return " ".join(paragraph.split())


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
        desc = description if description is not None else docstring_summary(getattr(obj, "__doc__", None))
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
        except (Exception, SystemExit) as exc:  # sys.exit() at import would end nlbench silently
            raise ConfigError(f"plug-in {ep.name!r} ({group} = {ep.value!r}, from {dist}) failed to import: "
                              f"{type(exc).__name__}: {exc}; fix or uninstall {dist.split()[0]}") from None
        finally:
            _distribution = "nlbench"


def register_noise(name: str, **meta: Any) -> Callable:
    """Register a noise model."""
    return NOISE.register(name, **meta)


SplitSizes = tuple[int, int, int]


@dataclass(frozen=True)
class DatasetFacts:
    """What a dataset's registration declares, read without loading it (the dry run's cost estimate).

    sizes: (train, val, test) images at the loader's default options, None where they depend on the user's
    files; variant_sizes: the same per named variant (``dataset_options.variant``) whose sizes differ;
    in_memory: the loader returns images as arrays (held on the device as one uint8 tensor,
    ``nlbench.engine.images.TensorImages``) rather than paths; real_noise_rate: the estimated share of wrong
    training labels of a real-noise dataset (its default label set), None for a dataset with clean labels
    or an unknown rate.
    """

    name: str
    sizes: SplitSizes | None = None
    variant_sizes: dict[str, SplitSizes] = field(default_factory=dict)
    in_memory: bool = False
    real_noise_rate: float | None = None

    def sizes_for(self, variant: str | None = None) -> SplitSizes | None:
        """(train, val, test) of ``variant`` (the default sizes for None, 'full' or a variant not listed)."""
        return self.variant_sizes.get(variant, self.sizes) if variant is not None else self.sizes


def _as_tuple(sizes: Any) -> Any:
    return tuple(sizes) if isinstance(sizes, list) else sizes


def _split_sizes_problem(what: str, sizes: Any) -> str | None:
    ok = (isinstance(sizes, tuple) and len(sizes) == 3 and all(isinstance(n, int) and not isinstance(n, bool)
                                                               and n >= 0 for n in sizes) and sizes[0] > 0)
    return None if ok else f"{what} must be (train, val, test) image counts, train > 0; got {sizes!r}"


def _dataset_facts(name: str, meta: dict[str, Any]) -> DatasetFacts:
    """Check a dataset registration's facts and build them; ConfigError naming the dataset otherwise."""
    sizes, variants = _as_tuple(meta.get("sizes")), meta.get("variant_sizes") or {}
    if isinstance(variants, dict):
        variants = {v: _as_tuple(n) for v, n in variants.items()}
    in_memory, rate = meta.get("in_memory", False), meta.get("real_noise_rate")
    problems = []
    if sizes is not None:
        problems.append(_split_sizes_problem("sizes", sizes))
    if not isinstance(variants, dict):
        problems.append(f"variant_sizes must map a variant name to (train, val, test); got {variants!r}")
    else:
        problems += [_split_sizes_problem(f"variant_sizes[{v!r}]", n) for v, n in variants.items()]
    if not isinstance(in_memory, bool):
        problems.append(f"in_memory must be True or False; got {in_memory!r}")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1):
        problems.append(f"real_noise_rate must be a number in [0, 1) or None; got {rate!r}")
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError(f"dataset {name!r}: {'; '.join(problems)}")
    return DatasetFacts(name, sizes, dict(variants), in_memory, None if rate is None else float(rate))


def register_dataset(name: str, *, sizes: SplitSizes | None = None, variant_sizes: dict[str, SplitSizes] | None = None,
                     in_memory: bool = False, real_noise_rate: float | None = None, **meta: Any) -> Callable:
    """Register a dataset loader ``(**options) -> Dataset`` with its facts, checked now (``DatasetFacts``:
    sizes, variant_sizes, in_memory, real_noise_rate) and its other metadata (source, classes, licence,
    prepare). A malformed fact raises ConfigError naming the dataset."""
    facts = {"sizes": sizes, "variant_sizes": variant_sizes or {}, "in_memory": in_memory,
             "real_noise_rate": real_noise_rate}
    _dataset_facts(name, facts)
    return DATASETS.register(name, **facts, **meta)


def dataset_facts(name: str) -> DatasetFacts | None:
    """The declared facts of registered dataset ``name``; None for a name that is not registered."""
    if name not in DATASETS:
        return None
    return _dataset_facts(name, DATASETS.entry(name).meta)
