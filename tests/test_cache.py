"""The feature cache: one backbone pass per (backbone, weights, dataset, split, view, transform)."""

from __future__ import annotations

import json

import numpy as np

from nlbench.engine.features import FeatureCache, FeatureKey
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid


def _cells(write_grid, **kw):
    return expand(load_grid(write_grid(**kw)))


def test_second_lp_cell_does_no_backbone_forward(write_grid, tmp_path):
    cells = _cells(write_grid, noise=[{"model": "sym", "rate": 0.6}, {"model": "asym", "rate": 0.4}],
                   methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}])
    assert len(cells) == 4
    results, cache = tmp_path / "runs", tmp_path / "cache"
    first = run_cell(cells[0], results, cache, log=lambda s: None)
    assert first["cost"]["backbones_built"] == 1
    n_images = 1257 + 180 + 360
    assert first["cost"]["backbone_forward_images"] == n_images
    assert set(first["cost"]["feature_cache"].values()) == {"fill"}
    for cell in cells[1:]:  # other methods and other noise settings reuse the features
        record = run_cell(cell, results, cache, log=lambda s: None)
        assert record["cost"]["backbones_built"] == 0
        assert record["cost"]["backbone_forward_images"] == 0
        assert set(record["cost"]["feature_cache"].values()) == {"hit"}


def test_cache_hit_reports_in_log(write_grid, tmp_path):
    cell = _cells(write_grid)[0]
    lines: list[str] = []
    run_cell(cell, tmp_path / "r1", tmp_path / "c", log=lines.append)
    assert any("cache fill" in line for line in lines)
    lines.clear()
    record = run_cell(cell, tmp_path / "r2", tmp_path / "c", log=lines.append)
    assert not any("cache fill" in line for line in lines)
    assert record["cost"]["feature_cache"] == {"train/view0": "hit", "val/view0": "hit", "test/view0": "hit"}


def test_different_preprocessing_is_a_different_entry(write_grid, tmp_path):
    a = _cells(write_grid, train={"input_size": 16})[0]
    b = _cells(write_grid, train={"input_size": 24})[0]
    run_cell(a, tmp_path / "r", tmp_path / "c", log=lambda s: None)
    record = run_cell(b, tmp_path / "r", tmp_path / "c", log=lambda s: None)
    assert record["cost"]["backbones_built"] == 1  # 24 px features are not the 16 px ones


def _key(**over) -> FeatureKey:
    base = dict(backbone="b", weights="random", dataset={"dataset": "d"}, split="train", view=0, transform={})
    return FeatureKey(**{**base, **over})


def test_store_load_roundtrip_and_checks(tmp_path):
    cache = FeatureCache(tmp_path)
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache.store(_key(), array, seconds=0.0)
    loaded = cache.load(_key(), 4)
    assert isinstance(loaded, np.memmap) or isinstance(loaded.base, np.memmap)
    assert np.array_equal(loaded, array)
    assert cache.load(_key(), 5) is None  # wrong item count: stale
    assert cache.load(_key(view=1), 4) is None  # another view is another key
    data, meta = cache.paths(_key())
    info = json.loads(meta.read_text())
    info["key"]["split"] = "val"  # a meta file that does not match its key is not trusted
    meta.write_text(json.dumps(info))
    assert cache.load(_key(), 4) is None


def test_torn_array_file_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.store(_key(), np.ones((4, 3), np.float32), seconds=0.0)
    data, _ = cache.paths(_key())
    data.write_bytes(data.read_bytes()[:40])  # truncated
    calls = []
    array, hit = cache.get_or_compute(_key(), 4, lambda: calls.append(1) or np.zeros((4, 3), np.float32),
                                      log=lambda s: None)
    assert not hit and calls == [1] and np.array_equal(array, np.zeros((4, 3)))
    assert not list(data.parent.glob(".*.tmp"))  # no temporary files left behind
