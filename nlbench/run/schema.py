"""The declared schema of a grid file: types, ranges, names and allowed keys at every level, checked up front.

Built on pydantic v2 in strict mode (no coercion: ``"3"`` is not an int, ``true`` is not a number, ``2.5``
is not an int, ``nan`` is not a float). The ``[train]`` table's keys, types, choices and bounds come from the
``TrainConfig`` dataclass (its ``Literal`` types and ``bounded`` fields) and each method's ``params`` from the
method's own frozen dataclass, so a new field is accepted, typed and hashed without touching this file. Every
message is one line naming the bad value and what is allowed.

``check_grid_table`` validates a parsed grid and returns it normalised: relative paths (``weights``,
``mapping_file``, dataset ``root``/``file``) resolved against the grid file's folder, file existence
checked, registry names (datasets, backbones, noise models, methods) and backbone tags looked up,
``[slurm]`` keys checked (``nlbench.run.slurm_options``: on every run, not only on SLURM). Seeds are bounded
(``MAX_SEED``) and tags are short (``MAX_TAG``): both become parts of file names. It is the one check of a grid:
``grids.load_grid`` and ``grids.Grid.from_table`` call it, and ``grids.expand`` trusts what they made. Left to
their owners' code: a method's mode and the ranges of its params (``build_method``: the method's own
``__post_init__``), and the noise models' own options (``nlbench.run.validate``).
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model

from nlbench.engine.config import DEVICE_PATTERN, TrainConfig
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES, DATASETS, METHODS, NOISE
from nlbench.run.slurm_options import options_from_table

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
# One path component: no separator, no '..', no leading dot or dash (hidden files, options).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
SafeName = Annotated[str, StringConstraints(pattern=rf"^{SAFE_NAME.pattern}$")]
# What a pattern means, for messages (pydantic would print the regular expression).
PATTERN_TEXT = {
    rf"^{SAFE_NAME.pattern}$": "expected one path component: letters, digits, '.', '-', '_', not starting with "
                               "'.' or '-', at most 128 characters",
    DEVICE_PATTERN: "expected one of: auto, cpu, cuda, cuda:N",
}
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
# A tag is part of a cell id, hence of file names (records, claims, checkpoints: at most 255 bytes).
MAX_TAG = 64
Tag = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TAG)]
# Every seeded library takes it: numpy's and sklearn's seeds are < 2**32, torch's < 2**64; 2**31 leaves room
# for seed arithmetic (seed + offsets) in 32-bit integers.
MAX_SEED = 2**31 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]

# Dataset options that name files or folders: resolved against the grid file's folder.
PATH_OPTION = re.compile(r"(root|file|.+_root|.+_file)")


class BackboneEntry(BaseModel):
    model_config = STRICT
    name: NonEmpty
    tag: Tag | None = None
    weights: NonEmpty | None = None


class MethodEntry(BaseModel):
    model_config = STRICT
    method: NonEmpty
    mode: NonEmpty
    params: dict[str, Any] = {}
    tag: Tag | None = None  # names a variant of the method; its pattern: TAG_PATTERN (a message of its own)


class NoiseEntry(BaseModel):
    """``model`` and ``rate``; every other key is an option of the noise model, checked by its own code."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
    model: NonEmpty
    rate: float | None = None  # required but for model "none" (real noise: labels as given)


def check_rate(rate: float, what: str) -> float:
    """The one range check of a nominal noise rate (a grid's noise entry, ``noise audit --rate``): a finite
    number in [0, 1]. Its type is the caller's schema's (strict float); what a rate means to one noise model
    (asym ≥ 0.5 without ``force``) is that model's own check."""
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ConfigError(f"{what} is outside [0, 1]")
    return float(rate)


class GridTable(BaseModel):
    """The top level of a grid file. Entries are typed loosely here and checked one by one below, so a
    message can name the entry."""

    model_config = STRICT
    name: SafeName | None = None
    description: str = ""
    layout: Literal["table1", "real"] = "table1"
    datasets: Annotated[list[NonEmpty], Field(min_length=1)]
    backbones: Annotated[list[NonEmpty | dict[str, Any]], Field(min_length=1)]
    noise: Annotated[list[dict[str, Any]], Field(min_length=1)]
    methods: Annotated[list[dict[str, Any]], Field(min_length=1)]
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
    # The seed of the noisy-label draw: one draw per noise setting, shared by every training seed (the
    # references' saved noise file), or "per-seed": redrawn from each training seed. docs/fidelity.md.
    noise_seed: Seed | Literal["per-seed"] = 0
    train: dict[str, Any] = {}
    dataset_options: dict[str, dict[str, Any]] = {}
    val_labels: Literal["noisy", "clean"] = "noisy"
    slurm: dict[str, Any] = {}  # its keys: slurm_options.options_from_table; merged by executors


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message(exc: ValidationError, where: str, model: type[BaseModel], unknown: str) -> str:
    """One line for the first problem: unknown keys all at once, else the field, its value and the rule."""
    errors = exc.errors(include_url=False)
    extra = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
    if extra:
        return unknown.format(names=", ".join(sorted(extra)), expected=", ".join(model.model_fields))
    e = errors[0]
    # A value that fits no member of a union (``compile: bool | Literal["auto"]``): pydantic gives one error per
    # member, each at the field's location plus the member's name; one message names them all.
    members = [m for m in errors if len(m["loc"]) > 1 and m["loc"][:-1] == e["loc"][:-1]
               and isinstance(m["loc"][-1], str) and m["input"] is e["input"]]
    if len(members) > 1 and isinstance(e["loc"][-1], str):
        loc = ".".join(str(p) for p in e["loc"][:-1])
        wanted = " or ".join(m["msg"].removeprefix("Input should be ") for m in members)
        return f"{where}: {loc} = {_describe(e['input'])}: input should be {wanted}"
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "missing":
        return f"{where}: missing field {loc!r}"
    msg = e["msg"]
    msg = msg[0].lower() + msg[1:]
    if e["type"] == "string_pattern_mismatch":
        msg = PATTERN_TEXT.get(e.get("ctx", {}).get("pattern"), msg)
    return f"{where}: {loc} = {_describe(e['input'])}: {msg}"


def check(model: type[BaseModel], data: Any, where: str, unknown: str | None = None) -> BaseModel:
    """``model.model_validate(data)``, a ConfigError of one line on failure."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table {{{', '.join(model.model_fields)}}}; got {_describe(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc, where, model, unknown or where + ": unknown field(s) {names}; "
                                                                          "expected: {expected}")) from None


def _dataclass_model(cls: type, name: str) -> type[BaseModel]:
    """A strict pydantic model of a dataclass's fields: their types (``Literal`` ones give the choices), their
    defaults, and the bounds a field declares in its metadata (``nlbench.engine.config.bounded``)."""
    hints = typing.get_type_hints(cls)
    spec = {}
    for f in fields(cls):
        hint = hints[f.name]
        bounds = f.metadata.get("bounds")
        if bounds:
            hint = Annotated[hint, Field(**bounds)]
        default = f.default if f.default is not MISSING else ...
        if f.default_factory is not MISSING:  # type: ignore[misc]
            default = Field(default_factory=f.default_factory)  # type: ignore[misc]
        spec[f.name] = (hint, default)
    return create_model(name, __config__=STRICT, **spec)


@functools.cache
def train_model() -> type[BaseModel]:
    """The ``[train]`` table: TrainConfig's fields with their types, choices and bounds."""
    return _dataclass_model(TrainConfig, "TrainTable")


@functools.cache
def params_model(method: str) -> type[BaseModel]:
    """A method's ``params``: the fields of its frozen dataclass (ranges are its own ``__post_init__``)."""
    return _dataclass_model(METHODS.get(method), f"{method}_params")


def check_train(table: Any) -> TrainConfig:
    """The ``[train]`` table as a ``TrainConfig`` (defaults filled in); a ConfigError of one line for a bad one.

    The config holds the table's own values, not pydantic's outputs (which turn an int given for a float into
    a float), so what records store and hash is what the grid wrote."""
    check(train_model(), table, "[train]", "unknown [train] field(s) {names}; expected: {expected}")
    return TrainConfig(**table)


def check_params(method: str, params: Any) -> dict:
    model = params_model(method)
    return check(model, params, f"method {method!r} params",
                 f"method {method!r} has no parameter(s) {{names}}; expected: {{expected}}").model_dump(
        exclude_unset=True)


def dataset_options_model(dataset: str) -> type[BaseModel]:
    """A dataset loader's keyword arguments, typed from its signature."""
    loader = DATASETS.get(dataset)
    hints = typing.get_type_hints(loader)
    spec = {name: (hints.get(name, Any), p.default if p.default is not inspect.Parameter.empty else ...)
            for name, p in inspect.signature(loader).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return create_model(f"{dataset}_options", __config__=STRICT, **spec)


def _resolve(path: str, base: Path | None) -> str:
    p = Path(path).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    return str(p)


def _existing_file(path: str, what: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} {path!r} does not exist")
    if not p.is_file():
        raise ConfigError(f"{what} {path!r} is not a file")


def check_grid_table(raw: Any, *, source: str | Path | None = None, label: str | None = None) -> dict:
    """Validate a parsed grid file; return it with paths resolved against ``source``'s folder.

    ``label`` names the grid in messages (default: the file name). Raises ConfigError (one line)."""
    base = Path(source).parent if source is not None else None
    label = label or (Path(source).stem if source is not None else "grid")
    where = f"grid {label!r}"
    top = check(GridTable, raw, where, where + ": unknown top-level field(s) {names}; expected: {expected}")
    out = dict(raw)
    if top.name is None and source is not None and not SAFE_NAME.fullmatch(Path(source).stem):
        raise ConfigError(f"{where}: the file name {Path(source).stem!r} cannot name a results folder; set "
                          f"name = \"...\" (letters, digits, '.', '-', '_')")
    if top.name is None and source is None and not SAFE_NAME.fullmatch(label):
        raise ConfigError(f"grid name {label!r} is not one path component (letters, digits, '.', '-', '_')")
    for dataset in top.datasets:
        DATASETS.entry(dataset)

    backbones = []
    for b in top.backbones:
        name = b.get("name") if isinstance(b, dict) else b
        entry = check(BackboneEntry, {"name": b} if isinstance(b, str) else b, f"{where}: backbones entry {b!r}",
                      f"{where}: unknown field(s) {{names}} in the backbones entry of {name!r}; expected: {{expected}}")
        BACKBONES.entry(entry.name)
        if entry.tag is not None:
            from nlbench.backbones import backbone_facts  # torch-backed, as the registry lookup above

            backbone_facts(entry.name).preprocessing_for(entry.tag)  # an unknown tag: one line with the choices
        item = entry.model_dump(exclude_none=True)
        if entry.weights is not None:
            item["weights"] = _resolve(entry.weights, base)
            _existing_file(item["weights"], f"{where}: backbone {entry.name!r}: weights file")
        backbones.append(item if isinstance(b, dict) else b)
    out["backbones"] = backbones

    noise = []
    for n in top.noise:
        entry = check(NoiseEntry, n, f"{where}: noise entry {_describe(n)}")
        NOISE.entry(entry.model)
        if entry.rate is None and entry.model != "none":
            raise ConfigError(f"{where}: noise entry {_describe(n)} has no rate; expected rate = a number in [0, 1]")
        if entry.rate is not None:
            check_rate(entry.rate, f"noise rate {entry.rate!r} of {entry.model!r}")
        item = dict(n)
        if "mapping_file" in item:
            if not isinstance(item["mapping_file"], str) or not item["mapping_file"]:
                raise ConfigError(f"{where}: noise {entry.model!r}: mapping_file must be a path; "
                                  f"got {_describe(item['mapping_file'])}")
            item["mapping_file"] = _resolve(item["mapping_file"], base)
            _existing_file(item["mapping_file"], f"{where}: noise {entry.model!r}: mapping_file")
        noise.append(item)
    out["noise"] = noise

    methods = []
    for m in top.methods:
        name = m.get("method") if isinstance(m, dict) else None
        entry = check(MethodEntry, m, f"{where}: methods entry {_describe(m)}",
                      f"{where}: unknown field(s) {{names}} in the methods entry of {name!r}; expected: {{expected}}")
        METHODS.entry(entry.method)  # the valid names, before its params are typed
        check_params(entry.method, entry.params)
        if entry.tag is not None and not TAG_PATTERN.fullmatch(entry.tag):
            raise ConfigError(f"{where}: method tag {entry.tag!r} of {entry.method!r}; expected letters, digits, "
                              f"'.', '-' or '_', at most {MAX_TAG} characters")
        methods.append(m)
    out["methods"] = methods

    if len(set(top.seeds)) != len(top.seeds):
        raise ConfigError(f"{where}: seeds {top.seeds} repeat a seed; expected distinct non-negative integers")
    check_train(top.train)
    options_from_table(top.slurm, f"{where}: [slurm]")

    options = {}
    for dataset, opts in top.dataset_options.items():
        if dataset not in top.datasets:
            raise ConfigError(f"{where}: [dataset_options.{dataset}] names a dataset the grid does not use; "
                              f"its datasets: {', '.join(top.datasets)}")
        model = dataset_options_model(dataset)
        check(model, opts, f"{where}: [dataset_options.{dataset}]",
              f"{where}: dataset {dataset!r} has no option(s) {{names}}; expected: {{expected}}")
        resolved = dict(opts)
        for key, value in opts.items():
            if PATH_OPTION.fullmatch(key) and isinstance(value, str):
                resolved[key] = _resolve(value, base)
        options[dataset] = resolved
    if "dataset_options" in out:
        out["dataset_options"] = options
    return out

