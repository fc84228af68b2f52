"""The method interface: what an LNL method receives from the engine, what it returns, and how it registers.

A method is a frozen dataclass of its hyperparameters that subclasses ``Method`` and implements
``run(ctx) -> Fit``. ``ctx`` (a ``CellContext``) is everything the cell lets a method know: the tuning
mode, the seed, the dataset's facts, the nominal noise setting (model and rate, never which samples are
noisy), the engine whose phases the method drives (``linear_probe``, ``fine_tune``, ``features``,
``probe_logits``, ``record_epoch``) and where to report selected clean sets. A method that is a
training criterion subclasses ``LossMethod`` and implements ``criterion`` only: it then runs in every
mode, including LP-FT (probe with the loss, then fine-tune the whole model from the probed head).

``@register_method`` checks the interface when the file is imported and names the file and what is
missing, so a wrong method fails at ``nlbench list`` or ``--dry-run``, not inside a queued SLURM job.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nlbench.engine.train import Criterion, Fit, Trainer
from nlbench.errors import ConfigError
from nlbench.registry import METHODS, MODES


@dataclass(frozen=True)
class DatasetFacts:
    """What a method may know of the cell's dataset."""

    name: str
    num_classes: int
    num_train: int


@dataclass(frozen=True)
class NominalNoise:
    """The cell's nominal noise setting: published defaults of some methods depend on it (DivideMix's λ_u per
    noise rate, the confidence penalty under asymmetric noise, Co-teaching's forget rate)."""

    model: str
    rate: float


@dataclass
class CellContext:
    """What one cell hands its method.

    engine: the phases (``linear_probe``, ``fine_tune``, ``features``, ``probe_logits``, ``model_logits``,
    ``record_epoch``), the noisy training labels and the config. oracle_transition: the expected (C, C)
    transition matrix of the synthetic noise, for methods' explicitly named oracle options only (Forward-T
    with ``transition="oracle"``); None under real noise.
    """

    mode: str
    engine: Trainer
    dataset: DatasetFacts
    noise: NominalNoise | None = None
    oracle_transition: np.ndarray | None = None

    @classmethod
    def of(cls, engine: Trainer, mode: str, *, dataset: str = "", noise: tuple[str, float] | None = None,
           oracle_transition: np.ndarray | None = None) -> CellContext:
        """A context around an engine built by hand (tests, notebooks)."""
        return cls(mode=mode, engine=engine,
                   dataset=DatasetFacts(name=dataset, num_classes=engine.num_classes, num_train=engine.num_train),
                   noise=None if noise is None else NominalNoise(noise[0], float(noise[1])),
                   oracle_transition=oracle_transition)

    @property
    def seed(self) -> int:
        return self.engine.seed

    @property
    def labels(self) -> np.ndarray:
        """The noisy training labels: the only training labels a method sees."""
        return self.engine.labels

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def num_train(self) -> int:
        return self.dataset.num_train

    def log(self, message: str) -> None:
        self.engine.log(message)

    def log_selection(self, selected: np.ndarray, *, epoch: int, phase: str) -> None:
        """Report a selected clean set (indices or a boolean mask over the training set); the cell scores its
        size, precision and recall against the true noise mask, which the method never sees."""
        self.engine.log_selection(selected, epoch=epoch, phase=phase)

    def count(self, name: str, value: int = 1) -> None:
        """Add to a cost counter of the record (``cost.<name>``)."""
        self.engine.counters[name] = self.engine.counters.get(name, 0) + value


class Method(ABC):
    """An LNL method: a frozen dataclass of hyperparameters with ``run(ctx) -> Fit``."""

    # A method whose fft mode also trains linear probes declares it: the [train] lp_* fields then enter its
    # config hash (confident learning's cross-validated probes).
    probes_in_fft_mode: ClassVar[bool] = False

    def check_train_size(self, num_train: int) -> None:
        """Raise ConfigError (one line: what the method needs, what to change) when a training set of
        ``num_train`` images is too small for it; called before a run's first cell. Any size by default."""
        return None

    @abstractmethod
    def run(self, ctx: CellContext) -> Fit:
        """Train in ``ctx.mode`` through the engine's phases; return the fit whose test accuracy is reported."""


class LossMethod(Method):
    """A method that is a training criterion: LP trains a head with it, FFT the whole model, and LP-FT
    (mode 'lp-fft', Kumar et al., ICLR 2022) probes with it and then fine-tunes the whole model from the
    probed head on every sample with it."""

    @abstractmethod
    def criterion(self, num_samples: int, num_classes: int) -> Criterion:
        """A fresh criterion ``(logits, labels, index) -> loss`` for a training set of this size."""

    def run(self, ctx: CellContext) -> Fit:
        engine, name = ctx.engine, method_label_of(self)
        if ctx.mode == "lp":
            return engine.linear_probe(self.criterion(ctx.num_train, ctx.num_classes), desc=f"LP {name}")
        if ctx.mode == "fft":
            return engine.fine_tune(self.criterion(ctx.num_train, ctx.num_classes), desc=f"FFT {name}")
        probe = engine.linear_probe(self.criterion(ctx.num_train, ctx.num_classes), desc=f"LP-FT {name}: LP")
        fit = engine.fine_tune(self.criterion(ctx.num_train, ctx.num_classes), head=probe.model,
                               desc=f"LP-FT {name}: FT")
        fit.extra.update(lp_test_acc_best=probe.test_acc_best, lp_test_acc_last=probe.test_acc_last)
        return fit


class MethodInterfaceError(ConfigError):
    """A method file that does not implement the interface (raised when the file is imported)."""


def _file_of(obj: Any) -> str:
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    return getattr(module, "__file__", None) or getattr(obj, "__module__", "?")


def check_method_class(name: str, cls: Any, modes: tuple[str, ...]) -> None:
    """Raise MethodInterfaceError (one line: the file, the method, what is missing) unless ``cls`` implements
    the method interface."""
    where = f"{_file_of(cls)}: method {name!r}"
    if not inspect.isclass(cls):
        raise MethodInterfaceError(f"{where}: @register_method decorates a class; got {type(cls).__name__} {cls!r}")
    where += f" ({cls.__name__})"
    problems = []
    if not issubclass(cls, Method):
        has_criterion = callable(getattr(cls, "criterion", None))
        problems.append(f"must subclass nlbench.methods.{'LossMethod' if has_criterion else 'Method'}")
    elif inspect.isabstract(cls):
        missing = ", ".join(f"{m}()" for m in sorted(cls.__abstractmethods__))
        problems.append(f"does not implement {missing}")
    else:
        params = list(inspect.signature(cls.run).parameters)
        if len(params) != 2:
            problems.append(f"run{inspect.signature(cls.run)} must take one argument besides self: run(self, ctx)")
    if not dataclasses.is_dataclass(cls):
        problems.append("must be a @dataclass(frozen=True) under @register_method (its fields are the parameters)")
    bad = [m for m in modes if m not in MODES]
    if bad:
        problems.append(f"has unknown mode(s) {', '.join(bad)}; expected a subset of {', '.join(MODES)}")
    if problems:
        raise MethodInterfaceError(f"{where} {'; '.join(problems)}")


def register_method(name: str, *, modes: tuple[str, ...], label: str, order: int = 1000,
                    paper_name: str | None = None, source: str = "", description: str | None = None,
                    fft_passes: float = 1.0, fft_subset: str = "all") -> Callable[[type], type]:
    """Register a method class under ``name``, checking its interface.

    modes: the tuning modes it supports ('fft', 'lp', 'lp-fft'); label: its row name in tables ('DMix');
    order: where its rows sort (the built-ins use 10..150); paper_name: its name in the paper's result
    tables, for ``nlbench table --paper`` (None: the paper has no such row); source: the paper or code its
    defaults come from, shown by ``nlbench list methods``.

    For the dry run's GPU-hour estimate (nlbench.run.costs): fft_passes, the backbone training passes per
    training image and fine-tuning epoch relative to plain CE (2 for two networks; more where a step
    forwards several views); fft_subset, what the fine-tuning epochs run over: 'all' the training set or
    'clean' the expected clean share (TURN's selected subset).
    """
    if fft_subset not in ("all", "clean"):
        raise MethodInterfaceError(f"method {name!r}: fft_subset {fft_subset!r}; expected one of: all, clean")
    if not isinstance(label, str) or not label.strip():
        raise MethodInterfaceError(f"method {name!r}: label must be a non-empty string; got {label!r}")

    def decorator(cls: type) -> type:
        check_method_class(name, cls, tuple(modes))
        METHODS.add(name, cls, description=description, modes=tuple(modes), label=label, order=int(order),
                    paper_name=paper_name, source=source, file=_file_of(cls), fft_passes=float(fft_passes),
                    fft_subset=fft_subset)
        return cls

    return decorator


def method_label_of(method: Method) -> str:
    """The registered label of a method instance (its class name where it is not registered)."""
    for entry in METHODS:
        if entry.obj is type(method):
            return entry.meta["label"]
    return type(method).__name__
