"""Runs cells: grid → cells → noise → features/backbone → method → record.

``run_cell`` is a top-level function of a cell spec and two folders (results, cache) that reads and
writes files only, so any executor can ship it to another process or a cluster node. ``run_grid``
skips finished cells and hands the rest to an executor.
"""

from __future__ import annotations

import functools
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from nlbench.backbones import create_backbone, file_digest
from nlbench.datasets import Dataset, load_dataset
from nlbench.features import FeatureCache, FeatureKey, default_cache_dir
from nlbench.grids import CellSpec, Grid, expand
from nlbench.images import image_source
from nlbench.labels import noisy_labels
from nlbench.methods import build_method
from nlbench.records import is_done, record_path, write_record
from nlbench.train import TrainConfig, Trainer
from nlbench.transforms import BatchTransform


def weights_identity(spec: CellSpec) -> str:
    """What the backbone weights are, without building the model: a local file's hash or the tag."""
    if spec.backbone_weights:
        return f"file:{file_digest(spec.backbone_weights)}"
    return f"published:{spec.backbone_tag or 'default'}"


def make_transform(spec: CellSpec, dataset: Dataset) -> Callable:
    input_size = spec.train.get("input_size")

    def transform(backbone, augment: bool) -> BatchTransform:
        size = (input_size, input_size) if input_size else tuple(backbone.input_size)
        return BatchTransform(size=size, mean=backbone.mean, std=backbone.std,
                              interpolation=backbone.interpolation, augment=augment, hflip=dataset.hflip)

    return transform


def make_feature_key(spec: CellSpec, dataset: Dataset) -> Callable[[str, int], FeatureKey]:
    weights = weights_identity(spec)
    transform = {"input_size": spec.train.get("input_size") or "checkpoint", "hflip": dataset.hflip}

    def key(split: str, view: int) -> FeatureKey:
        return FeatureKey(backbone=spec.backbone, weights=weights, dataset=dataset.identity, split=split,
                          view=view, transform=transform)

    return key


def selection_scores(selections: list[dict], is_noisy: np.ndarray | None) -> list[dict]:
    """Size, precision and recall of each selected set against the true clean mask."""
    out = []
    for s in selections:
        mask = s["mask"]
        row = {"phase": s["phase"], "epoch": s["epoch"], "size": int(mask.sum())}
        if is_noisy is not None:
            clean = ~is_noisy
            tp = int((mask & clean).sum())
            row["precision"] = round(100.0 * tp / max(1, int(mask.sum())), 4)
            row["recall"] = round(100.0 * tp / max(1, int(clean.sum())), 4)
        out.append(row)
    return out


def environment() -> dict:
    versions = {}
    for pkg in ("nlbench", "torch", "torchvision", "timm", "numpy", "scikit-learn", "open_clip_torch", "submitit"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
            "git_commit": git_commit(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


@functools.cache
def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_cell(spec: CellSpec, results: str | Path, cache: str | Path, *, progress: bool = False,
             log: Callable[[str], None] = print) -> dict:
    """Run one cell and write its record atomically; returns the record."""
    start = time.perf_counter()
    dataset = load_dataset(spec.dataset, **spec.dataset_options)
    train_labels, val_labels, noise = noisy_labels(spec, dataset)
    config = TrainConfig(**spec.train)
    trainer = Trainer(
        config=config,
        num_classes=dataset.num_classes,
        labels=train_labels,
        val_labels=val_labels,
        test_labels=dataset.test.labels,
        images=lambda split, device: image_source(dataset.split(split), device),
        backbone_factory=functools.partial(create_backbone, spec.backbone, pretrained=True,
                                           weights=spec.backbone_weights, tag=spec.backbone_tag),
        feature_cache=FeatureCache(cache),
        feature_key=make_feature_key(spec, dataset),
        transform=make_transform(spec, dataset),
        seed=spec.seed,
        log=log,
        progress=progress,
    )
    torch.manual_seed(spec.seed)
    method = build_method(spec.method, spec.mode, spec.method_params)
    fit = method.run(trainer, spec.mode)
    is_noisy = None
    if dataset.train.labels is not None:
        is_noisy = np.asarray(train_labels) != dataset.train.labels
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    record = {
        "status": "done",
        "cell_id": spec.cell_id,
        "config_hash": spec.config_hash,
        "config": spec.as_dict(),
        **{k: getattr(spec, k) for k in ("grid", "dataset", "backbone", "noise", "rate", "method", "mode", "seed")},
        "test_acc_best": fit.test_acc_best,
        "test_acc_last": fit.test_acc_last,
        "val_acc_best": fit.val_acc_best,
        "best_epoch": fit.best_epoch,
        "val_labels": spec.val_labels,
        "history": fit.history,
        "extra": fit.extra,
        "noise_audit": None if is_noisy is None else {
            "model": spec.noise,
            "convention": noise.convention if noise else "real",
            "nominal_rate": spec.rate,
            "realized_rate": round(float(is_noisy.mean()), 6),
            "transition": None if noise is None else np.round(noise.transition[: dataset.num_classes], 6),
        },
        "selection": selection_scores(trainer.selections, is_noisy),
        "cost": {
            "wall_s": round(time.perf_counter() - start, 3),
            "peak_rss_mb": round(peak_mb, 1),
            "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            "feature_cache": trainer.cache_events,
            **trainer.counters,
        },
        "env": environment(),
    }
    write_record(record_path(Path(results), spec), record)
    return record


def summary_line(record: dict) -> str:
    sel = record["selection"][-1] if record["selection"] else None
    extra = f", clean set {sel['size']} (precision {sel.get('precision', float('nan')):.1f}%)" if sel else ""
    cache = ",".join(f"{k}:{v}" for k, v in sorted(record["cost"]["feature_cache"].items()))
    return (f"{record['cell_id']}: test {record['test_acc_best']:.2f} best / {record['test_acc_last']:.2f} last"
            f"{extra}; {record['cost']['wall_s']:.1f} s" + (f"; features {cache}" if cache else ""))


def plan(grid: Grid, results: Path, *, seeds: int | None = None) -> tuple[list[CellSpec], list[CellSpec]]:
    """(all cells, cells still to run)."""
    cells = expand(grid, seeds=seeds)
    return cells, [c for c in cells if not is_done(results, c)]


def run_grid(grid: Grid, *, results: Path, cache: Path | None = None, seeds: int | None = None,
             progress: bool = False, log: Callable[[str], None] = print) -> list[dict]:
    """Run every cell of ``grid`` that has no current record, one after another in this process."""
    cache = Path(cache) if cache is not None else default_cache_dir()
    cells, todo = plan(grid, results, seeds=seeds)
    if not todo:
        log(f"grid {grid.name}: all {len(cells)} cells are done; nothing to run")
        return []
    log(f"grid {grid.name}: {len(todo)} of {len(cells)} cells to run ({len(cells) - len(todo)} done)")
    from tqdm.auto import tqdm

    records = []
    for spec in tqdm(todo, desc=f"grid {grid.name}", disable=not progress, unit="cell"):
        record = run_cell(spec, results, cache, progress=progress, log=log)
        log(summary_line(record))
        records.append(record)
    return records


def describe_plan(grid: Grid, *, results: Path, cache: Path, seeds: int | None = None) -> str:
    """The dry-run report: every cell with its state, and the feature-cache state of each LP input."""
    cells, todo = plan(grid, results, seeds=seeds)
    pending = {c.cell_id for c in todo}
    lines = [f"grid {grid.name} ({grid.source}): {len(cells)} cells, {len(cells) - len(todo)} done, "
             f"{len(todo)} to run", f"results: {results}/{grid.name}/records   feature cache: {cache}"]
    for c in cells:
        lines.append(f"  [{'todo' if c.cell_id in pending else 'done'}] {c.cell_id}")
    feature_cache = FeatureCache(cache)
    seen = set()
    for c in cells:
        if c.mode not in ("lp", "lp-fft") or (c.dataset, c.backbone, c.backbone_tag, c.backbone_weights) in seen:
            continue
        seen.add((c.dataset, c.backbone, c.backbone_tag, c.backbone_weights))
        try:
            dataset = load_dataset(c.dataset, **c.dataset_options)
        except Exception as exc:  # a dry run on a login node may lack the data: report, don't fail
            lines.append(f"  features {c.backbone}/{c.dataset}: dataset not loadable here ({exc})")
            continue
        key = make_feature_key(c, dataset)
        for split in ("train", "val", "test"):
            hit = feature_cache.load(key(split, 0), len(dataset.split(split))) is not None
            lines.append(f"  features {c.backbone}/{c.dataset}/{split}: {'cached' if hit else 'to compute'}")
    return "\n".join(lines)
