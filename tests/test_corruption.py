"""Corruption is detected: every cache entry (feature .npy, noisy-label .npz) and checkpoint carries a sha256
that is checked on read; a damaged entry is recomputed with a warning, never used and never a crash."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from _subproc import nlbench_cli, wait_ok

from nlbench.datasets import load_dataset
from nlbench.engine.checkpoint import load_checkpoint, save_checkpoint
from nlbench.engine.features import FeatureCache, FeatureKey
from nlbench.run.labels import draw_noise


def _key(**over) -> FeatureKey:
    base = dict(backbone="b", weights="random", dataset={"dataset": "d"}, split="train", view=0, transform={})
    return FeatureKey(**{**base, **over})


def _npy_header_size(path: Path) -> int:
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        return f.tell()


def test_feature_file_overwritten_with_same_size_garbage_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    good = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
    cache.store(_key(), good, seconds=0.0)
    data, _ = cache.paths(_key())
    size, header = data.stat().st_size, _npy_header_size(data)
    # Same size, valid header, garbage values: shape and key checks pass, only the checksum can tell.
    garbage = np.random.default_rng(1).integers(0, 256, size - header, dtype=np.uint8).tobytes()
    data.write_bytes(data.read_bytes()[:header] + garbage)
    assert data.stat().st_size == size
    logs, calls = [], []
    array, hit = cache.get_or_compute(_key(), 500, lambda: calls.append(1) or good.copy(), log=logs.append)
    assert not hit and calls == [1]
    assert np.array_equal(array, good)
    assert any("do not match their checksum" in line and line.startswith("warning:") for line in logs), logs
    # The entry was rewritten: the next read is a verified hit.
    again, hit = cache.get_or_compute(_key(), 500, lambda: pytest.fail("recomputed a valid entry"), log=logs.append)
    assert hit and np.array_equal(again, good)


def test_feature_file_of_garbage_entirely_is_recomputed(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.store(_key(), np.ones((8, 4), np.float32), seconds=0.0)
    data, _ = cache.paths(_key())
    data.write_bytes(bytes(range(256)) * (data.stat().st_size // 256) + b"x" * (data.stat().st_size % 256))
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.load(_key(), 8) is None


def test_feature_entry_without_checksum_is_not_trusted(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.store(_key(), np.ones((8, 4), np.float32), seconds=0.0)
    _, meta = cache.paths(_key())
    info = json.loads(meta.read_text())
    del info["sha256"]
    meta.write_text(json.dumps(info))
    with pytest.warns(UserWarning, match="carry no checksum"):
        assert cache.load(_key(), 8) is None


def test_feature_checksum_is_of_the_bytes_on_disk(tmp_path):
    """The recorded sha256 is the hash of the .npy's data section, computed independently here."""
    import hashlib

    cache = FeatureCache(tmp_path)
    array = np.arange(60, dtype=np.float32).reshape(12, 5)
    cache.store(_key(), array, seconds=0.0)
    data, meta = cache.paths(_key())
    raw = data.read_bytes()[_npy_header_size(data):]
    assert json.loads(meta.read_text())["sha256"] == hashlib.sha256(raw).hexdigest()
    assert hashlib.sha256(array.tobytes()).hexdigest() == hashlib.sha256(raw).hexdigest()


def _digits_labels(cache: Path):
    return draw_noise(load_dataset("digits"), "sym", 0.4, 3, {}, cache=cache)


def test_truncated_labels_npz_is_drawn_again(tmp_path):
    first = _digits_labels(tmp_path)
    (saved,) = (tmp_path / "labels" / "digits").glob("*.npz")
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _digits_labels(tmp_path)
    assert any("drawing them again" in str(w.message) for w in caught)
    assert np.array_equal(again.labels, first.labels)  # the draw is seeded: the same labels come back
    with warnings.catch_warnings():  # the rewritten file is whole again: read silently
        warnings.simplefilter("error")
        assert np.array_equal(_digits_labels(tmp_path).labels, first.labels)


@pytest.mark.parametrize("size", ["same", "empty"])
def test_garbage_labels_npz_is_drawn_again(tmp_path, size):
    first = _digits_labels(tmp_path)
    (saved,) = (tmp_path / "labels" / "digits").glob("*.npz")
    saved.write_bytes(b"\x00" * saved.stat().st_size if size == "same" else b"")
    with pytest.warns(UserWarning, match="drawing them again"):
        again = _digits_labels(tmp_path)
    assert np.array_equal(again.labels, first.labels)


def test_damaged_checkpoint_is_not_resumed(tmp_path):
    path = tmp_path / "fine_tune-0.pt"
    state = {"epoch": 3, "weights": torch.arange(50_000, dtype=torch.float32)}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and torch.equal(loaded["weights"], state["weights"])
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2  # inside the tensor's storage: torch.load itself would not notice
    raw[middle:middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="does not match its checksum"):
        assert load_checkpoint(path) is None


def test_checkpoint_without_checksum_still_loads(tmp_path):
    """A kill between the checkpoint's rename and its checksum's leaves a whole checkpoint without one."""
    path = tmp_path / "fine_tune-0.pt"
    save_checkpoint(path, {"epoch": 1})
    path.with_name(path.name + ".sha256").unlink()
    assert load_checkpoint(path) == {"epoch": 1}


GRID = """
description = "corruption test"
datasets = ["digits"]
backbones = ["tiny_test_cnn"]
seeds = [0]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "ce", mode = "lp" }]
[train]
input_size = 8
lp_epochs = 3
eval_batch_size = 512
"""


@pytest.mark.slow
def test_run_with_garbage_features_recomputes_them_and_matches_a_clean_run(tmp_path):
    grid = tmp_path / "corrupt.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    args = ["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)]
    wait_ok(nlbench_cli(args))
    (record_file,) = (results / "corrupt" / "records").glob("*.json")
    first = json.loads(record_file.read_text())
    (train_npy,) = (cache / "features").rglob("train-v0-*.npy")
    header = _npy_header_size(train_npy)
    body = train_npy.stat().st_size - header
    train_npy.write_bytes(train_npy.read_bytes()[:header] + np.full(body // 4, 0.5, np.float32).tobytes())
    record_file.unlink()
    out = wait_ok(nlbench_cli(args))
    assert "do not match their checksum" in out
    second = json.loads(record_file.read_text())
    assert second["cost"]["feature_cache"]["train/view0"] == "fill"
    for field in ("test_acc_best", "test_acc_last", "history"):
        assert second[field] == first[field], field
