"""The cell layer: runs one cell (a ``CellSpec``) from its data to its record.

``run_cell`` is a top-level function of a cell spec and two folders (results, cache) that reads and writes
files only, so any executor can ship it to another process or a cluster node: it loads the dataset, draws
or reads the cell's noisy labels (``nlbench.run.labels``), builds the cell's engine (``nlbench.run.build``),
runs the method and writes the record. ``run_cell_once`` does that under the cell's claim. The grid level
(planning, running, submitting) is ``nlbench.run.runner``; executors and status import this module, never that
one.
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

from nlbench.datasets import load_dataset
from nlbench.engine.train import determinism
from nlbench.interrupts import note
from nlbench.methods import CellContext, DatasetFacts, NominalNoise, build_method
from nlbench.noise import NoisyLabels
from nlbench.run.build import build_trainer
from nlbench.run.labels import noisy_labels
from nlbench.run.layout import checkpoint_dir, finetuned_features_path, remove_checkpoints
from nlbench.run.locks import claim_cell
from nlbench.run.records import Cost, NoiseAudit, Record, cell_fields, is_done, record_path, write_record
from nlbench.run.spec import CellSpec


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


def oracle_transition(noise: NoisyLabels | None, num_classes: int) -> np.ndarray | None:
    """The (C, C) transition matrix of the cell's synthetic noise in expectation (the realized one where the
    model has no closed form), for methods' oracle options; None under real noise."""
    if noise is None:
        return None
    matrix = noise.expected_transition if noise.expected_transition is not None else noise.transition
    return np.asarray(matrix, dtype=np.float64)[:num_classes, :num_classes]


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
    train_labels, val_labels, noise = noisy_labels(spec, dataset, cache)
    config = spec.train_config
    trainer = build_trainer(
        spec,
        dataset,
        cache,
        labels=train_labels,
        val_labels=val_labels,
        test_labels=dataset.test.labels,
        extra_test_labels={name: split.labels for name, split in dataset.extra_tests.items()},
        log=log,
        progress=progress,
        # Fine-tuning checkpoints every epoch here; a re-run of an interrupted cell resumes from them.
        checkpoint_dir=checkpoint_dir(results, spec),
        finetuned_features_path=finetuned_features_path(results, spec),
        config_hash=spec.config_hash,
    )
    context = CellContext(
        mode=spec.mode, engine=trainer,
        dataset=DatasetFacts(name=dataset.name, num_classes=dataset.num_classes, num_train=len(train_labels)),
        noise=NominalNoise(spec.noise, float(spec.rate)),
        oracle_transition=oracle_transition(noise, dataset.num_classes),
    )
    torch.manual_seed(spec.seed)
    method = spec.method_instance if spec.method_instance is not None else build_method(
        spec.method, spec.mode, spec.method_params)  # built by grids.expand; here for a spec made by hand
    # Threads and deterministic kernels for this cell only; the record states what the numbers depend on.
    with determinism(config, trainer.device) as determinism_settings:
        fit = method.run(context)
    is_noisy = None
    if dataset.train.labels is not None:
        is_noisy = np.asarray(train_labels) != dataset.train.labels
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    record = Record(
        **cell_fields(spec),
        test_acc_best=fit.test_acc_best,
        test_acc_last=fit.test_acc_last,
        extra_test_acc_best=fit.extra_test_acc_best,
        extra_test_acc_last=fit.extra_test_acc_last,
        val_acc_best=fit.val_acc_best,
        best_epoch=fit.best_epoch,
        history=fit.history,
        extra=fit.extra,
        noise_audit=None if is_noisy is None else NoiseAudit(  # the nominal model and rate: the record's own
            convention=noise.convention if noise else "real",
            realized_rate=round(float(is_noisy.mean()), 6),
            labels_sha256=noise.digest if noise else None,  # of train + val labels, as saved
            transition=None if noise is None else np.round(noise.transition[: dataset.num_classes], 6),
        ),
        selection=selection_scores(trainer.selections, is_noisy),
        cost=Cost(
            wall_s=round(time.perf_counter() - start, 3),
            peak_rss_mb=round(peak_mb, 1),
            peak_cuda_mb=round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            feature_cache=trainer.cache_events,
            counters=dict(trainer.counters),
            # Per-epoch fine-tuning seconds (the SLURM time-limit check reads them) and resume points.
            fft_epoch_s=trainer.fft_epoch_seconds or [],
            resumed_from=trainer.resumed_from or [],
        ),
        env=environment(),
        determinism=determinism_settings,
    )
    write_record(record_path(Path(results), spec), record)
    remove_checkpoints(results, spec)  # only once the record is safely on disk
    return record.to_dict()


def summary_line(record: dict) -> str:
    sel = record["selection"][-1] if record["selection"] else None
    extra = f", clean set {sel['size']} (precision {sel.get('precision', float('nan')):.1f}%)" if sel else ""
    cache = ",".join(f"{k}:{v}" for k, v in sorted(record["cost"]["feature_cache"].items()))
    return (f"{record['cell_id']}: test {record['test_acc_best']:.2f} best / {record['test_acc_last']:.2f} last"
            f"{extra}; {record['cost']['wall_s']:.1f} s" + (f"; features {cache}" if cache else ""))


def run_cell_once(spec: CellSpec, results: str | Path, cache: str | Path, *, progress: bool = False,
                  log: Callable[[str], None] = print) -> dict | None:
    """``run_cell`` under the cell's claim (nlbench.run.locks), so that processes sharing a grid never run a
    cell twice; None when another live process holds the claim or finished the cell meanwhile."""
    with claim_cell(results, spec.grid, spec.cell_id, log=log) as busy:
        if busy is not None:
            log(f"{spec.cell_id}: running in another process ({busy}); skipped")
            return None
        # Finished by another process after our plan was made? (The plan named a torn record already.)
        if is_done(Path(results), spec, warn=False):
            log(f"{spec.cell_id}: finished by another process; skipped")
            return None
        try:
            return run_cell(spec, results, cache, progress=progress, log=log)
        except KeyboardInterrupt as exc:
            resumes = "it resumes from its last checkpoint" if any(
                checkpoint_dir(results, spec).glob("*.pt")) else "it runs again"
            done = len(list(record_path(Path(results), spec).parent.glob("*.json")))
            note(exc, f"cell {spec.cell_id} (a rerun skips the {done} finished record(s) in "
                      f"{record_path(Path(results), spec).parent}; {resumes})")
            raise
