"""Labels read backbone features through one function (issue 21): instance-dependent noise on features
(``nlbench.run.labels``) and the Trainer's LP phase both call ``nlbench.engine.features.cached_features``, with
the cell's own key, backbone and preprocessing, so each reads the entries the other filled; drawing labels
builds no Trainer."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

import nlbench.run.cell_inputs
from nlbench.datasets import load_dataset
from nlbench.engine.config import TrainConfig
from nlbench.engine.features import FeatureCache
from nlbench.engine.identity import cell_feature_key
from nlbench.run.build import build_trainer
from nlbench.run.labels import noisy_labels
from nlbench.run.spec import CellSpec

SPLITS = ("train", "val")


def inst_cell() -> CellSpec:
    return CellSpec(grid="g", dataset="digits", backbone="efficientnet_lite0", noise="inst", rate=0.4, method="ce",
                    mode="lp", seed=0, noise_options={"inputs_kind": "features"},
                    train=asdict(TrainConfig(input_size=16)))


def trainer_of(spec: CellSpec, dataset, cache):
    return build_trainer(spec, dataset, cache, labels=np.zeros(len(dataset.train), dtype=np.int64),
                         val_labels=np.zeros(len(dataset.val), dtype=np.int64), test_labels=dataset.test.labels,
                         log=lambda _msg: None)


def entries(cache) -> dict[str, np.ndarray]:
    """Every feature file under ``cache``, by its path relative to it."""
    root = cache / "features"
    return {str(p.relative_to(root)): np.load(p) for p in sorted(root.rglob("*.npy"))}


class BackboneCount:
    def __init__(self, monkeypatch) -> None:
        self.built = 0
        real = nlbench.run.cell_inputs.create_backbone

        def counted(*args, **kwargs):
            self.built += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(nlbench.run.cell_inputs, "create_backbone", counted)


@pytest.mark.slow
def test_labels_and_the_lp_phase_read_the_same_entries_whichever_comes_first(tmp_path, monkeypatch):
    spec, dataset = inst_cell(), load_dataset("digits")
    key = cell_feature_key(spec, dataset)
    backbones = BackboneCount(monkeypatch)

    # Labels first: they fill the cell's train and val entries (one backbone for both) ...
    labels_first = tmp_path / "labels_first"
    noisy_labels(spec, dataset, labels_first)
    assert backbones.built == 1
    filled = entries(labels_first)
    paths = {split: FeatureCache(labels_first).paths(key(split, 0))[0] for split in SPLITS}
    assert sorted(filled) == sorted(str(p.relative_to(labels_first / "features")) for p in paths.values())
    # ... which the LP phase then reads as hits: no backbone built, no image forwarded.
    trainer = trainer_of(spec, dataset, labels_first)
    read = {split: trainer.features(split).cpu().numpy() for split in SPLITS}
    assert trainer.cache_events == {"train/view0": "hit", "val/view0": "hit"}
    assert trainer.counters["backbones_built"] == 0 and trainer.counters["backbone_forward_images"] == 0
    assert backbones.built == 1
    for split in SPLITS:
        assert np.array_equal(read[split], np.load(paths[split]))

    # The LP phase first: it fills the same files, bit for bit; drawing the labels then builds no backbone.
    lp_first = tmp_path / "lp_first"
    trainer = trainer_of(spec, dataset, lp_first)
    for split in SPLITS:
        trainer.features(split)
    assert trainer.counters["backbone_forward_images"] == len(dataset.train) + len(dataset.val)
    assert backbones.built == 2
    again = entries(lp_first)
    assert sorted(again) == sorted(filled)
    assert all(np.array_equal(again[name], filled[name]) for name in filled)
    _, _, result = noisy_labels(spec, dataset, lp_first)
    assert backbones.built == 2 and result.convention == "xia2020:features"


def test_drawing_labels_does_not_load_the_training_engine():
    code = ("import sys, nlbench.run.labels; "
            "print(sorted(m for m in ('nlbench.engine.train', 'nlbench.run.build') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
