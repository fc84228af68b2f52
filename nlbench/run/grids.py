"""Grids: TOML files that cross datasets × backbones × noise settings × methods × seeds into cells.

A grid is a registered name (a file in ``benchmarks/grids/``, shipped as ``nlbench.builtin_grids``) or the
path of a user's own file. Expanding it validates every name, mode, rate and hyperparameter before
anything runs, so bad input fails with one clear message and nothing written.

Grid file fields: ``description``, ``layout`` ('table1' or 'real'), ``datasets``, ``backbones`` (names or
tables {name, tag, weights}), ``noise`` (tables {model, rate, and options}), ``methods`` (tables
{method, mode, params, tag}: ``tag`` names a variant, so one method can appear twice with
different params), ``seeds``, ``[train]`` (engine fields, see ``TrainConfig``), ``[dataset_options.NAME]``,
``val_labels`` ('noisy' or 'clean') and ``[slurm]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import tomllib

from nlbench.engine.config import TrainConfig
from nlbench.errors import ConfigError
from nlbench.methods import build_method, method_params
from nlbench.registry import BACKBONES, DATASETS, NOISE
from nlbench.run.overrides import apply_overrides
from nlbench.run.schema import SAFE_NAME, check_grid_table
from nlbench.run.spec import CellSpec

LAYOUTS = ("table1", "real")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    layout: str
    raw: dict
    source: str
    overrides: tuple[str, ...] = ()  # the --set KEY=VALUE applied to the file (nlbench.run.overrides)

    @property
    def slurm(self) -> dict:
        return dict(self.raw.get("slurm", {}))


def grid_files() -> dict[str, Path]:
    """Registered grids: every ``*.toml`` shipped in ``nlbench.builtin_grids`` (benchmarks/grids/)."""
    root = resources.files("nlbench.builtin_grids")
    return {Path(p.name).stem: Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml")}


def list_grids() -> list[tuple[str, str]]:
    out = []
    for name, path in sorted(grid_files().items()):
        try:
            desc = tomllib.loads(path.read_text()).get("description", "")
        except tomllib.TOMLDecodeError as exc:
            desc = f"(unreadable: {exc})"
        out.append((name, desc))
    return out


def load_grid(name_or_path: str, overrides: Iterable[str] = ()) -> Grid:
    """A registered grid by name, or a grid file by path; ``overrides`` (``KEY=VALUE``, see
    ``nlbench.run.overrides``) applied to it, its schema checked (``grid_schema``) and its relative paths
    resolved against the file's folder."""
    files = grid_files()
    path = Path(name_or_path)
    if name_or_path in files:
        path = files[name_or_path]
    elif not (path.suffix == ".toml" and path.is_file()):
        raise ConfigError(
            f"unknown grid {name_or_path!r}; expected a .toml file or one of: {', '.join(sorted(files))}"
        )
    try:
        # utf-8-sig: a byte-order mark some editors write is not a TOML error.
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read grid file {str(path)!r}: {exc}") from None
    overrides = tuple(overrides)
    try:
        raw = check_grid_table(apply_overrides(raw, overrides), source=path)
    except ConfigError as exc:
        if not overrides or str(exc).startswith("--set"):
            raise
        raise ConfigError(f"{exc} (with --set {' --set '.join(overrides)})") from None
    return Grid(name=raw.get("name", path.stem), description=raw.get("description", ""),
                layout=raw.get("layout", "table1"), raw=raw, source=str(path), overrides=overrides)


def _as_list(raw: dict, key: str, grid: str) -> list:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"grid {grid!r}: '{key}' must be a non-empty list")
    return value


def expand(grid: Grid, *, seeds: int | None = None) -> list[CellSpec]:
    """All cells of ``grid`` in a stable order, validated. ``seeds`` overrides the grid's seed list with
    range(seeds)."""
    if not (isinstance(grid.name, str) and SAFE_NAME.fullmatch(grid.name)):
        raise ConfigError(f"grid name {grid.name!r} is not one path component (letters, digits, '.', '-', '_')")
    raw = check_grid_table(grid.raw, label=grid.name)
    datasets = _as_list(raw, "datasets", grid.name)
    backbones = [b if isinstance(b, dict) else {"name": b} for b in _as_list(raw, "backbones", grid.name)]
    noises = _as_list(raw, "noise", grid.name)
    methods = _as_list(raw, "methods", grid.name)
    seed_list = list(range(seeds)) if seeds is not None else list(raw.get("seeds", [0]))
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds must be ≥ 1; got {seeds}")
    train = asdict(TrainConfig.from_dict(dict(raw.get("train", {}))))  # checked here; each spec types it again
    val_labels = raw.get("val_labels", "noisy")
    if val_labels not in ("noisy", "clean"):
        raise ConfigError(f"grid {grid.name!r}: val_labels {val_labels!r}; expected one of: clean, noisy")
    dataset_options = raw.get("dataset_options", {})

    for d in datasets:
        DATASETS.entry(d)
    for b in backbones:
        BACKBONES.entry(b.get("name", ""))
    resolved_noise = []
    for n in noises:
        n = dict(n)
        model, rate = n.pop("model", None), n.pop("rate", 0.0)  # rate: range-checked by check_grid_table
        NOISE.entry(model or "")
        resolved_noise.append((model, float(rate), n))
    resolved_methods = []
    for m in methods:
        if not isinstance(m, dict):
            raise ConfigError(f"grid {grid.name!r}: a methods entry must be a table {{method, mode, params, tag}}; "
                              f"got {m!r}")
        unknown = sorted(set(m) - {"method", "mode", "params", "tag"})
        if unknown:
            raise ConfigError(f"grid {grid.name!r}: unknown field(s) {', '.join(unknown)} in the methods entry of "
                              f"{m.get('method')!r}; expected: method, mode, params, tag")
        name, mode = m.get("method", ""), m.get("mode", "")
        method = build_method(name, mode, m.get("params", {}))
        tag = m.get("tag")
        if tag is not None and not (isinstance(tag, str) and TAG_PATTERN.fullmatch(tag)):
            raise ConfigError(f"grid {grid.name!r}: method tag {tag!r} of {name!r}; expected letters, digits, '.', "
                              "'-' or '_'")
        resolved_methods.append((name, mode, method, tag))

    cells = []
    for dataset in datasets:
        for b in backbones:
            for model, rate, noise_options in resolved_noise:
                for name, mode, method, tag in resolved_methods:
                    for seed in seed_list:
                        cells.append(CellSpec(
                            grid=grid.name, dataset=dataset, backbone=b["name"], noise=model, rate=rate,
                            method=name, mode=mode, seed=int(seed), backbone_tag=b.get("tag"),
                            backbone_weights=b.get("weights"), noise_options=noise_options,
                            method_params=method_params(method), method_instance=method,
                            dataset_options=dict(dataset_options.get(dataset, {})),
                            train=train, val_labels=val_labels, method_tag=tag,
                        ))
    seen: set[str] = set()
    for cell in cells:
        if cell.cell_id in seen:
            # Two entries would write one record file and overwrite each other's results.
            raise ConfigError(f"grid {grid.name!r}: the cell {cell.cell_id} appears twice (a repeated entry, or "
                              f"the same method and mode twice: give each variant its own tag = \"...\")")
        seen.add(cell.cell_id)
    return cells
