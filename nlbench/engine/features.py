"""The feature cache: every split's backbone features computed once, read by every LP cell.

A key (``nlbench.engine.identity.FeatureKey``, built by ``feature_set_key``) holds what determines the features:
backbone name, the resolved weights identity, the dataset's identity (name, split seed, subsample, …), the
split, the view (0 = un-augmented, k ≥ 1 = the k-th seeded augmented view) and the full preprocessing.
Each entry is a ``.npy`` array (N, D) float32 read memory-mapped, beside a ``.json`` with its full key,
shape and the sha256 of the array's bytes; both are written to temporary names and renamed (the ``.json``
last: it commits the entry). A read checks the key, the shape and the sha256, so a torn, stale or
overwritten file is never used: it is recomputed with a warning. The sha256 of a file is verified once per
process and file version (device, inode, size, mtime), so the many LP cells of a process that read one
entry pay for it once (1 GB/s: 0.15 s for CIFAR-100's 50k × 768 float32 train features;
benchmarks/README.md).

``cached_features`` is the one way features are read: the Trainer's LP phase and instance-dependent noise on
backbone features (``nlbench.run.labels``) both call it, so both read, or fill, the very same entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nlbench.atomic import atomic_save_npy, atomic_write_bytes
from nlbench.engine.config import TrainConfig
from nlbench.engine.identity import FeatureKey
from nlbench.engine.images import ImageSource
from nlbench.engine.transforms import BatchTransform
from nlbench.errors import ConfigError

if TYPE_CHECKING:
    from nlbench.backbones import Backbone


def default_cache_dir() -> Path:
    """$NLBENCH_CACHE, else ~/.cache/nlbench (also when it is set but empty: never the current folder)."""
    return Path(os.environ.get("NLBENCH_CACHE") or Path.home() / ".cache" / "nlbench")


class FeatureCache:
    """Features on disk under ``root``/features, keyed by ``FeatureKey``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "features"

    def paths(self, key: FeatureKey) -> tuple[Path, Path]:
        folder = self.root / key.backbone / str(key.dataset.get("dataset", "data"))
        stem = folder / f"{key.split}-v{key.view}-{key.digest()}"
        return stem.with_suffix(".npy"), stem.with_suffix(".json")

    def load(self, key: FeatureKey, num_items: int) -> np.ndarray | None:
        """The cached (N, D) array, memory-mapped, or None if absent, stale, torn or corrupt (warned)."""
        array, problem = self.read(key, num_items)
        if problem:
            warnings.warn(problem, stacklevel=2)
        return array

    def read(self, key: FeatureKey, num_items: int) -> tuple[np.ndarray | None, str | None]:
        """(array, None) for a valid entry; (None, None) when there is none; (None, why) when the entry
        exists but cannot be used (then it is recomputed). A file we may not read is an error."""
        data, meta = self.paths(key)
        for path in (data, meta):
            if path.is_dir():  # not ours to delete: a folder may hold anything
                raise ConfigError(f"cached features {str(path)!r} is a folder, not a file; remove it (the feature "
                                  "cache fills it again) and rerun")
        if not (data.is_file() and meta.is_file()):
            return None, None
        label = f"cached features {data}"
        try:
            stored = json.loads(meta.read_text())
            array = np.load(data, mmap_mode="r")
        except PermissionError as exc:
            raise ConfigError(f"cannot read the feature cache: {exc}") from None
        except (ValueError, OSError) as exc:
            return None, f"{label} are unreadable ({exc}); recomputing them"
        if not isinstance(stored, dict) or stored.get("key") != key.as_dict():
            return None, None  # another key's file (a digest collision or a foreign file): not ours to judge
        if array.ndim != 2 or list(array.shape) != stored.get("shape"):
            return None, (f"{label} have shape {list(array.shape)}, their record says {stored.get('shape')}; "
                          f"recomputing them")
        if array.shape[0] != num_items:
            return None, f"{label} have {array.shape[0]} rows for {num_items} images; recomputing them"
        if array.dtype != np.float32:
            return None, f"{label} are {array.dtype}, expected float32; recomputing them"
        expected = stored.get("sha256")
        if expected is None:
            return None, f"{label} carry no checksum (written by an older nlbench); recomputing them"
        actual = _verified_digest(data, array)
        if actual != expected:
            return None, (f"{label} do not match their checksum (sha256 {actual[:12]}…, recorded "
                          f"{str(expected)[:12]}…): the file was changed or damaged; recomputing them")
        return array, None

    def store(self, key: FeatureKey, array: np.ndarray, seconds: float) -> np.ndarray:
        data, meta = self.paths(key)
        array = np.ascontiguousarray(array, dtype=np.float32)
        atomic_save_npy(data, array)
        info = {"key": key.as_dict(), "shape": list(array.shape), "seconds": round(seconds, 3),
                "sha256": array_digest(array)}
        atomic_write_bytes(meta, json.dumps(info, indent=1).encode())
        return np.load(data, mmap_mode="r")

    def get_or_compute(
        self, key: FeatureKey, num_items: int, compute: Callable[[], np.ndarray], log: Callable[[str], None] = print
    ) -> tuple[np.ndarray, bool]:
        """(features, hit): read the cached array, or compute, store and return it."""
        cached, problem = self.read(key, num_items)
        label = f"{key.backbone}/{key.dataset.get('dataset')}/{key.split}/view{key.view}"
        if problem:
            log(f"warning: {problem}")
        if cached is not None:  # hits are reported in the cell's summary line
            return cached, True
        start = time.perf_counter()
        array = compute()
        seconds = time.perf_counter() - start
        log(f"features {label}: cache fill ({num_items} images, {seconds:.1f} s)")
        return self.store(key, array, seconds), False


def array_digest(array: np.ndarray) -> str:
    """sha256 of a C-contiguous array's bytes (the data part of its ``.npy`` file)."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


# (device, inode, size, mtime_ns) of a feature file → its sha256, for files verified by this process.
_VERIFIED: dict[tuple[int, int, int, int], str] = {}


def _verified_digest(path: Path, array: np.ndarray) -> str:
    st = os.stat(path)
    version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if version not in _VERIFIED:
        _VERIFIED[version] = array_digest(array)
    return _VERIFIED[version]


def resolve_device(name: str) -> torch.device:
    """The torch device of a [train] ``device`` value: 'auto' is CUDA where there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def bf16_autocast(config: TrainConfig, device: torch.device) -> bool:
    """Whether the engine's forward passes run under bf16 autocast: on CUDA with [train] amp = 'bf16'."""
    return device.type == "cuda" and config.amp == "bf16"


def backbone_transform(input_size: int | None, hflip: bool) -> Callable[[Backbone, bool], BatchTransform]:
    """``(backbone, augment) → BatchTransform``: a backbone's preprocessing (its mean, std and interpolation) at
    ``input_size`` px square (None: the backbone's own input size), with the training augmentation or without;
    horizontal flips only where ``hflip`` (the dataset's labels survive them)."""

    def transform(backbone: Backbone, augment: bool) -> BatchTransform:
        size = (input_size, input_size) if input_size else tuple(backbone.input_size)
        return BatchTransform(size=size, mean=backbone.mean, std=backbone.std,
                              interpolation=backbone.interpolation, augment=augment, hflip=hflip)

    return transform


def frozen_backbone(build: Callable[[], Backbone], config: TrainConfig, device: torch.device
                    ) -> Callable[[], Backbone]:
    """``build``, called once and only when first needed: the backbone placed on ``device`` (channels-last for a
    conv net where ``config`` asks). Every feature pass of a cell shares it; when every entry is cached, none is
    built."""
    built: list[Backbone] = []

    def get() -> Backbone:
        if not built:
            backbone = build()
            model = backbone.model.to(device)
            if config.channels_last and backbone.channels_last:
                model.to(memory_format=torch.channels_last)
            built.append(backbone)
        return built[0]

    return get


def cached_features(
    cache: FeatureCache,
    key: FeatureKey,
    images: ImageSource,
    backbone: Callable[[], Backbone],
    transform: Callable[[Backbone, bool], BatchTransform],
    config: TrainConfig,
    device: torch.device,
    *,
    counter: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[np.ndarray, bool]:
    """(features, hit): the cached (N, D) float32 entry of ``key`` for ``images``; on a miss, computed by the
    frozen ``backbone()`` (see ``frozen_backbone``) over every image, un-augmented for view 0 and as the
    view-th seeded augmented view for view ≥ 1, as ``config`` runs the engine's forward passes (batch
    ``eval_batch_size``, bf16 autocast, channels-last), then stored. ``counter`` counts the images forwarded."""

    def compute() -> np.ndarray:
        model = backbone()
        return extract_features(
            model.model, images, transform(model, key.view > 0), batch_size=config.eval_batch_size, device=device,
            amp=bf16_autocast(config, device), channels_last=config.channels_last and model.channels_last,
            seed=key.view, counter=counter,
        )

    return cache.get_or_compute(key, len(images), compute, log=log)


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
