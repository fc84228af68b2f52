"""Run records in the runner's schema, written with the runner's own writers, for the report tests.

Each cell's numbers follow a shape chosen per method (FFT CE peaks and decays, the others hold), drawn
from a seeded generator; no model is trained. Fine-tuning cells also get the before/after test features
``[train] save_finetuned_features`` would save: well-separated class clusters before, blurred after.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlbench.engine.distortion import SavedTestFeatures, save_test_features
from nlbench.run.grids import expand, load_grid
from nlbench.run.layout import finetuned_features_path
from nlbench.run.records import Cost, NoiseAudit, Record, cell_fields, record_path, write_record

NUM_CLASSES = 10


def _history(epochs: int, curve: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Validation every epoch, test only at a new best validation epoch and the last (as Trainer does)."""
    history, best = [], -1.0
    for epoch in range(epochs):
        val = float(curve[epoch] + rng.normal(0, 0.5))
        improved = val > best
        best = max(best, val)
        test = float(curve[epoch] + rng.normal(0, 0.5)) if improved or epoch == epochs - 1 else None
        history.append({"epoch": epoch, "train_loss": 1.0 / (epoch + 1), "val_acc": round(val, 4),
                        "test_acc": None if test is None else round(test, 4)})
    return history


def make_record(spec, rng: np.random.Generator) -> Record:
    epochs = {"fft": 6, "lp": 12, "lp-fft": 4}[spec.mode]
    top = {"ce": 70.0, "gce": 74.0, "elr": 78.0, "dividemix": 80.0, "turn": 84.0}.get(spec.method, 72.0)
    top -= 30 * spec.rate + rng.normal(0, 1.0)
    rise = np.minimum(1.0, (np.arange(epochs) + 1) / 3)
    curve = top * rise
    if spec.mode == "fft" and spec.method == "ce":
        curve = curve - np.maximum(0, np.arange(epochs) - 2) * 6.0  # memorises: peaks, then decays
    history = _history(epochs, curve, rng)
    best = max(range(epochs), key=lambda e: (history[e]["val_acc"], -e))
    tested = [h for h in history if h["test_acc"] is not None]
    best_test = next(h["test_acc"] for h in tested if h["epoch"] == best)
    selection = []
    if spec.method in ("dividemix", "turn"):
        steps = range(2, epochs) if spec.method == "dividemix" else [0]
        selection = [{"phase": "fft" if spec.method == "turn" else "lp", "epoch": e, "size": int(800 + 10 * e),
                      "precision": round(90.0 + e - 10 * spec.rate, 4), "recall": round(70.0 + e, 4)} for e in steps]
    transition = np.full((NUM_CLASSES, NUM_CLASSES), spec.rate / NUM_CLASSES)
    transition[np.diag_indices(NUM_CLASSES)] += 1 - spec.rate
    wall = {"fft": 60.0, "lp": 5.0, "lp-fft": 40.0}[spec.mode] * (1.5 if spec.method == "dividemix" else 1.0)
    return Record(
        **cell_fields(spec), test_acc_best=best_test, test_acc_last=history[-1]["test_acc"],
        extra_test_acc_best={}, extra_test_acc_last={}, val_acc_best=history[best]["val_acc"], best_epoch=best,
        history=history, extra={},
        noise_audit=NoiseAudit(convention="reference", realized_rate=spec.rate * 0.9, labels_sha256="0" * 64,
                               transition=transition),
        selection=selection,
        cost=Cost(wall_s=wall + rng.uniform(0, 1), peak_rss_mb=900.0, peak_cuda_mb=None, feature_cache={},
                  counters={"backbone_forward_images": 1000, "backbone_backward_images": 500, "backbones_built": 1},
                  fft_epoch_s=[], resumed_from=[]),
        env={"python": "3.11", "platform": "test", "versions": {}, "git_commit": "abc123", "cuda": None},
        determinism=None,
    )


def fake_features(spec, rng: np.random.Generator, n: int = 100, dim: int = 16) -> SavedTestFeatures:
    labels = np.arange(n) % NUM_CLASSES
    centres = rng.normal(0, 4.0, size=(NUM_CLASSES, dim))
    before = centres[labels] + rng.normal(0, 1.0, size=(n, dim))
    after = centres[labels] + rng.normal(0, 1.0 + 8 * spec.rate, size=(n, dim))  # noisier labels, more blur
    return SavedTestFeatures(before=before, after=after, labels=labels, config_hash=spec.config_hash)


def write_records(grid_path: str | Path, results: Path, *, features: bool = True) -> list[dict]:
    """Write a record (and, for fine-tuning cells, the saved test features) for every cell of the grid."""
    records = []
    for spec in expand(load_grid(str(grid_path))):
        rng = np.random.default_rng([spec.seed, int(spec.rate * 100), len(spec.cell_id)])
        record = make_record(spec, rng)
        write_record(record_path(results, spec), record)
        if features and spec.mode in ("fft", "lp-fft"):
            save_test_features(finetuned_features_path(results, spec), fake_features(spec, rng))
        records.append(record.to_dict())
    return records
