"""Run records: one JSON file per finished cell, in one schema (``Record``), written atomically.

A record lands under ``<results>/<grid>/records/<cell_id>.json`` only when its cell has finished:
written to a temporary file in the same folder, flushed, then renamed over the target, so readers
never see half a record and many array tasks can write side by side (two writers of the same cell: the
last rename wins, both complete). The folder is fsynced after the rename where the filesystem allows, so
a record that a job reported is not lost when the node crashes. "Done" means a complete record whose
config hash matches the cell, not merely an existing file. A record that exists but may not be read
(permissions) or does not fit the schema (a wrong type, a missing field, a number that is NaN, ±inf or out
of its range: an accuracy outside [0, 100]) is an error naming the file and the field, never "not done":
rerunning its cell would overwrite someone else's result. A file whose bytes are not JSON (torn or emptied
by something other than nlbench, which writes atomically) holds no result to keep: it is named in one
warning line on stderr and its cell counts as not done, so ``run`` replaces it. (A command names it once:
its later reads of the same records pass ``warn=False``.)

Every record is written through ``Record.to_dict()`` and read through ``Record.from_dict``, which checks
each field's type (pydantic, strict scalars) and migrates older layouts: schema 1 (records without
``schema_version``) stored the cell's identity three times (top level, ``config``, ``noise_audit``);
schema 2 stores each fact once. Consumers (tables, report, status) read the plain dicts ``to_dict()``
gives.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AllowInfNan, ConfigDict, Field, Strict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from nlbench.atomic import atomic_write_bytes
from nlbench.errors import ConfigError
from nlbench.run.spec import CellSpec

SCHEMA_VERSION = 2
# The cell's identity: stored once, at the top level of a record (tables group by these). The rest of the
# cell spec is the record's ``config``.
IDENTITY = ("grid", "dataset", "backbone", "noise", "rate", "method", "mode", "seed", "method_tag", "val_labels")

# Strict scalars: "3" is not an int, true is not a number; an int is accepted where a float is expected.
# Every number a record's schema names is finite; results carry their range (an accuracy is a percentage).
Str = Annotated[str, Strict()]
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Accuracy = Annotated[Float, Field(ge=0.0, le=100.0)]  # a percentage: test/val accuracy, precision, recall
Fraction = Annotated[Float, Field(ge=0.0, le=1.0)]  # a rate or a probability
Amount = Annotated[Float, Field(ge=0.0)]  # seconds, megabytes
FORBID = ConfigDict(extra="forbid")
OPEN = ConfigDict(extra="allow")  # tables whose other keys are a method's own (checked as JSON values only)


class RecordError(ConfigError):
    """A record that exists but does not fit the schema: one line naming the file and the field."""


@dataclass(frozen=True, kw_only=True)
class NoiseAudit:
    """The training labels as drawn: the noise model's convention, the realized flip rate, the hash of the
    saved label vector and the realized transition matrix (None under real noise). The nominal model and
    rate are the record's ``noise`` and ``rate``."""

    __pydantic_config__ = FORBID
    convention: Str
    realized_rate: Fraction
    labels_sha256: Str | None
    transition: list[list[Fraction]] | None


@dataclass(frozen=True, kw_only=True)
class Cost:
    """What the cell cost. On disk ``counters`` (backbone forward/backward images, backbones built, …) sit
    flat beside the other fields, as they always have."""

    __pydantic_config__ = FORBID
    wall_s: Amount
    peak_rss_mb: Amount
    peak_cuda_mb: Amount | None
    feature_cache: dict[Str, Str]  # "<split>/view<k>": "hit" | "fill"
    fft_epoch_s: list[Amount]  # per fine-tuning epoch; the SLURM time-limit check reads them
    resumed_from: list[dict[Str, Any]]  # the checkpoints the cell resumed from
    counters: dict[Str, Int]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d.pop("counters"), **d}

    @staticmethod
    def split(d: dict[str, Any]) -> dict[str, Any]:
        """The on-disk (flat) cost table in this dataclass's fields: every key not a field is a counter."""
        names = {f.name for f in fields(Cost)} - {"counters"}
        return {**{k: v for k, v in d.items() if k in names},
                "counters": {k: v for k, v in d.items() if k not in names}}


@with_config(OPEN)
class Epoch(TypedDict, total=False):
    """One row of a record's ``history``: its accuracies are checked; ``train_loss`` may be NaN (a diverged
    loss is a result, not damage)."""

    epoch: Int
    val_acc: Accuracy
    test_acc: Accuracy | None  # None on epochs whose test accuracy was not needed


@with_config(OPEN)
class Selected(TypedDict, total=False):
    """One selected clean set of a record's ``selection``: precision and recall in % of the true clean mask."""

    phase: Str
    epoch: Int
    size: Int
    precision: Accuracy
    recall: Accuracy


@with_config(OPEN)
class Extra(TypedDict, total=False):
    """A record's ``extra``: a method's own facts; the linear probe's accuracies of LP-FT methods are checked."""

    lp_test_acc_best: Accuracy
    lp_test_acc_last: Accuracy


@dataclass(frozen=True, kw_only=True)
class Record:
    """One finished cell. ``rate`` (the nominal noise rate) and the rest of the identity are stored once;
    ``config`` holds the remainder of the cell spec (``spec()`` rebuilds it, config hash included)."""

    __pydantic_config__ = FORBID
    schema_version: Int = SCHEMA_VERSION
    status: Literal["done"] = "done"
    cell_id: Str
    config_hash: Str
    grid: Str
    dataset: Str
    backbone: Str
    noise: Str
    rate: Fraction
    method: Str
    mode: Str
    seed: Int
    method_tag: Str | None
    val_labels: Str
    config: dict[Str, Any]
    test_acc_best: Accuracy
    test_acc_last: Accuracy
    extra_test_acc_best: dict[Str, Accuracy]
    extra_test_acc_last: dict[Str, Accuracy]
    val_acc_best: Accuracy
    best_epoch: Int
    history: list[Epoch]
    extra: Extra
    noise_audit: NoiseAudit | None
    selection: list[Selected]
    cost: Cost
    env: dict[Str, Any]
    determinism: dict[Str, Any] | None

    def spec(self) -> CellSpec:
        """The cell this record is of (its ``config_hash`` is the record's own, for an unchanged cell)."""
        return CellSpec(**{k: getattr(self, k) for k in IDENTITY}, **self.config)

    def to_dict(self) -> dict[str, Any]:
        """The record as written: plain JSON values (numpy arrays and scalars converted)."""
        return json.loads(self.to_json())

    def to_json(self, **dumps_options: Any) -> str:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["noise_audit"] = None if self.noise_audit is None else asdict(self.noise_audit)
        d["cost"] = self.cost.to_dict()
        return json.dumps(d, sort_keys=True, default=_jsonable, **dumps_options)

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path = "record") -> Record:
        """Check and build a record of any schema version; ``RecordError`` (one line naming ``source`` and
        the field) when it does not fit."""
        where = f"record {source}"
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object; got {type(data).__name__}")
        version = data.get("schema_version", 1)
        if type(version) is not int:  # true == 1 in Python, but true is no version
            raise RecordError(f"{where}: field schema_version = {version!r}: expected an integer")
        if version == 1:
            data = migrate_v1(data, where)
        elif version != SCHEMA_VERSION:
            raise RecordError(f"{where}: schema_version {version!r}; this nlbench reads versions 1 to "
                              f"{SCHEMA_VERSION} (a newer nlbench wrote it?)")
        data = dict(data)
        if isinstance(data.get("cost"), dict):
            data["cost"] = Cost.split(data["cost"])
        try:
            record = _ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise RecordError(f"{where}: {_problem(exc)}") from None
        return record


_ADAPTER = TypeAdapter(Record)


def cell_fields(spec: CellSpec) -> dict[str, Any]:
    """A cell spec as the record stores it: its identity fields and ``config`` (the rest), keyword arguments
    of ``Record``."""
    spec_dict = spec.as_dict()
    return {"cell_id": spec.cell_id, "config_hash": spec.config_hash,
            **{k: spec_dict.pop(k) for k in IDENTITY}, "config": spec_dict}


# Fields later schema-1 writers added: an older schema-1 record lacks them. Every other field of schema 1
# was written from the first commit on and is required.
V1_DEFAULTS: dict[str, Any] = {"method_tag": None, "val_labels": "noisy", "extra_test_acc_best": {},
                               "extra_test_acc_last": {}, "determinism": None}
V1_COST_DEFAULTS: dict[str, Any] = {"fft_epoch_s": [], "resumed_from": []}


def migrate_v1(data: dict, where: str = "record") -> dict:
    """A schema-1 record (no ``schema_version``) in schema 2's layout. Schema 1 repeated the identity in
    ``config`` (the whole cell spec) and the nominal noise in ``noise_audit`` (``model``, ``nominal_rate``);
    schema 2 keeps the top-level copy, after checking the copies agree."""
    d = {**V1_DEFAULTS, **data, "schema_version": SCHEMA_VERSION}
    config = dict(d.get("config") or {})
    for key in IDENTITY:
        if key in config and key in data and not _same(config[key], data[key]):
            raise RecordError(f"{where}: config.{key} = {config[key]!r} disagrees with {key} = {data[key]!r}")
        if key in config and key not in data:
            d[key] = config[key]
        config.pop(key, None)
    d["config"] = config
    audit = d.get("noise_audit")
    if isinstance(audit, dict):
        audit = {"labels_sha256": None, **audit}
        for key, top in (("model", "noise"), ("nominal_rate", "rate")):
            if key in audit and not _same(audit[key], d.get(top)):
                raise RecordError(f"{where}: noise_audit.{key} = {audit[key]!r} disagrees with {top} = "
                                  f"{d.get(top)!r}")
            audit.pop(key, None)
        d["noise_audit"] = audit
    if isinstance(d.get("cost"), dict):
        d["cost"] = {**V1_COST_DEFAULTS, **d["cost"]}
    return d


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _problem(exc: ValidationError) -> str:
    """The first validation error as 'field <dotted.path> <what is wrong>'."""
    e = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in e["loc"] if p != "counters") or "(top level)"
    if e["type"] in ("missing", "missing_keyword_argument"):
        return f"missing field {loc}"
    if e["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        return f"unknown field {loc}"
    text = repr(e.get("input"))
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"field {loc} = {text}: {e['msg'][0].lower() + e['msg'][1:]}"


def default_results_dir() -> Path:
    return Path("runs")


def records_dir(results: Path, grid: str) -> Path:
    return Path(results) / grid / "records"


def record_path(results: Path, spec: CellSpec) -> Path:
    return records_dir(results, spec.grid) / f"{spec.cell_id}.json"


def write_record(path: Path, record: Record) -> None:
    """Write ``record`` as JSON to ``path`` atomically, after checking that it reads back as written (a
    record the schema would refuse is never written)."""
    if not isinstance(record, Record):
        raise TypeError(f"write_record takes a Record; got {type(record).__name__}")
    text = record.to_json(indent=1)
    Record.from_dict(json.loads(text), source=path)
    atomic_write_bytes(Path(path), text.encode())
    _fsync_dir(Path(path).parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; some network filesystems refuse, which costs only durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(path: Path, *, warn: bool = True) -> Record | None:
    """The record at ``path`` (migrated to the current schema), or None if there is none: no file, or a
    file whose bytes are not JSON (torn or empty: named in one warning line on stderr unless ``warn`` is
    false). ``ConfigError`` if it exists but cannot be read, ``RecordError`` if its JSON does not
    fit the schema (any other JSON value, another status, a wrong type, a number out of range)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read record {path} ({exc.strerror or exc}); fix its permissions or use "
                          f"another --results folder") from None
    try:
        data = json.loads(raw)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError: torn, empty or garbage bytes
        if warn:
            warn_torn(path, len(raw))
        return None
    return Record.from_dict(data, source=path)


def warn_torn(path: Path, size: int) -> None:
    """One line on stderr naming a record whose bytes (``size`` of them) are not JSON."""
    what = "is empty (0 bytes)" if size == 0 else f"is not complete JSON ({size} bytes: torn or damaged)"
    print(f"warning: record {path} {what}, not a record: its cell counts as not done and `nlbench run` runs it "
          f"again, replacing the file", file=sys.stderr, flush=True)


def is_done(results: Path, spec: CellSpec, *, warn: bool = True) -> bool:
    """Whether ``spec`` has a current record (see ``read_record``; ``warn``: name a torn record)."""
    record = read_record(record_path(results, spec), warn=warn)
    return record is not None and record.config_hash == spec.config_hash


def load_records(results: Path, cells: list[CellSpec], *, warn: bool = True) -> list[dict]:
    """Current records of ``cells`` (those whose config hash matches), in cell order, as the plain dicts
    ``Record.to_dict()`` gives; a torn record is left out (and named unless ``warn`` is false)."""
    out = []
    for spec in cells:
        record = read_record(record_path(results, spec), warn=warn)
        if record is not None and record.config_hash == spec.config_hash:
            out.append(record.to_dict())
    return out
