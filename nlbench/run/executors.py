"""Where cells run: in this process (``local``), on SLURM through submitit (``slurm``), or in submitit's
in-process ``debug`` executor.

A job is a ``CellJob`` (a ``submitit.helpers.Checkpointable``) given a list of cell specs and two folders;
it runs each cell that has no current record with ``runner.run_cell``, which reads and writes files only.
Cells that share a feature cache run in one job: every linear-probe cell of one (dataset, backbone,
weights, input size) is one job, because after the first cell computes the features the others cost
seconds. Every other cell (full fine-tuning, LP→FFT) is a job of its own. One submission is one SLURM job
array (``executor.batch()``), at most ``array_parallelism`` tasks running at once.

SLURM parameters (``SlurmOptions``) come from, in order of precedence: the command line, the grid's
``[slurm]`` table, the user's config file (``$NLBENCH_SLURM_CONFIG``, else ``~/.config/nlbench/slurm.toml``,
a ``[slurm]`` table or top-level keys), then the defaults below.

Preemption and time limits: submitit asks SLURM to send SIGUSR2 ``signal_delay_s`` seconds before the
end; the handler calls ``CellJob.checkpoint``, which resubmits the same job (same cells, same folders)
and requeues it. The requeued job skips finished cells and resumes the running one from its last
per-epoch checkpoint (nlbench.engine.checkpoint).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from nlbench.errors import ConfigError
from nlbench.run.records import is_done, read_record
from nlbench.run.slurm_options import SlurmOptions, extra_parameters, options_from_table
from nlbench.run.spec import CellSpec

if TYPE_CHECKING:  # an annotation only: grids loads the methods and torch
    from nlbench.run.grids import Grid

EXECUTORS = ("local", "slurm", "debug")

def user_config_path() -> Path:
    """$NLBENCH_SLURM_CONFIG, else ~/.config/nlbench/slurm.toml."""
    return Path(os.environ.get("NLBENCH_SLURM_CONFIG") or Path.home() / ".config" / "nlbench" / "slurm.toml")


def resolve_slurm_options(grid: Grid | None = None, cli: dict[str, Any] | None = None,
                          config_file: Path | None = None) -> SlurmOptions:
    """Defaults ← user config file ← grid ``[slurm]`` ← command line (None values are "not given")."""
    merged: dict[str, Any] = {}
    path = config_file if config_file is not None else user_config_path()
    if path.is_file():
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read SLURM config file {str(path)!r}: {exc}") from None
        merged.update(options_from_table(raw.get("slurm", raw), f"SLURM config {path}"))
    elif config_file is not None:
        raise ConfigError(f"SLURM config file {str(path)!r} does not exist")
    if grid is not None:
        merged.update(options_from_table(grid.slurm, f"grid {grid.name!r} [slurm]"))
    cli_values = {k: v for k, v in (cli or {}).items() if v is not None and v != ()}
    extra_cli = cli_values.pop("extra", ())
    extra_cli = (extra_cli,) if isinstance(extra_cli, str) else tuple(extra_cli)
    merged.update(options_from_table(cli_values, "command line"))
    if extra_cli:  # flags add to those of the files rather than replace them
        merged["extra"] = tuple(merged.get("extra", ())) + tuple(extra_cli)
    try:
        options = SlurmOptions(**merged)
    except TypeError as exc:
        raise ConfigError(f"SLURM options: {exc}") from None
    return options.validate()


# ------------------------------------------------------------------------------------------ grouping
@dataclass(frozen=True)
class JobGroup:
    """Cells that run in one job, one after another. kind: 'lp' (linear probes sharing one feature
    cache entry) or 'cell' (one cell)."""

    kind: str
    cells: tuple[CellSpec, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        first = self.cells[0]
        if self.kind == "lp":
            from nlbench.engine.identity import backbone_ref  # torch-backed: `nlbench status` loads without it

            size = first.train_config.input_size or "native"
            return f"LP group {backbone_ref(first.backbone, first.backbone_tag)}/" \
                   f"{first.dataset} @ {size} px: {len(self.cells)} cell(s)"
        return first.cell_id


def feature_group_key(spec: CellSpec) -> str:
    """What decides a linear-probe cell's cached features (``nlbench.engine.identity.feature_group``)."""
    from nlbench.engine.identity import feature_group  # torch-backed: `nlbench status` loads without it

    return feature_group(spec)


def group_cells(cells: list[CellSpec]) -> list[JobGroup]:
    """Jobs of ``cells``: all LP cells sharing a feature-cache entry in one job (in the order their first
    cell appears), every other cell alone."""
    groups: list[JobGroup] = []
    lp: dict[str, int] = {}
    for spec in cells:
        if spec.mode == "lp":
            key = feature_group_key(spec)
            if key in lp:
                g = groups[lp[key]]
                groups[lp[key]] = replace(g, cells=g.cells + (spec,))
                continue
            lp[key] = len(groups)
            groups.append(JobGroup("lp", (spec,)))
        else:
            groups.append(JobGroup("cell", (spec,)))
    return groups


# ------------------------------------------------------------------------------------------- the job
class CellsFailed(RuntimeError):
    """Some cells of a job raised; the job fails (after running the others) with their tracebacks."""


class CellJob(submitit.helpers.Checkpointable):
    """The callable a SLURM array task runs: every cell of its group that has no current record.

    A cell that raises does not stop the others; the job then fails with all tracebacks. On preemption
    or time-out submitit calls ``checkpoint`` (inherited): the same call is resubmitted and requeued, and
    the requeued job skips finished cells and resumes a fine-tuning from its per-epoch checkpoint.
    """

    def __call__(self, cells: list[CellSpec], results: str, cache: str) -> list[str]:
        # The cells run here, on the compute node: the cell layer (torch) loads in the job, not in every
        # `nlbench` start that only submits, describes or polls (0.5 s against 3.5 s of CPU).
        import torch

        from nlbench.run.cell import run_cell_once, summary_line

        results_path = Path(results)
        marker = state_dir(results_path, cells[0].grid)
        if not marker.is_dir():
            # The submitting host made this folder; not seeing it means the results folder is not shared.
            raise ConfigError(f"results folder {results_path} is not visible on node {socket.gethostname()} "
                              f"(missing {marker}): it must be on a filesystem the compute nodes share")
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:
            # torch would start one thread per core of the node, not per CPU the job holds: on a shared
            # node that oversubscribes the cores (5-8x slower steps, measured with 2 jobs on 2 cores).
            torch.set_num_threads(int(cpus))
        done, failed = [], []
        for spec in cells:
            if is_done(results_path, spec):
                print(f"{spec.cell_id}: already done", flush=True)
                continue
            try:
                record = run_cell_once(spec, results_path, cache, log=lambda m: print(m, flush=True))
            except Exception:
                failed.append(f"{spec.cell_id}:\n{traceback.format_exc()}")
                print(f"{spec.cell_id}: FAILED\n{failed[-1]}", flush=True)
                continue
            if record is None:  # another process holds the cell's claim (nlbench.run.locks)
                continue
            print(summary_line(record), flush=True)
            done.append(spec.cell_id)
        if failed:
            raise CellsFailed(f"{len(failed)} of {len(cells)} cell(s) failed:\n" + "\n".join(failed))
        return done


def state_dir(results: Path, grid: str) -> Path:
    """``<results>/<grid>/slurm``: submission state and submitit's job folders."""
    return Path(results) / grid / "slurm"


def log_folder(results: Path, grid: str) -> Path:
    """submitit's folder template (``%j`` becomes the job id, ``<array>_<task>`` for array tasks)."""
    return state_dir(results, grid) / "logs" / "%j"


def make_executor(kind: str, folder: Path, options: SlurmOptions | None, name: str) -> submitit.Executor:
    """A submitit executor: 'slurm' (needs sbatch/srun on PATH) or 'debug' (in-process)."""
    if kind not in ("slurm", "debug"):
        raise ConfigError(f"unknown executor {kind!r} for submitit; expected one of: debug, slurm")
    if kind == "slurm":
        missing = [tool for tool in ("sbatch", "srun", "squeue") if not _which(tool)]
        if missing:
            raise ConfigError(f"--executor slurm needs SLURM's {', '.join(missing)} on PATH (none found on "
                              f"{socket.gethostname()}); run on a login node of the cluster, or use --executor local")
    executor = submitit.AutoExecutor(folder=folder, cluster=kind,
                                     slurm_max_num_timeout=(options or SlurmOptions()).max_requeues)
    if kind == "slurm":
        executor.update_parameters(**(options or SlurmOptions()).submitit_parameters(name))
    return executor


def _which(tool: str) -> str | None:
    return shutil.which(tool)


def sbatch_preview(options: SlurmOptions, *, folder: Path, name: str, array_size: int) -> list[str]:
    """The #SBATCH lines submitit will write for an array of ``array_size`` tasks (for --dry-run)."""
    params = {"job_name": name, "time": options.time_min, "signal_delay_s": options.signal_delay_s,
              "array_parallelism": options.array_parallelism}
    optional = {"partition": options.partition, "account": options.account, "qos": options.qos,
                "gpus_per_node": options.gpus, "cpus_per_task": options.cpus_per_task,
                "mem": None if options.mem_gb is None else _mem(options.mem_gb)}
    params.update({k: v for k, v in optional.items() if v is not None})
    if options.extra:
        params["additional_parameters"] = extra_parameters(options.extra)
    if options.setup:
        params["setup"] = list(options.setup)
    try:  # submitit's private helper, imported here so that a submitit without it falls back below
        from submitit.slurm.slurm import _make_sbatch_string

        text = _make_sbatch_string(command="(submitit job)", folder=folder,
                                   map_count=array_size if array_size > 1 else None, **params)
        return [line for line in text.splitlines() if line.startswith("#SBATCH")]
    except (ImportError, TypeError):  # a submitit without this helper: show our own rendering
        flags = {k.replace("_", "-"): v for k, v in params.items()}
        return [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={shlex.quote(str(v))}" for k, v in flags.items()]


def _mem(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if mem_gb == int(mem_gb) else f"{int(mem_gb * 1024)}MB"


# ------------------------------------------------------------------------------ time-limit estimates
@dataclass(frozen=True)
class EpochEstimate:
    seconds: float
    source: str  # where the number comes from (a record's path)


def epoch_estimate(spec: CellSpec, results: Path, *, gpu: bool) -> EpochEstimate | None:
    """The longest fine-tuning epoch measured for this backbone, dataset, input size and batch size in any
    finished record under ``results`` (on a GPU when ``gpu``, else on the CPU), or None without one."""
    from nlbench.engine.identity import backbone_ref  # torch-backed: `nlbench status` loads without it

    prefix = f"{spec.dataset}__{backbone_ref(spec.backbone, spec.backbone_tag)}__"
    best: EpochEstimate | None = None
    for path in sorted(Path(results).glob(f"*/records/{prefix}*.json")):
        try:
            record = read_record(path)
        except ConfigError:  # unreadable or damaged: no estimate from it (run and table name it)
            continue
        if record is None:
            continue
        train = record.config.get("train", {})
        seconds = record.cost.fft_epoch_s
        if not seconds or (record.env.get("cuda") is not None) != gpu:
            continue
        if any(train.get(k) != getattr(spec.train_config, k) for k in ("input_size", "fft_batch_size")):
            continue
        if best is None or max(seconds) > best.seconds:
            best = EpochEstimate(float(max(seconds)), str(path))
    return best


EpochEstimator = Callable[[CellSpec, Path, bool], "EpochEstimate | None"]


def check_time_limit(groups: list[JobGroup], options: SlurmOptions, results: Path,
                     estimator: EpochEstimator | None = None) -> list[str]:
    """Raise ConfigError when one fine-tuning epoch of a cell is estimated to take longer than the time a
    job has before its requeue signal (it could never reach a checkpoint). Returns the estimates used, as
    lines for the dry run."""
    usable = options.time_min * 60 - options.signal_delay_s
    estimator = estimator or (lambda s, r, g: epoch_estimate(s, r, gpu=g))
    lines, seen = [], set()
    for group in groups:
        for spec in group.cells:
            if spec.mode == "lp":
                continue
            key = (spec.dataset, spec.backbone, spec.backbone_tag, spec.train_config.input_size,
                   spec.train_config.fft_batch_size)
            if key in seen:
                continue
            seen.add(key)
            estimate = estimator(spec, results, bool(options.gpus))
            if estimate is None:
                lines.append(f"  epoch estimate {spec.backbone}/{spec.dataset}: none yet (no finished "
                             f"fine-tuning record of this backbone, dataset and input size)")
                continue
            lines.append(f"  epoch estimate {spec.backbone}/{spec.dataset}: {estimate.seconds / 60:.1f} min "
                         f"(from {estimate.source}); usable time per job {usable / 60:.1f} min")
            if estimate.seconds > usable:
                need = int((estimate.seconds + options.signal_delay_s) // 60) + 2
                raise ConfigError(
                    f"time limit {options.time_min} min leaves {usable / 60:.1f} min before the requeue signal, "
                    f"but one fine-tuning epoch of {spec.cell_id} is estimated at {estimate.seconds / 60:.1f} min "
                    f"(measured in {estimate.source}): the job would requeue forever without reaching a "
                    f"checkpoint; ask for --slurm-time {need} or more")
    return lines


def options_summary(options: SlurmOptions) -> str:
    values = {k: v for k, v in asdict(options).items() if v not in (None, ())}
    return ", ".join(f"{k}={v}" for k, v in values.items())
