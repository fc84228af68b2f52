"""Pre-trained backbones, one file per family, each declaring its facts once.

A backbone file registers a factory with ``@register_backbone(name, **facts)`` (this module's, which checks
the facts when the file is imported). The facts, in timm's ``default_cfgs`` style, are what the rest of
nlbench needs without building the model: the feature dim, the preprocessing (a fixed ``Preprocessing`` or,
for a family with selectable tags, a function of the tag that reads the library's config), the default tag,
the published weights' identity, licence, source, and the dry run's cost figures (``BackboneCost``, measured;
or ``gflops``, from which ``nlbench.run.costs`` estimates them). ``backbone_facts(name)`` reads them back.

The factory returns a ``Backbone``: a module whose forward gives the pooled feature the linear probe uses,
its dimension and its preprocessing. Every factory, built-in or not, makes it with ``Backbone.from_facts``
(the model in, every other field from the facts), so the weights identity is spelled by one function,
``weights_identity``. ``create_backbone`` is the one entry point (like timm's ``create_model``); it checks
the built model against the declared facts. Every module of this package is imported below, so a new file
is all a new backbone needs.
"""

from __future__ import annotations

import functools
import importlib
import math
import os
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlbench.atomic import hash_file
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES


def backbone_ref(name: str, tag: str | None) -> str:
    """``name`` or ``name@tag``: how the CLI, file names and cell ids spell a backbone checkpoint."""
    return f"{name}@{tag}" if tag else name


@dataclass(frozen=True)
class Preprocessing:
    """What a checkpoint expects of its input: (H, W), per-channel mean and std, resize interpolation."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str

    def __post_init__(self) -> None:
        # Normalised types, so that facts typed as lists or ints compare equal to the library's tuples.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def matches(self, other: Preprocessing) -> bool:
        close = all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(self.mean + self.std, other.mean + other.std,
                                                                        strict=True))
        return close and self.input_size == other.input_size and self.interpolation == other.interpolation


@dataclass(frozen=True)
class BackboneCost:
    """H100 figures of one architecture at 224 px (docs/performance.md), for the dry run's estimate."""

    arch: str
    gflop_fwd: float  # forward GFLOP per image
    features_img_s: float  # inference, batch 512, bf16
    train_img_s: float  # FFT training step, batch 128, bf16, eager
    train_img_s_compiled: float | None = None  # with torch.compile, where measured
    peak_train_gib: float | None = None
    compile_s: float | None = None  # seconds one torch.compile of the training step took, where measured

    def train_rate(self, compiled: bool) -> float:
        return self.train_img_s_compiled if compiled and self.train_img_s_compiled else self.train_img_s


# What a backbone's registration must and may declare (README, "Adding a backbone").
REQUIRED_FACTS = ("source", "checkpoint", "feature_dim", "licence", "preprocessing", "weights")
OPTIONAL_FACTS = ("default_tag", "cost", "gflops", "probe_feature")


@dataclass(frozen=True)
class BackboneFacts:
    """A registered backbone's declared facts (see the module docstring).

    weights: identity of the published weights, ``{tag}`` standing for the resolved tag (e.g.
    ``'timm:resnet50.{tag}'``); preprocessing: a ``Preprocessing`` (one checkpoint) or a function of the
    resolved tag giving it without building the model (raising ``ConfigError`` for an unknown tag).
    """

    name: str
    file: str
    source: str
    checkpoint: str
    feature_dim: int
    licence: str
    weights: str
    preprocessing: Preprocessing | Callable[[str], Preprocessing]
    default_tag: str | None = None
    cost: BackboneCost | None = None
    gflops: float | None = None
    probe_feature: str | None = None

    def resolve_tag(self, tag: str | None) -> str | None:
        """The checkpoint tag a build uses: ``tag`` or the family's default (None for a family with one)."""
        if tag is not None and self.default_tag is None:
            raise ConfigError(f"backbone {self.name!r} has one checkpoint ({self.checkpoint}); got tag {tag!r}")
        return self.default_tag if tag is None else tag

    def preprocessing_for(self, tag: str | None) -> Preprocessing:
        """The preprocessing of checkpoint ``tag`` (resolved), without building the model."""
        resolved = self.resolve_tag(tag)
        if isinstance(self.preprocessing, Preprocessing):
            if resolved != self.default_tag:
                raise ConfigError(f"backbone {self.name!r}: unknown tag {resolved!r}; expected one of: "
                                  f"{self.default_tag}")
            return self.preprocessing
        return self.preprocessing(resolved)

    def published_weights(self, tag: str | None) -> str:
        """Identity of the published weights of checkpoint ``tag`` (resolved, checked)."""
        resolved = self.resolve_tag(tag)
        self.preprocessing_for(tag)  # an unknown tag fails here, with the choices
        return self.weights.format(tag=resolved)


def _facts_from(name: str, file: str, meta: dict[str, Any]) -> BackboneFacts:
    """Check a registration's facts (``meta``) and build them; ConfigError naming the file otherwise."""
    where = f"backbone {name!r} ({file})"
    missing = [k for k in REQUIRED_FACTS if meta.get(k) is None]
    if missing:
        raise ConfigError(f"{where}: its registration lacks {', '.join(missing)}; a backbone declares "
                          f"{', '.join(REQUIRED_FACTS)} (README, 'Adding a backbone')")
    facts = {k: meta[k] for k in (*REQUIRED_FACTS, *OPTIONAL_FACTS) if k in meta}
    problems = []
    if not isinstance(facts["feature_dim"], int) or facts["feature_dim"] <= 0:
        problems.append(f"feature_dim must be a positive int, got {facts['feature_dim']!r}")
    if not (isinstance(facts["preprocessing"], Preprocessing) or callable(facts["preprocessing"])):
        problems.append("preprocessing must be a Preprocessing or a function of the tag giving one")
    if not isinstance(facts["weights"], str) or not facts["weights"]:
        problems.append(f"weights must be a non-empty identity string, got {facts['weights']!r}")
    if facts.get("cost") is not None and not isinstance(facts["cost"], BackboneCost):
        problems.append(f"cost must be a BackboneCost, got {type(facts['cost']).__name__}")
    if facts.get("gflops") is not None and not facts["gflops"] > 0:
        problems.append(f"gflops must be positive, got {facts['gflops']!r}")
    if problems:
        raise ConfigError(f"{where}: {'; '.join(problems)}")
    return BackboneFacts(name=name, file=file, **facts)


def _file_of(obj: Any) -> str:
    module = sys.modules.get(getattr(obj, "__module__", ""), None)
    return str(getattr(module, "__file__", None) or getattr(obj, "__module__", "?"))


def register_backbone(name: str, **facts: Any) -> Callable:
    """Register a backbone factory ``(*, pretrained, weights, tag) -> Backbone`` with its facts, checked now
    (the one way to register a backbone: ``BACKBONES.register`` itself checks nothing).

    Required: source, checkpoint, feature_dim, licence, preprocessing, weights; optional: default_tag, cost
    (a measured ``BackboneCost``), gflops (forward GFLOP per 224-px image, for an estimated cost),
    probe_feature. A missing or malformed fact raises ``ConfigError`` naming the file.
    """

    def decorator(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        _facts_from(name, _file_of(factory), facts)
        return BACKBONES.register(name, **facts)(factory)

    return decorator


def backbone_facts(name: str) -> BackboneFacts:
    """The declared facts of registered backbone ``name`` (ConfigError for an unknown name or bad facts)."""
    entry = BACKBONES.entry(name)
    return _facts_from(name, _file_of(entry.obj), entry.meta)


@dataclass
class Backbone:
    """A feature extractor with its preprocessing.

    model: (B, 3, H, W) float → (B, feature_dim) pooled features; input_size: (H, W) the checkpoint
    was trained at; mean/std: per-channel normalisation; interpolation: resize mode;
    weights_id: what the weights are (hub id + tag, file hash or 'random'), part of cache keys;
    tag: the checkpoint tag actually used (the family's default when none was asked for; None for a
    family with one checkpoint); weights_files: the files the weights were read from.
    """

    name: str
    model: nn.Module
    feature_dim: int
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    weights_id: str
    channels_last: bool = False  # conv nets run faster channels_last on CUDA
    tag: str | None = None
    weights_files: tuple[str, ...] = ()

    @classmethod
    def from_facts(cls, name: str, model: nn.Module, *, pretrained: bool, weights: str | Path | None = None,
                   tag: str | None = None, channels_last: bool = False,
                   weights_files: tuple[str, ...] | None = None) -> Backbone:
        """The ``Backbone`` of registered backbone ``name`` around ``model``, every other field from its
        declared facts: feature dim, preprocessing of the (resolved) tag, and the weights identity
        (``weights_identity``: a local file's digest, the published weights, or 'random'). weights_files:
        the files the weights were read from (default: the local file ``weights``, if any). One forward of
        a blank image at the declared input size checks that the model gives ``feature_dim`` features
        (ConfigError naming the file)."""
        facts = backbone_facts(name)
        preprocessing = facts.preprocessing_for(tag)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            shape = tuple(model(torch.zeros(1, 3, *preprocessing.input_size)).shape)
        model.train(was_training)
        if shape != (1, facts.feature_dim):
            raise ConfigError(f"backbone {name!r} ({facts.file}) declares feature_dim {facts.feature_dim}, the "
                              f"model gives features of shape {shape} for one image")
        if weights_files is None:
            weights_files = (str(weights),) if weights else ()
        return cls(name=name, model=model, feature_dim=facts.feature_dim, input_size=preprocessing.input_size,
                   mean=preprocessing.mean, std=preprocessing.std, interpolation=preprocessing.interpolation,
                   weights_id=weights_identity(name, tag, weights, pretrained=pretrained),
                   channels_last=channels_last, tag=facts.resolve_tag(tag), weights_files=tuple(weights_files))


def create_backbone(
    name: str, *, pretrained: bool = True, weights: str | None = None, tag: str | None = None
) -> Backbone:
    """Build the registered backbone ``name``.

    pretrained: load the published weights (``tag`` picks a checkpoint where the family has several);
    weights: path of a local checkpoint file, which wins over ``pretrained``. The built backbone must
    agree with its declared facts (feature dim, preprocessing of the tag, weights identity), else
    ``ConfigError`` says which fact the file declares wrongly.
    """
    facts = backbone_facts(name)
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"backbone {name!r}: weights file {weights!r} does not exist")
    expected = facts.preprocessing_for(tag)  # an unknown tag fails before anything is built
    backbone = BACKBONES.get(name)(pretrained=pretrained, weights=weights, tag=tag)
    built = Preprocessing(backbone.input_size, backbone.mean, backbone.std, backbone.interpolation)
    differences = []
    if backbone.feature_dim != facts.feature_dim:
        differences.append(f"feature_dim {facts.feature_dim}, the model gives {backbone.feature_dim}")
    if not built.matches(expected):
        differences.append(f"preprocessing {expected}, the model uses {built}")
    if weights is None and pretrained and backbone.weights_id != facts.published_weights(tag):
        differences.append(f"weights {facts.published_weights(tag)!r}, the build reports {backbone.weights_id!r}")
    if differences:
        raise ConfigError(f"backbone {name!r} ({facts.file}) declares {'; '.join(differences)}")
    return backbone


@functools.cache
def forward_gflops(name: str) -> tuple[float, str]:
    """(forward GFLOP per image at 224 px, 'declared' or 'counted') of registered backbone ``name``.

    The declared ``gflops`` fact where there is one; otherwise counted once per process with
    ``torch.utils.flop_counter.FlopCounterMode`` on one 224×224 input through the random-weight model (FLOPs
    = 2 × multiply-adds, the convention of docs/performance.md). The count depends only on the layer shapes,
    so it is deterministic; it costs one model build and one forward on the CPU (about a second for a
    ViT-B/16), paid only by dry runs of backbones without measured cost figures.
    """
    facts = backbone_facts(name)
    if facts.gflops is not None:
        return float(facts.gflops), "declared"
    from torch.utils.flop_counter import FlopCounterMode

    model = create_backbone(name, pretrained=False).model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 224, 224))
    return counter.get_total_flops() / 1e9, "counted"


def file_digest(path: str | Path, length: int = 16) -> str:
    """Short sha256 of a file's bytes: identifies local weights in cache keys and records. Hashed once per
    file version (path, size, modification time) in a process: a cell's weights are asked for many times."""
    stat = os.stat(path)
    return _sha256_of_version(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)[:length]


@functools.cache
def _sha256_of_version(path: str, size: int, mtime_ns: int) -> str:
    return hash_file(path).hexdigest()


def weights_identity(name: str, tag: str | None = None, weights_file: str | Path | None = None, *,
                     pretrained: bool = True) -> str:
    """What a backbone checkpoint's weights are, spelled by this function only (feature-cache keys, records,
    config hashes): ``file:<sha256 prefix>`` of a local weights file, else the published weights of ``tag``
    or the family's default tag spelled out (``timm:resnet50.tv_in1k``: changing a default can never reuse
    features of the old one; an unknown tag raises ConfigError), else 'random' (``pretrained=False``)."""
    if weights_file:
        return f"file:{file_digest(weights_file)}"
    return backbone_facts(name).published_weights(tag) if pretrained else "random"


def timm_data_config(model: nn.Module) -> dict:
    """Input size, interpolation, mean and std from timm's pretrained config of ``model``."""
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    return {
        "input_size": tuple(cfg["input_size"][1:]),
        "interpolation": cfg["interpolation"],
        "mean": tuple(float(v) for v in cfg["mean"]),
        "std": tuple(float(v) for v in cfg["std"]),
    }


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth/.pt/.bin (torch pickle, weights only) or .safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    return obj


def _import_every_module() -> None:
    """Import every module of this package, so that a new backbone file registers with no other edit.
    An import error propagates: a broken file fails loudly rather than silently missing from the list."""
    for module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        importlib.import_module(f"{__name__}.{module}")


_import_every_module()
