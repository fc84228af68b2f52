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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nlbench import identity
from nlbench.atomic import check_writable
from nlbench.backbones import create_backbone
from nlbench.checkpoint import checkpoint_dir, remove_checkpoints
from nlbench.datasets import Dataset, load_dataset
from nlbench.distortion import finetuned_features_path
from nlbench.errors import ConfigError
from nlbench.features import FeatureCache, FeatureKey, default_cache_dir
from nlbench.grids import CellSpec, Grid, expand, grid_files
from nlbench.images import image_source
from nlbench.interrupts import note
from nlbench.labels import noisy_labels
from nlbench.locks import claim_cell
from nlbench.methods import CellContext, DatasetFacts, NominalNoise, build_method
from nlbench.noise import NoisyLabels
from nlbench.progress import GridProgress
from nlbench.records import Cost, NoiseAudit, Record, cell_fields, is_done, record_path, records_dir, write_record
from nlbench.train import TrainConfig, Trainer, determinism
from nlbench.transforms import BatchTransform

if TYPE_CHECKING:
    from nlbench.executors import JobGroup, SlurmOptions
    from nlbench.status import CellStatus


def weights_identity(spec: CellSpec) -> str:
    """What the backbone weights are, without building the model (``nlbench.identity.weights_identity``)."""
    return identity.weights_identity(spec.backbone, spec.backbone_tag, spec.backbone_weights)


def make_transform(spec: CellSpec, dataset: Dataset) -> Callable:
    input_size = spec.train.get("input_size")

    def transform(backbone, augment: bool) -> BatchTransform:
        size = (input_size, input_size) if input_size else tuple(backbone.input_size)
        return BatchTransform(size=size, mean=backbone.mean, std=backbone.std,
                              interpolation=backbone.interpolation, augment=augment, hflip=dataset.hflip)

    return transform


def make_feature_key(spec: CellSpec, dataset: Dataset) -> Callable[[str, int], FeatureKey]:
    """The cell's feature-cache keys (``nlbench.identity.cell_feature_key``)."""
    return identity.cell_feature_key(spec, dataset)


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
    config = TrainConfig(**spec.train)
    trainer = Trainer(
        config=config,
        num_classes=dataset.num_classes,
        labels=train_labels,
        val_labels=val_labels,
        test_labels=dataset.test.labels,
        extra_test_labels={name: split.labels for name, split in dataset.extra_tests.items()},
        images=lambda split, device: image_source(dataset.split(split), device),
        backbone_factory=functools.partial(create_backbone, spec.backbone, pretrained=True,
                                           weights=spec.backbone_weights, tag=spec.backbone_tag),
        feature_cache=FeatureCache(cache),
        feature_key=make_feature_key(spec, dataset),
        transform=make_transform(spec, dataset),
        seed=spec.seed,
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
    method = build_method(spec.method, spec.mode, spec.method_params)
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


def plan(grid: Grid, results: Path, *, seeds: int | None = None) -> tuple[list[CellSpec], list[CellSpec]]:
    """(all cells, cells still to run)."""
    cells = expand(grid, seeds=seeds)
    return cells, [c for c in cells if not is_done(results, c)]


def run_grid(grid: Grid, *, results: Path, cache: Path | None = None, seeds: int | None = None,
             executor: str = "local", progress: bool = False, log: Callable[[str], None] = print) -> list[dict]:
    """Run every cell of ``grid`` that has no current record, in this process.

    executor: 'local' calls ``run_cell`` cell after cell; 'debug' runs the same jobs SLURM would (cells
    grouped, ``CellJob``) through submitit's DebugExecutor, in-process, with pdb on an error. A cell
    killed half-way resumes from its last fine-tuning checkpoint on the next run; finished cells are
    never run again. Returns the new records."""
    if executor not in ("local", "debug"):
        raise ConfigError(f"run_grid runs in-process executors (local, debug); got {executor!r} (see submit_grid)")
    cache = Path(cache) if cache is not None else default_cache_dir()
    cells, todo = plan(grid, results, seeds=seeds)
    if not todo:
        log(f"grid {grid.name}: all {len(cells)} cells are done; nothing to run")
        return []
    check_writable_folders(Path(results), grid.name, cache)
    log(f"grid {grid.name}: {len(todo)} of {len(cells)} cells to run ({len(cells) - len(todo)} done)")
    if executor == "debug":
        return _run_debug(grid, todo, results=Path(results), cache=cache, log=log)
    from tqdm.auto import tqdm

    records = []
    overall = GridProgress(len(cells), todo)
    for spec in tqdm(todo, desc=f"grid {grid.name}", disable=not progress, unit="cell"):
        record = run_cell_once(spec, results, cache, progress=progress, log=log)
        overall.finished(spec)
        if record is not None:  # None: another run holds or finished this cell
            log(summary_line(record))
            records.append(record)
        log(f"grid {grid.name}: {overall.line()}")
    if len(records) < len(todo):
        log(f"grid {grid.name}: {len(todo) - len(records)} cell(s) left to other processes running this grid")
    return records


def check_writable_folders(results: Path, grid: str, cache: Path) -> None:
    """Before any work: the grid's results folder and the cache must take files (read-only mount,
    permissions), else one ConfigError line rather than a traceback after a computed cell."""
    check_writable(records_dir(results, grid), "results folder", "choose a writable one with --results")
    check_writable(cache, "cache folder", "choose a writable one with --cache or $NLBENCH_CACHE")


def run_cell_once(spec: CellSpec, results: str | Path, cache: str | Path, *, progress: bool = False,
                  log: Callable[[str], None] = print) -> dict | None:
    """``run_cell`` under the cell's claim (nlbench.locks), so that processes sharing a grid never run a
    cell twice; None when another live process holds the claim or finished the cell meanwhile."""
    with claim_cell(results, spec.grid, spec.cell_id, log=log) as busy:
        if busy is not None:
            log(f"{spec.cell_id}: running in another process ({busy}); skipped")
            return None
        if is_done(Path(results), spec):  # finished by another process after our plan was made
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


def _run_debug(grid: Grid, todo: list[CellSpec], *, results: Path, cache: Path,
               log: Callable[[str], None]) -> list[dict]:
    from nlbench.executors import CellJob, group_cells, log_folder, make_executor, state_dir
    from nlbench.records import read_record

    state_dir(results, grid.name).mkdir(parents=True, exist_ok=True)
    executor = make_executor("debug", log_folder(results, grid.name), None, name=f"nlbench-{grid.name}")
    groups = group_cells(todo)
    jobs = [executor.submit(CellJob(), list(g.cells), str(results), str(cache)) for g in groups]
    for group, job in zip(groups, jobs, strict=True):
        log(f"debug job {job.job_id}: {group.label}")
        job.result()  # runs the job here; submitit's DebugJob opens pdb on an exception
    return [r.to_dict() for c in todo if (r := read_record(record_path(results, c))) is not None]


@dataclass
class Submission:
    """What ``submit_grid`` did: the groups it submitted with their job ids, and every cell's status
    before submitting."""

    groups: list[JobGroup] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    before: list[CellStatus] = field(default_factory=list)


def check_results_folder(results: Path, log: Callable[[str], None] = print) -> None:
    """SLURM jobs write records into ``results`` from the compute nodes: it must exist (we don't create a
    folder that may be on the wrong filesystem) and should not be node-local storage."""
    results = Path(results)
    if not results.is_dir():
        raise ConfigError(f"results folder {str(results)!r} does not exist; for --executor slurm it must be an "
                          f"existing folder on a filesystem the compute nodes share (create it: mkdir -p {results})")
    resolved = results.resolve()
    node_local = ("/tmp", "/var/tmp", "/dev/shm", "/run")
    if any(resolved == Path(p) or Path(p) in resolved.parents for p in node_local):
        log(f"warning: results folder {resolved} is on node-local storage: jobs on other nodes will not see it "
            f"(fine on a single-node cluster)")


def submit_grid(grid: Grid, *, results: Path, options: SlurmOptions, cache: Path | None = None,
                seeds: int | None = None, log: Callable[[str], None] = print) -> Submission:
    """Submit every cell that is neither done nor queued/running to SLURM as one job array.

    ``options`` is a resolved ``executors.SlurmOptions``. Holds the grid's state lock from the status query
    to the state update, so concurrent submissions cannot both submit a cell. sbatch's error is raised
    verbatim as ConfigError, with nothing recorded."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    from nlbench.executors import CellJob, check_time_limit, group_cells, log_folder, make_executor, state_dir
    from nlbench.status import SubmissionState, cell_statuses

    check_results_folder(Path(results), log)
    check_writable_folders(Path(results), grid.name, Path(cache) if cache is not None else default_cache_dir())
    # Absolute paths: jobs may start in another directory, and status may be asked from anywhere.
    results = Path(results).resolve()
    cache = (Path(cache) if cache is not None else default_cache_dir()).resolve()
    cells, todo = plan(grid, results, seeds=seeds)
    # Checks that need no cluster come first: a bad time limit or a host without SLURM fail fast.
    check_time_limit(group_cells(todo), options, results)
    folder = log_folder(results, grid.name)
    executor = make_executor("slurm", folder, options, name=f"nlbench-{grid.name}")
    state = SubmissionState(results, grid.name)
    state_dir(results, grid.name).mkdir(parents=True, exist_ok=True)
    with state.locked():
        before = cell_statuses(cells, results)
        status_of = {s.cell_id: s for s in before}
        to_run = [c for c in cells if status_of[c.cell_id].status in ("pending", "failed")]
        busy = sum(1 for s in before if s.status in ("queued", "running"))
        done = sum(1 for s in before if s.status == "done")
        if not to_run:
            log(f"grid {grid.name}: nothing to submit ({done} done, {busy} queued or running)")
            return Submission(before=before)
        groups = group_cells(to_run)
        folder.parent.mkdir(parents=True, exist_ok=True)
        existing = set(folder.parent.iterdir())
        try:
            with executor.batch():
                jobs = [executor.submit(CellJob(), list(g.cells), str(results), str(cache)) for g in groups]
        except (FailedJobError, FailedSubmissionError) as exc:
            for path in set(folder.parent.iterdir()) - existing:  # pickles and sbatch file of the refused array
                if path.is_file():
                    path.unlink(missing_ok=True)
            raise ConfigError(f"sbatch refused the submission of grid {grid.name!r}: {str(exc).strip()}") from None
        state.record_submissions({
            c.cell_id: {"job_id": job.job_id, "config_hash": c.config_hash, "log_folder": str(folder)}
            for job, g in zip(jobs, groups, strict=True) for c in g.cells
        })
    array = jobs[0].job_id.split("_")[0]
    log(f"grid {grid.name}: submitted {len(to_run)} cell(s) as {len(groups)} job(s) (SLURM job {array}"
        f"{f', array of {len(groups)}' if len(groups) > 1 else ''}); {done} done, {busy} already queued or running")
    for job, g in zip(jobs, groups, strict=True):
        log(f"  {job.job_id}: {g.label}")
    registered = str(grid_files().get(grid.name)) == grid.source
    log(f"  logs: {folder}\n  follow with: nlbench status --grid {grid.name if registered else grid.source} "
        f"--results {results}")
    return Submission(groups=groups, job_ids=[j.job_id for j in jobs], before=before)


def describe_plan(grid: Grid, *, results: Path, cache: Path, seeds: int | None = None, executor: str = "local",
                  options: SlurmOptions | None = None) -> str:
    """The dry-run report: every cell with its state, the feature-cache state of each LP input and, for
    --executor slurm/debug, the jobs the cells are grouped into and the sbatch parameters.

    Built from sections (lists of lines) so that more (a cost estimate) can be appended."""
    cells, todo = plan(grid, results, seeds=seeds)
    sections = [_cells_section(grid, cells, todo, results, cache), _features_section(cells, cache)]
    if executor in ("slurm", "debug"):
        sections.append(_jobs_section(grid, todo, results, executor, options))
    sections.append(_cost_section(todo))
    return "\n".join(line for section in sections for line in section)


def _cost_section(todo: list[CellSpec]) -> list[str]:
    from nlbench.costs import estimate_gpu_hours

    if not todo:
        return []
    return ["estimated GPU time of the cells to run (H100, nlbench/costs.py):",
            *("  " + line for line in estimate_gpu_hours(todo).format().splitlines())]


def _cells_section(grid: Grid, cells: list[CellSpec], todo: list[CellSpec], results: Path, cache: Path) -> list[str]:
    pending = {c.cell_id for c in todo}
    lines = [f"grid {grid.name} ({grid.source}): {len(cells)} cells, {len(cells) - len(todo)} done, "
             f"{len(todo)} to run", f"results: {results}/{grid.name}/records   feature cache: {cache}"]
    for c in cells:
        lines.append(f"  [{'todo' if c.cell_id in pending else 'done'}] {c.cell_id}")
    return lines


def _features_section(cells: list[CellSpec], cache: Path) -> list[str]:
    lines = []
    feature_cache = FeatureCache(cache)
    seen = set()
    for c in cells:
        if c.mode not in ("lp", "lp-fft") or identity.feature_group(c) in seen:
            continue
        seen.add(identity.feature_group(c))
        try:
            dataset = load_dataset(c.dataset, **c.dataset_options)
        except Exception as exc:  # a dry run on a login node may lack the data: report, don't fail
            lines.append(f"  features {c.backbone}/{c.dataset}: dataset not loadable here ({exc})")
            continue
        key = make_feature_key(c, dataset)
        for split in ("train", "val", "test"):
            hit = feature_cache.load(key(split, 0), len(dataset.split(split))) is not None
            lines.append(f"  features {c.backbone}/{c.dataset}/{split}: {'cached' if hit else 'to compute'}")
    return lines


def _jobs_section(grid: Grid, todo: list[CellSpec], results: Path, executor: str,
                  options: SlurmOptions | None) -> list[str]:
    from nlbench.executors import (
        SlurmOptions,
        check_time_limit,
        group_cells,
        log_folder,
        options_summary,
        sbatch_preview,
    )

    groups = group_cells(todo)
    lines = [f"jobs ({executor}): {len(groups)} job(s) for {len(todo)} cell(s) "
             f"(LP cells sharing a feature cache run together; every other cell is a job of its own)"]
    for k, g in enumerate(groups):
        lines.append(f"  job {k}: {g.label}")
        if g.kind == "lp":
            lines += [f"      {c.cell_id}" for c in g.cells]
    if executor == "slurm" and groups:
        options = options or SlurmOptions()
        if not Path(results).is_dir():
            lines.append(f"note: results folder {results} does not exist; create it on a filesystem the compute "
                         f"nodes share before submitting")
        lines.append(f"slurm options: {options_summary(options)}")
        lines.append(f"sbatch parameters (one array of {len(groups)} task(s)):")
        lines += [f"  {line}" for line in sbatch_preview(options, folder=log_folder(results, grid.name),
                                                           name=f"nlbench-{grid.name}", array_size=len(groups))]
        lines += check_time_limit(groups, options, results)
    return lines
