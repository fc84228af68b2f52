"""Pre-trained backbones, one file per family.

A registered backbone factory returns a ``Backbone``: a module whose forward gives the pooled feature
the linear probe uses, its dimension, and its preprocessing taken from the library's pretrained
config. ``create_backbone`` is the one entry point (like timm's ``create_model``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES


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


def create_backbone(
    name: str, *, pretrained: bool = True, weights: str | None = None, tag: str | None = None
) -> Backbone:
    """Build the registered backbone ``name``.

    pretrained: load the published weights (``tag`` picks a checkpoint where the family has several);
    weights: path of a local checkpoint file, which wins over ``pretrained``.
    """
    factory = BACKBONES.get(name)
    if weights is not None and not Path(weights).is_file():
        raise ConfigError(f"backbone {name!r}: weights file {weights!r} does not exist")
    return factory(pretrained=pretrained, weights=weights, tag=tag)


def file_digest(path: str | Path, length: int = 16) -> str:
    """Short sha256 of a file's bytes: identifies local weights in cache keys and records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


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


# Import each family explicitly so that a broken file fails loudly.
from nlbench.backbones import clip, convnext, efficientnet, msn, resnet, vit  # noqa: E402,F401
