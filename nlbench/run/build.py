"""The engine of one cell: the ``Trainer`` a cell spec and its dataset make (identities: nlbench.engine.identity).

``build_trainer`` is the one place a cell's engine is assembled; ``nlbench.run.cell.run_cell`` trains with it.
Its backbone and preprocessing come from ``nlbench.run.cell_inputs``, as the features that instance-dependent
noise reads (``nlbench.run.labels``) do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nlbench.datasets import Dataset
from nlbench.engine.features import FeatureCache
from nlbench.engine.identity import cell_feature_key
from nlbench.engine.images import image_source
from nlbench.engine.train import Trainer
from nlbench.run.cell_inputs import cell_backbone, cell_transform
from nlbench.run.spec import CellSpec


def build_trainer(spec: CellSpec, dataset: Dataset, cache: str | Path, *, labels: np.ndarray,
                  val_labels: np.ndarray, test_labels: np.ndarray,
                  extra_test_labels: dict[str, np.ndarray] | None = None, log: Callable[[str], None] = print,
                  progress: bool = False, **options: Any) -> Trainer:
    """The cell's ``Trainer``: its resolved ``TrainConfig``, the dataset's images, the backbone with the
    spec's weights, the feature cache under ``cache`` with the cell's feature key and transform, and its
    seed. ``options``: further ``Trainer`` arguments."""
    return Trainer(
        config=spec.train_config,
        num_classes=dataset.num_classes,
        labels=labels,
        val_labels=val_labels,
        test_labels=test_labels,
        extra_test_labels=extra_test_labels,
        images=lambda split, device: image_source(dataset.split(split), device),
        backbone_factory=cell_backbone(spec),
        feature_cache=FeatureCache(cache),
        feature_key=cell_feature_key(spec, dataset),
        transform=cell_transform(spec, dataset),
        seed=spec.seed,
        log=log,
        progress=progress,
        **options,
    )
