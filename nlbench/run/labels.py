"""Labels of a cell: the noisy training and validation labels every method of a grid sees.

Synthetic noise is drawn once per (dataset identity, noise model, rate, options, noise seed) and saved with
its sha256 under ``<cache>/labels/``: the next cell with the same key reads the saved vector (after
checking its hash), so every method of a grid, on any machine that shares the cache, trains on the very
same labels, and an audit can compare a record's ``noise_audit`` with the saved vector. The ``.json``
beside the ``.npz`` also holds the sha256 of the whole ``.npz`` file: a truncated or overwritten file is
reported and drawn again, never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nlbench.atomic import atomic_write_bytes, hash_file
from nlbench.datasets import Dataset
from nlbench.engine.features import FeatureCache, cached_features, frozen_backbone, resolve_device
from nlbench.engine.identity import cell_feature_key, feature_group
from nlbench.engine.images import image_source
from nlbench.errors import ConfigError
from nlbench.noise import NoisyLabels, apply_noise, label_digest, transition_matrix
from nlbench.run.cell_inputs import cell_backbone, cell_transform
from nlbench.run.spec import CellSpec

# Bump when a noise model's output changes for the same arguments: saved labels of older versions are then
# recomputed rather than reused. 2: inst noise on pixels takes the raw 0-255 values by default (Xia et al.'s code).
LABELS_VERSION = 2


def noisy_labels(spec: CellSpec, dataset: Dataset, cache: str | Path | None = None
                 ) -> tuple[np.ndarray, np.ndarray, NoisyLabels | None]:
    """(train labels, val labels, noise result) for the cell.

    Synthetic noise is drawn once over train and validation together (the paper splits CIFAR-100's
    noisy 50k into 47.5k/2.5k) from the cell's noise seed (``spec.label_seed``: the grid's ``noise_seed``, shared
    by every training seed, or the training seed under "per-seed"), so every method of a grid sees the same labels.
    With ``cache`` (the feature-cache root), the drawn vector is saved under ``cache/labels`` and reused.
    """
    n_train = len(dataset.train)
    if dataset.real_noise:
        if spec.noise != "none":
            raise ConfigError(f"dataset {dataset.name!r} carries real label noise; use noise model 'none' "
                              f"(got {spec.noise!r})")
        clean_val = dataset.val.labels if dataset.val.labels is not None else dataset.val.noisy_labels
        val = clean_val if spec.val_labels == "clean" else (
            dataset.val.noisy_labels if dataset.val.noisy_labels is not None else clean_val)
        return dataset.train.noisy_labels, val, None
    kind = spec.noise_options.get("inputs_kind", "pixels")
    result = draw_noise(dataset, spec.noise, spec.rate, spec.label_seed, spec.noise_options, cache=cache,
                        inputs=lambda: noise_inputs(dataset, kind, spec=spec, cache=cache), inputs_id=_inputs_id(spec))
    val = dataset.val.labels if spec.val_labels == "clean" else result.labels[n_train:]
    return result.labels[:n_train], val, result


def clean_train_val(dataset: Dataset) -> np.ndarray:
    """(N_train + N_val,) clean labels, train first: what synthetic noise corrupts."""
    if dataset.train.labels is None or dataset.val.labels is None:
        raise ConfigError(f"dataset {dataset.name!r} has no clean training labels to corrupt; synthetic noise "
                          "needs them (a folder/csv dataset: labels='clean')")
    return np.concatenate([dataset.train.labels, dataset.val.labels])


def noise_inputs(dataset: Dataset, kind: str, *, spec: CellSpec | None = None,
                 cache: str | Path | None = None) -> np.ndarray:
    """Inputs x of instance-dependent noise over train + val: (N, H, W, C) pixels, or (N, D) backbone
    features of the cell's backbone (read through the feature cache, the very entries its runs use)."""
    if kind == "pixels":
        if dataset.train.images is None or dataset.val.images is None:
            raise ConfigError(f"inst noise on pixels needs an in-memory dataset; {dataset.name!r} is read by path:"
                              " use the noise option inputs_kind='features'")
        return np.concatenate([dataset.train.images, dataset.val.images])
    if kind == "features":
        if spec is None or cache is None:
            raise ConfigError("inst noise on backbone features needs a cell (backbone) and the feature cache; "
                              "use inputs_kind='pixels' here")
        return _backbone_features(spec, dataset, Path(cache))
    raise ConfigError(f"unknown inst inputs_kind {kind!r}; expected one of: features, pixels")


def _backbone_features(spec: CellSpec, dataset: Dataset, cache: Path) -> np.ndarray:
    # Through the cell's own feature key, backbone and preprocessing, as its LP phase reads them: the same
    # cache entries, filled here when this comes first.
    config = spec.train_config
    device = resolve_device(config.device)
    key, backbone = cell_feature_key(spec, dataset), frozen_backbone(cell_backbone(spec), config, device)
    transform, features = cell_transform(spec, dataset), FeatureCache(cache)
    return np.concatenate([
        cached_features(features, key(split, 0), image_source(dataset.split(split), device), backbone, transform,
                        config, device, log=lambda _msg: None)[0]
        for split in ("train", "val")
    ])


def _inputs_id(spec: CellSpec) -> dict | None:
    """What the inst inputs depend on beyond the dataset: the backbone's feature set, for feature inputs."""
    if spec.noise != "inst" or spec.noise_options.get("inputs_kind", "pixels") != "features":
        return None
    return {"backbone": spec.backbone, "features": feature_group(spec)}


def labels_key(dataset: Dataset, model: str, rate: float, seed: int, options: dict,
               inputs_id: dict | None = None) -> dict:
    """Everything that determines a noisy label vector (a mapping file enters by its content)."""
    opts = {k: options[k] for k in sorted(options)}
    mapping = options.get("mapping_file")
    if mapping is not None and Path(str(mapping)).is_file():
        opts["mapping_file_sha256"] = hash_file(str(mapping)).hexdigest()
    return {"version": LABELS_VERSION, "dataset": dataset.identity, "noise": model, "rate": float(rate),
            "seed": int(seed), "options": opts, "inputs": inputs_id}


def labels_path(cache: str | Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = str(key["dataset"].get("dataset", "data"))
    return Path(cache) / "labels" / name / f"{key['noise']}{key['rate']:g}-seed{key['seed']}-{digest}.npz"


def draw_noise(dataset: Dataset, model: str, rate: float, seed: int, options: dict, *,
               inputs: np.ndarray | Callable[[], np.ndarray] | None = None, cache: str | Path | None = None,
               inputs_id: dict | None = None) -> NoisyLabels:
    """Noisy labels over train + val (train first) of ``dataset``; saved once under ``cache`` and reused.

    ``inputs``: the inst model's inputs, or a function giving them (called only when the labels are drawn);
    default: the dataset's pixels. ``inputs_id``: what they depend on beyond the dataset (a backbone)."""
    clean = clean_train_val(dataset)
    key = labels_key(dataset, model, rate, seed, options, inputs_id)
    path = labels_path(cache, key) if cache is not None else None
    if path is not None:
        saved = load_saved(path, key, clean, dataset.num_classes)
        if saved is not None:
            return saved
    if model != "inst":
        inputs = None
    elif inputs is None:
        inputs = noise_inputs(dataset, options.get("inputs_kind", "pixels"))
    elif callable(inputs):
        inputs = inputs()
    result = apply_noise(model, clean, rate=rate, seed=seed, num_classes=dataset.num_classes,
                         inputs=inputs, dataset=dataset.name, **options)
    if path is not None:
        save(path, key, result)
    return result


def save(path: Path, key: dict, result: NoisyLabels) -> None:
    """Write the label vector (.npz) and then its key and hash (.json, the commit mark), each atomically."""
    buf = io.BytesIO()
    arrays = {"labels": result.labels}
    if result.expected_transition is not None:
        arrays["expected_transition"] = result.expected_transition
    if result.flip_probability is not None:
        arrays["flip_probability"] = result.flip_probability
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    meta = {"key": key, "sha256": result.digest, "file_sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            "n": len(result.labels), "model": result.model,
            "convention": result.convention, "rate": result.rate, "realized_rate": round(result.realized_rate, 6)}
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(meta, indent=1, default=str).encode())


def load_saved(path: Path, key: dict, clean: np.ndarray, num_classes: int) -> NoisyLabels | None:
    """The saved result for ``key``, or None when absent; a file whose key, length or hash does not match is
    reported and ignored (it is then recomputed and overwritten)."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        content = path.read_bytes()
    except PermissionError as exc:
        raise ConfigError(f"cannot read saved noisy labels: {exc}") from None
    except (OSError, ValueError) as exc:
        warnings.warn(f"saved noisy labels {path} are unreadable ({exc}); drawing them again", stacklevel=3)
        return None
    if not isinstance(meta, dict):
        warnings.warn(f"saved noisy labels {meta_path} hold no key; drawing them again", stacklevel=3)
        return None
    expected = meta.get("file_sha256")
    if expected is not None and hashlib.sha256(content).hexdigest() != expected:
        warnings.warn(f"saved noisy labels {path} do not match their checksum (truncated or changed); drawing "
                      f"them again", stacklevel=3)
        return None
    try:
        with np.load(io.BytesIO(content)) as z:
            arrays = {k: z[k] for k in z.files}
        labels = arrays["labels"].astype(np.int64)
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, KeyError: a damaged file
        warnings.warn(f"saved noisy labels {path} are unreadable ({type(exc).__name__}: {exc}); drawing them "
                      f"again", stacklevel=3)
        return None
    if json.loads(json.dumps(key, default=str)) != meta.get("key"):
        return None
    problem = None
    if len(labels) != len(clean) or meta.get("n") != len(clean):
        problem = f"{len(labels)} labels for {len(clean)} samples"
    elif label_digest(labels) != meta.get("sha256"):
        problem = f"sha256 {label_digest(labels)[:12]}… differs from the recorded {str(meta.get('sha256'))[:12]}…"
    elif len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        problem = "labels out of range"
    if problem:
        warnings.warn(f"saved noisy labels {path}: {problem}; drawing them again", stacklevel=3)
        return None
    return NoisyLabels(
        labels=labels, is_noisy=labels != clean, transition=transition_matrix(clean, labels, num_classes),
        model=meta["model"], rate=float(meta["rate"]), convention=meta["convention"],
        expected_transition=arrays.get("expected_transition"), flip_probability=arrays.get("flip_probability"),
        digest=meta["sha256"], options=dict(key["options"]),
    )
