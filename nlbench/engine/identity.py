"""What identifies a backbone checkpoint, its weights and a feature set: one function each.

Everything here is computed from a cell's fields and the backbones' declared facts
(``nlbench.backbones.backbone_facts``), without building a model, so the dry run can tell cache hits and
group feature passes exactly as a run keys them:

* ``backbone_ref(name, tag)``: ``name`` or ``name@tag``, as the CLI, weight files and cell ids spell it.
* ``weights_identity`` (``nlbench.backbones.weights_identity``, the one function that spells it, which the
  backbones' builds use too): the resolved weights: a local file's content hash, else the published
  weights of the resolved tag (the family's default spelled out, e.g. ``timm:resnet50.tv_in1k``), so
  changing a family's default tag can never reuse features of the old one.
* ``feature_preprocessing``: the full preprocessing of a feature pass: the input size actually used, mean,
  std, interpolation, the view's augmentation (crop padding, flip) and, for datasets read by path, the
  image decoder.
* ``feature_set_key``: the feature cache's key (``FeatureKey``): backbone, resolved weights, dataset
  identity, split, view, and the preprocessing above; its digest names the cache files.
* ``feature_group``: the same identity minus the split, view and loaded dataset (which LP cells share
  feature passes; the dry run's cost estimate and the SLURM job grouping).

This module sits at the bottom of the package's layers: it imports backbone, dataset and transform facts,
nothing that runs cells.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from nlbench.backbones import Preprocessing, backbone_facts, backbone_ref, weights_identity
from nlbench.datasets import Dataset
from nlbench.datasets.files import decoder_identity
from nlbench.engine.config import TrainConfig
from nlbench.engine.transforms import BatchTransform

__all__ = ["FeatureKey", "backbone_ref", "weights_identity", "feature_preprocessing", "feature_set_key",
           "cell_feature_key", "feature_group", "input_preprocessing", "preprocessing_digest"]


class BackboneCell(Protocol):
    """The fields of a cell (``nlbench.run.grids.CellSpec``) that decide its features."""

    backbone: str
    backbone_tag: str | None
    backbone_weights: str | None
    dataset: str
    dataset_options: dict
    train_config: TrainConfig


@dataclass(frozen=True)
class FeatureKey:
    """Key of one feature-cache entry; ``digest`` names its files, ``as_dict`` is stored beside them."""

    backbone: str
    weights: str  # weights_identity: 'timm:<arch>.<tag>', 'file:<sha>', 'random', …
    dataset: dict
    split: str
    view: int
    transform: dict  # feature_preprocessing

    def as_dict(self) -> dict:
        return {"backbone": self.backbone, "weights": self.weights, "dataset": self.dataset,
                "split": self.split, "view": self.view, "transform": self.transform}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


def input_preprocessing(backbone: str, tag: str | None = None, input_size: int | None = None) -> Preprocessing:
    """The preprocessing a cell's images get: the checkpoint's (tag resolved), at ``input_size`` when set."""
    declared = backbone_facts(backbone).preprocessing_for(tag)
    if not input_size:
        return declared
    return Preprocessing((int(input_size), int(input_size)), declared.mean, declared.std, declared.interpolation)


def feature_preprocessing(preprocessing: Preprocessing, *, view: int, hflip: bool,
                          decoder: str | None = None) -> dict:
    """Everything that shapes the pixels a feature pass feeds the backbone: the batch transform of the view
    (view 0 un-augmented, k ≥ 1 augmented: crop padding, flip), described by ``BatchTransform`` itself,
    and the decoder of images read by path."""
    transform = BatchTransform(size=preprocessing.input_size, mean=preprocessing.mean, std=preprocessing.std,
                               interpolation=preprocessing.interpolation, augment=view > 0, hflip=hflip)
    described = transform.describe()
    if decoder is not None:
        described["decoder"] = decoder
    return described


def preprocessing_digest(described: dict) -> str:
    """Short sha256 of a ``feature_preprocessing`` description."""
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _decoder(cell: BackboneCell, dataset: Dataset) -> str | None:
    """The image decoder of a dataset read by path (it changes the pixels a little), None in memory."""
    if dataset.train.paths is None:
        return None
    device = cell.train_config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return decoder_identity(device)


def feature_set_key(cell: BackboneCell, dataset: Dataset, split: str, view: int) -> FeatureKey:
    """The feature-cache key of ``split``/``view`` of ``dataset`` through ``cell``'s backbone."""
    return cell_feature_key(cell, dataset)(split, view)


def cell_feature_key(cell: BackboneCell, dataset: Dataset) -> Callable[[str, int], FeatureKey]:
    """``(split, view) → FeatureKey`` of a cell, the weights hashed and the preprocessing resolved once."""
    weights = weights_identity(cell.backbone, cell.backbone_tag, cell.backbone_weights)
    preprocessing = input_preprocessing(cell.backbone, cell.backbone_tag, cell.train_config.input_size)
    decoder = _decoder(cell, dataset)

    def key(split: str, view: int) -> FeatureKey:
        transform = feature_preprocessing(preprocessing, view=view, hflip=dataset.hflip, decoder=decoder)
        return FeatureKey(backbone=cell.backbone, weights=weights, dataset=dataset.identity, split=split,
                          view=view, transform=transform)

    return key


def feature_group(cell: BackboneCell) -> str:
    """Which LP cells share their feature passes, without loading the dataset: backbone, resolved weights,
    dataset name and options, and the input preprocessing (its view-0 description)."""
    preprocessing = input_preprocessing(cell.backbone, cell.backbone_tag, cell.train_config.input_size)
    group: dict[str, Any] = {
        "backbone": cell.backbone,
        "weights": weights_identity(cell.backbone, cell.backbone_tag, cell.backbone_weights),
        "dataset": cell.dataset,
        "dataset_options": cell.dataset_options,
        "preprocessing": preprocessing_digest(feature_preprocessing(preprocessing, view=0, hflip=False)),
    }
    return json.dumps(group, sort_keys=True, default=str)
