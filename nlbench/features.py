"""The feature cache: every split's backbone features computed once, read by every LP cell.

A key holds what determines the features: backbone name, checkpoint tag and weights identity, the
dataset's identity (name, split seed, subsample, …), the split, the view (0 = un-augmented, k ≥ 1 =
the k-th seeded augmented view) and the preprocessing. Each entry is a ``.npy`` array (N, D) float32
read memory-mapped, beside a ``.json`` with its full key; both are written to temporary names and
renamed, and a read checks the key and the shape, so a torn or stale file is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlbench.atomic import atomic_save_npy, atomic_write_bytes
from nlbench.images import ImageSource
from nlbench.transforms import BatchTransform


def default_cache_dir() -> Path:
    """$NLBENCH_CACHE, else ~/.cache/nlbench."""
    return Path(os.environ.get("NLBENCH_CACHE", Path.home() / ".cache" / "nlbench"))


@dataclass(frozen=True)
class FeatureKey:
    backbone: str
    weights: str  # weights identity: 'published:<tag>', 'file:<sha>' or 'random'
    dataset: dict
    split: str
    view: int
    transform: dict

    def as_dict(self) -> dict:
        return {"backbone": self.backbone, "weights": self.weights, "dataset": self.dataset,
                "split": self.split, "view": self.view, "transform": self.transform}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


class FeatureCache:
    """Features on disk under ``root``/features, keyed by ``FeatureKey``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "features"

    def paths(self, key: FeatureKey) -> tuple[Path, Path]:
        folder = self.root / key.backbone / str(key.dataset.get("dataset", "data"))
        stem = folder / f"{key.split}-v{key.view}-{key.digest()}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def load(self, key: FeatureKey, num_items: int) -> np.ndarray | None:
        """The cached (N, D) array, memory-mapped, or None if absent, stale or torn."""
        data, meta = self.paths(key)
        if not (data.is_file() and meta.is_file()):
            return None
        try:
            stored = json.loads(meta.read_text())
            array = np.load(data, mmap_mode="r")
        except (ValueError, OSError):
            return None
        if stored.get("key") != key.as_dict() or array.ndim != 2 or array.shape[0] != num_items:
            return None
        if list(array.shape) != stored.get("shape"):
            return None
        return array

    def store(self, key: FeatureKey, array: np.ndarray, seconds: float) -> np.ndarray:
        data, meta = self.paths(key)
        atomic_save_npy(data, np.ascontiguousarray(array, dtype=np.float32))
        info = {"key": key.as_dict(), "shape": list(array.shape), "seconds": round(seconds, 3)}
        atomic_write_bytes(meta, json.dumps(info, indent=1).encode())
        return np.load(data, mmap_mode="r")

    def get_or_compute(
        self, key: FeatureKey, num_items: int, compute: Callable[[], np.ndarray], log: Callable[[str], None] = print
    ) -> tuple[np.ndarray, bool]:
        """(features, hit): read the cached array, or compute, store and return it."""
        cached = self.load(key, num_items)
        label = f"{key.backbone}/{key.dataset.get('dataset')}/{key.split}/view{key.view}"
        if cached is not None:  # hits are reported in the cell's summary line
            return cached, True
        start = time.perf_counter()
        array = compute()
        seconds = time.perf_counter() - start
        log(f"features {label}: cache fill ({num_items} images, {seconds:.1f} s)")
        return self.store(key, array, seconds), False


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    images: ImageSource,
    transform: BatchTransform,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    seed: int = 0,
    counter: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, D) float32 features of every image, in order; ``seed`` fixes the augmentation of a view."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for batch, _ in images.batches(np.arange(len(images)), batch_size, shuffle=False):
        x = transform(batch, generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            feats = model(x)
        out.append(feats.float().cpu())
        if counter is not None:
            counter(len(batch))
    return torch.cat(out).numpy()


def features_tensor(array: np.ndarray, device: torch.device, *, chunk_rows: int = 65_536) -> torch.Tensor:
    """(N, D) float32 features as a tensor on ``device``, never copied whole in host memory.

    On the CPU the tensor is a read-only view of the memory-mapped cache file: rows are read from disk
    as batches index them (a million 768-d features are 3 GiB; an LP epoch reads each row once). On
    an accelerator the features move to device memory in chunks of ``chunk_rows``, where LP epochs
    are fastest."""
    if device.type == "cpu":
        if array.dtype != np.float32:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        with warnings.catch_warnings():
            # Read-only memory map: torch warns that writes are undefined; nothing writes to features.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(array)
    out = torch.empty(array.shape, dtype=torch.float32, device=device)
    for start in range(0, len(array), chunk_rows):
        rows = np.ascontiguousarray(array[start : start + chunk_rows], dtype=np.float32)
        out[start : start + len(rows)].copy_(torch.from_numpy(rows))
    return out
