"""What a cell's backbone sees: the backbone its spec names and that backbone's preprocessing at the grid's input
size. The cell's engine (``nlbench.run.build.build_trainer``) and instance-dependent noise on backbone features
(``nlbench.run.labels``) both take them from here, and the cache key from ``nlbench.engine.identity``, so both
read the very same feature-cache entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from nlbench.backbones import Backbone, create_backbone
from nlbench.datasets import Dataset
from nlbench.engine.features import backbone_transform
from nlbench.engine.transforms import BatchTransform
from nlbench.run.spec import CellSpec


def cell_backbone(spec: CellSpec) -> Callable[[], Backbone]:
    """Builds a fresh pre-trained backbone of the cell: its name, checkpoint tag and local weights file."""
    return functools.partial(create_backbone, spec.backbone, pretrained=True, weights=spec.backbone_weights,
                             tag=spec.backbone_tag)


def cell_transform(spec: CellSpec, dataset: Dataset) -> Callable[[Backbone, bool], BatchTransform]:
    """The backbone's preprocessing at the cell's ``[train] input_size``, flips where the dataset allows them."""
    return backbone_transform(spec.train_config.input_size, dataset.hflip)
