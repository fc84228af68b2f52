"""The grid level: plans a grid's cells, runs them in this process or submits them to SLURM, describes a plan.

One cell is the cell layer's (``nlbench.run.cell``): ``run_grid`` skips finished cells and hands the rest to
``run_cell_once`` (or, with the debug executor, to the jobs SLURM would run); ``submit_grid`` submits them
through ``nlbench.run.executors``; ``describe_plan`` is the dry run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from submitit.core.utils import FailedJobError, FailedSubmissionError
from tqdm.auto import tqdm

from nlbench.atomic import check_writable
from nlbench.datasets import load_dataset
from nlbench.engine.features import FeatureCache, default_cache_dir
from nlbench.engine.identity import cell_feature_key, feature_group
from nlbench.errors import ConfigError
from nlbench.run.cell import run_cell, run_cell_once, summary_line  # noqa: F401 (run_cell: the cell's entry point, re-exported)
from nlbench.run.costs import estimate_gpu_hours
from nlbench.run.executors import (
    CellJob,
    JobGroup,
    SlurmOptions,
    check_time_limit,
    group_cells,
    log_folder,
    make_executor,
    options_summary,
    sbatch_preview,
    state_dir,
)
from nlbench.run.grids import Grid, expand, grid_files
from nlbench.run.overrides import describe_overrides
from nlbench.run.progress import GridProgress
from nlbench.run.records import is_done, read_record, record_path, records_dir
from nlbench.run.spec import CellSpec
from nlbench.run.status import CellStatus, SubmissionState, cell_statuses
from nlbench.run.workers import run_with_workers


def plan(grid: Grid, results: Path, *, seeds: int | None = None,
         warn: bool = True) -> tuple[list[CellSpec], list[CellSpec]]:
    """(all cells, cells still to run). A cell is done only with a current record: a damaged one raises
    ``RecordError`` (never "to run": its rerun would overwrite it), a torn or empty one is to run and named
    in a warning line unless ``warn`` is false (``nlbench.run.records.read_record``)."""
    cells = expand(grid, seeds=seeds)
    return cells, [c for c in cells if not is_done(results, c, warn=warn)]


def run_grid(grid: Grid, *, results: Path, cache: Path | None = None, seeds: int | None = None,
             executor: str = "local", progress: bool = False, log: Callable[[str], None] = print,
             workers: int | None = None, devices: list[str] | None = None) -> list[dict]:
    """Run every cell of ``grid`` that has no current record, in this process.

    executor: 'local' calls ``run_cell`` cell after cell; 'debug' runs the same jobs SLURM would (cells
    grouped, ``CellJob``) through submitit's DebugExecutor, in-process, with pdb on an error. A cell
    killed half-way resumes from its last fine-tuning checkpoint on the next run; finished cells are
    never run again. ``workers``/``devices``: the local cells run in worker processes, one per device
    (``nlbench.run.workers``). Returns the new records."""
    if executor not in ("local", "debug"):
        raise ConfigError(f"run_grid runs in-process executors (local, debug); got {executor!r} (see submit_grid)")
    if (workers is not None or devices) and executor != "local":
        raise ConfigError(f"--workers/--devices run local worker processes; got --executor {executor}")
    cache = Path(cache) if cache is not None else default_cache_dir()
    cells, todo = plan(grid, results, seeds=seeds)
    if not todo:
        log(f"grid {grid.name}: all {len(cells)} cells are done; nothing to run")
        return []
    check_writable_folders(Path(results), grid.name, cache)
    log(f"grid {grid.name}: {len(todo)} of {len(cells)} cells to run ({len(cells) - len(todo)} done)")
    if executor == "debug":
        return _run_debug(grid, todo, results=Path(results), cache=cache, log=log)
    records = []
    overall = GridProgress(len(cells), todo)
    if workers is not None or devices:
        return _run_workers(grid, todo, overall, results=Path(results), cache=cache, workers=workers,
                            devices=devices, progress=progress, log=log)
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


def _run_workers(grid: Grid, todo: list[CellSpec], overall: GridProgress, *, results: Path, cache: Path,
                 workers: int | None, devices: list[str] | None, progress: bool,
                 log: Callable[[str], None]) -> list[dict]:
    """``run_grid``'s cells in worker processes, with this process's one progress display."""
    bar = tqdm(total=len(todo), desc=f"grid {grid.name}", disable=not progress, unit="cell")

    def finished(spec: CellSpec, record: dict | None) -> None:
        overall.finished(spec)
        bar.update()
        if record is not None:
            log(summary_line(record))
        log(f"grid {grid.name}: {overall.line()}")

    try:
        records = run_with_workers(grid.name, todo, results=results, cache=cache, workers=workers, devices=devices,
                                   on_finished=finished, log=log)
    finally:
        bar.close()
    if len(records) < len(todo):
        log(f"grid {grid.name}: {len(todo) - len(records)} cell(s) left to other processes running this grid")
    return records


def check_writable_folders(results: Path, grid: str, cache: Path) -> None:
    """Before any work: the grid's results folder and the cache must take files (read-only mount,
    permissions), else one ConfigError line rather than a traceback after a computed cell."""
    check_writable(records_dir(results, grid), "results folder", "choose a writable one with --results")
    check_writable(cache, "cache folder", "choose a writable one with --cache or $NLBENCH_CACHE")


def _run_debug(grid: Grid, todo: list[CellSpec], *, results: Path, cache: Path,
               log: Callable[[str], None]) -> list[dict]:
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
        before = cell_statuses(cells, results, warn=False)  # the plan named torn records
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
    sets = "".join(f" --set {o}" for o in grid.overrides)
    log(f"  logs: {folder}\n  follow with: nlbench status --grid {grid.name if registered else grid.source} "
        f"--results {results}{sets}")
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
    if not todo:
        return []
    return ["estimated GPU time of the cells to run (H100, nlbench/run/costs.py):",
            *("  " + line for line in estimate_gpu_hours(todo).format().splitlines())]


def _cells_section(grid: Grid, cells: list[CellSpec], todo: list[CellSpec], results: Path, cache: Path) -> list[str]:
    pending = {c.cell_id for c in todo}
    lines = [f"grid {grid.name} ({grid.source}): {len(cells)} cells, {len(cells) - len(todo)} done, "
             f"{len(todo)} to run", f"results: {results}/{grid.name}/records   feature cache: {cache}"]
    if grid.overrides:
        lines.insert(1, describe_overrides(grid.overrides))
    for c in cells:
        lines.append(f"  [{'todo' if c.cell_id in pending else 'done'}] {c.cell_id}")
    return lines


def _features_section(cells: list[CellSpec], cache: Path) -> list[str]:
    lines = []
    feature_cache = FeatureCache(cache)
    seen = set()
    for c in cells:
        if c.mode not in ("lp", "lp-fft") or feature_group(c) in seen:
            continue
        seen.add(feature_group(c))
        try:
            dataset = load_dataset(c.dataset, **c.dataset_options)
        except Exception as exc:  # a dry run on a login node may lack the data: report, don't fail
            lines.append(f"  features {c.backbone}/{c.dataset}: dataset not loadable here ({exc})")
            continue
        key = cell_feature_key(c, dataset)
        for split in ("train", "val", "test"):
            hit = feature_cache.load(key(split, 0), len(dataset.split(split))) is not None
            lines.append(f"  features {c.backbone}/{c.dataset}/{split}: {'cached' if hit else 'to compute'}")
    return lines


def _jobs_section(grid: Grid, todo: list[CellSpec], results: Path, executor: str,
                  options: SlurmOptions | None) -> list[str]:
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
