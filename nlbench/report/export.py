"""Run records into experiment trackers: ``nlbench export --grid G --to mlflow | tensorboard``.

MLflow: one run per record in the experiment named after the grid (or ``experiment``). The cell's identity
is the run's tags (``dataset``, ``backbone``, ``noise``, ``rate``, ``method``, ``mode``, ``seed``, ...,
``cell_id``, ``config_hash``; the run's name is the cell id), the rest of its config the params
(``train.lp_epochs``, ``method_params.q``, ...), the per-epoch history metric steps (step = epoch; a
selected clean set's ``selection_precision/<phase>`` too), the record's results and costs metrics at step 0
(``test_acc_best``, ``wall_s``, ...), and the record itself the artifact ``record.json``. A run is keyed by
the grid and the config hash: exporting again leaves a run whose record is unchanged as it is (tag
``nlbench.record_sha256``), and replaces one whose record changed (the cell was run again: the old run is
deleted, MLflow's soft delete, so its metric steps are not mixed with the new ones); it never adds a second
run for one key.

TensorBoard: one run folder per record, ``DIR/<grid>/<cell_id>/``, with the same curves as scalars, the
results as ``summary/<metric>`` (step 0), the identity and config as hyperparameters (the HParams dashboard,
the results its metrics) and the record as text. A folder is rewritten whole (in a temporary
folder, then renamed into place) when its record changed, and left as it is otherwise (``record.sha256``).

The trackers are optional extras (``pip install 'nlbench[mlflow]'`` / ``'nlbench[tensorboard]'``); without
one the export stops with one line saying what to install.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlbench.errors import ConfigError
from nlbench.run.frames import IDENTITY_COLUMNS, PROVENANCE_COLUMNS, result_row

TARGETS = ("mlflow", "tensorboard")
MLFLOW_EXTRA = ("--to mlflow needs MLflow: pip install 'nlbench[mlflow]' (mlflow-skinny, with SQLAlchemy for a "
                "SQLite store)")
TENSORBOARD_EXTRA = "--to tensorboard needs TensorBoard: pip install 'nlbench[tensorboard]'"
# MLflow's limits per log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
SHA_TAG = "nlbench.record_sha256"


@dataclass
class ExportSummary:
    """What an export did, per record: created (new), replaced (its record changed), unchanged."""

    target: str
    where: str
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.target}: {len(self.created)} run(s) created, {len(self.replaced)} replaced, "
                f"{len(self.unchanged)} unchanged ({self.where})")


def record_sha256(record: dict) -> str:
    """The record's content hash: a re-export compares it to tell an unchanged record."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def run_tags(record: dict) -> dict[str, str]:
    """The cell's identity (and the commit it ran on) as string tags; absent values are left out."""
    row = result_row(record)
    return {k: str(row[k]) for k in (*IDENTITY_COLUMNS, "git_commit") if row.get(k) is not None}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in sorted(value.items()):
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def run_params(record: dict) -> dict[str, str]:
    """The record's config (the cell spec less its identity), flattened to ``train.lp_epochs`` and the like."""
    out: dict[str, Any] = {}
    _flatten("", record.get("config") or {}, out)
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in out.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summary_metrics(record: dict) -> dict[str, float]:
    """Results, selection and costs of the record (the numeric, finite columns of ``nlbench.results``
    that are neither identity nor config)."""
    row = result_row(record)
    skip = set(IDENTITY_COLUMNS) | set(PROVENANCE_COLUMNS)
    return {k: float(v) for k, v in row.items()
            if k not in skip and not k.startswith(("params.", "train.", "version.")) and _is_number(v)}


def curves(record: dict) -> list[tuple[str, int, float]]:
    """(metric, epoch, value) of the per-epoch history (``<phase>/<metric>`` where an entry names its phase)
    and of each selected clean set (``selection_<size|precision|recall>/<phase>``)."""
    out = []
    for entry in record.get("history") or []:
        phase = entry.get("phase")
        for key, value in entry.items():
            if key not in ("epoch", "phase") and _is_number(value):
                out.append((f"{phase}/{key}" if phase else key, int(entry["epoch"]), float(value)))
    for entry in record.get("selection") or []:
        for key in ("size", "precision", "recall"):
            if _is_number(entry.get(key)):
                out.append((f"selection_{key}/{entry.get('phase', 'selection')}", int(entry["epoch"]),
                            float(entry[key])))
    return out


# ------------------------------------------------------------------------------------------------- MLflow
def _mlflow_client(tracking_uri: str | None):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ConfigError(MLFLOW_EXTRA) from None
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except MlflowException as exc:
        raise ConfigError(f"MLflow tracking URI {tracking_uri!r}: {str(exc).splitlines()[0]}") from None


def _default_artifacts(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store beside its database file (MLflow's default would be the working folder)."""
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts")
    return None


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_default_artifacts(tracking_uri))
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def export_mlflow(records: list[dict], *, tracking_uri: str | None = None, experiment: str | None = None,
                  log: Callable[[str], None] = print) -> ExportSummary:
    """Log each record as one MLflow run (see the module docstring); returns what was created, replaced and
    left unchanged."""
    client = _mlflow_client(tracking_uri)
    from mlflow.entities import Metric, Param, RunTag

    uri = client.tracking_uri
    summary = ExportSummary("mlflow", uri)
    experiments: dict[str, str] = {}
    for record in records:
        name = experiment or record["grid"]
        if name not in experiments:
            experiments[name] = _experiment_id(client, name, uri)
        experiment_id = experiments[name]
        sha = record_sha256(record)
        key = f"tags.grid = '{record['grid']}' and tags.config_hash = '{record['config_hash']}'"
        existing = client.search_runs([experiment_id], filter_string=key, max_results=10)
        if len(existing) == 1 and existing[0].data.tags.get(SHA_TAG) == sha:
            summary.unchanged.append(record["cell_id"])
            continue
        for old in existing:
            client.delete_run(old.info.run_id)
        tags = {**run_tags(record), SHA_TAG: sha, "mlflow.runName": record["cell_id"]}
        run = client.create_run(experiment_id, run_name=record["cell_id"])
        run_id = run.info.run_id
        now = run.info.start_time
        metrics = [Metric(k, v, now, 0) for k, v in summary_metrics(record).items()]
        metrics += [Metric(k, v, now, step) for k, step, v in curves(record)]
        params = [Param(k, v) for k, v in run_params(record).items()]
        tag_list = [RunTag(k, v) for k, v in tags.items()]
        for chunk in _chunks(tag_list, MAX_TAGS):
            client.log_batch(run_id, tags=chunk)
        for chunk in _chunks(params, MAX_PARAMS):
            client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metrics, MAX_METRICS):
            client.log_batch(run_id, metrics=chunk)
        client.log_text(run_id, json.dumps(record, indent=1, sort_keys=True), "record.json")
        client.set_terminated(run_id, "FINISHED")
        (summary.replaced if existing else summary.created).append(record["cell_id"])
    log(summary.line())
    return summary


# -------------------------------------------------------------------------------------------- TensorBoard
def _hparam(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def export_tensorboard(records: list[dict], folder: str | Path, *,
                       log: Callable[[str], None] = print) -> ExportSummary:
    """Write each record as a TensorBoard run folder ``folder/<grid>/<cell_id>`` (see the module docstring)."""
    try:
        import tensorboard  # noqa: F401  (torch's SummaryWriter needs it; say so before torch's own message)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(TENSORBOARD_EXTRA) from None
    root = Path(folder)
    summary = ExportSummary("tensorboard", str(root))
    for record in records:
        target = root / record["grid"] / record["cell_id"]
        sha = record_sha256(record)
        marker = target / "record.sha256"
        if marker.is_file() and marker.read_text().strip() == sha:
            summary.unchanged.append(record["cell_id"])
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{record['cell_id']}.", dir=target.parent))
        try:
            with SummaryWriter(log_dir=str(staging)) as writer:
                for metric, step, value in curves(record):
                    writer.add_scalar(metric, value, step)
                writer.add_text("record", "```\n" + json.dumps(record, indent=1, sort_keys=True) + "\n```", 0)
                hparams = {**{k: _hparam(v) for k, v in run_tags(record).items()},
                           **{k: _hparam(v) for k, v in run_params(record).items()}}
                # The results as the HParams dashboard's metrics; add_hparams also logs them as scalars (step 0).
                writer.add_hparams(hparams, {f"summary/{k}": v for k, v in summary_metrics(record).items()},
                                   run_name=".")
            (staging / "record.sha256").write_text(sha + "\n")
            existed = target.exists()
            if existed:
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        (summary.replaced if existed else summary.created).append(record["cell_id"])
    log(summary.line())
    return summary
