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

import functools
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES, DATASETS, NOISE

LAYOUTS = ("table1", "real")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class CellSpec:
    """One run: everything that determines its record (the grid name excepted)."""

    grid: str
    dataset: str
    backbone: str
    noise: str
    rate: float
    method: str
    mode: str
    seed: int
    backbone_tag: str | None = None
    backbone_weights: str | None = None
    noise_options: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)  # resolved: every field, defaults included
    dataset_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # resolved TrainConfig
    val_labels: str = "noisy"
    method_tag: str | None = None  # names a variant of a method (its params differ); part of the cell id

    @property
    def method_key(self) -> str:
        """The method as tables and ids name it: ``dividemix`` or, for a tagged variant, ``dividemix@long``."""
        return f"{self.method}@{self.method_tag}" if self.method_tag else self.method

    @property
    def cell_id(self) -> str:
        """Path-safe, human-readable id (the config hash decides whether a record is current)."""
        tag = f"@{self.backbone_tag}" if self.backbone_tag else ""
        parts = [self.dataset, f"{self.backbone}{tag}", f"{self.noise}{self.rate:g}", self.mode, self.method_key,
                 f"seed{self.seed}"]
        return "__".join(p.replace("/", "-").replace(" ", "") for p in parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def config_hash(self) -> str:
        """sha256 of everything that determines the record: the [train] fields this cell's phases read
        (``train_fields_used``) and the content, not the path, of a local weights or mapping file."""
        d = self.as_dict()
        d.pop("grid")
        if d["method_tag"] is None:
            d.pop("method_tag")  # untagged cells keep the hashes they had before tags existed
        d["train"] = train_fields_used(self.method, self.mode, self.train)
        if self.backbone_weights:
            d["backbone_weights"] = _file_identity(self.backbone_weights)
        mapping = self.noise_options.get("mapping_file")
        if isinstance(mapping, str):
            d["noise_options"] = {**self.noise_options, "mapping_file": _file_identity(mapping)}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> CellSpec:
        return cls(**d)


# [train] fields read by one kind of phase only: a cell's config hash covers the fields its phases read, so
# changing lp_epochs does not invalidate fine-tuning cells. Every other field (device, amp, a new one) is
# read by both and hashed for every cell.
FFT_ONLY_FIELDS = ("augment", "compile", "save_finetuned_features")


def train_fields_used(method: str, mode: str, train: dict) -> dict:
    """The part of a resolved [train] table that a cell of ``method`` in ``mode`` reads. A method whose fft
    mode also trains linear probes (confident learning's cross-validated probes) declares
    ``probes_in_fft_mode = True``."""
    from nlbench.registry import METHODS

    phases = set(mode.split("-"))
    uses_lp = "lp" in phases or bool(getattr(METHODS.get(method), "probes_in_fft_mode", False))
    uses_fft = "fft" in phases

    def used(name: str) -> bool:
        if name.startswith("lp_"):
            return uses_lp
        if name.startswith("fft_") or name in FFT_ONLY_FIELDS:
            return uses_fft
        return True

    return {k: v for k, v in train.items() if used(k)}


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_identity(path: str) -> dict:
    """A file as a config hash sees it: its content's sha256 (the path where it cannot be read here)."""
    try:
        st = os.stat(path)
        return {"sha256": _sha256_of(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)}
    except OSError:
        return {"path": path, "sha256": None}


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    layout: str
    raw: dict
    source: str

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


def load_grid(name_or_path: str) -> Grid:
    """A registered grid by name, or a grid file by path; its schema checked (``grid_schema``) and its
    relative paths resolved against the file's folder."""
    from nlbench.grid_schema import check_grid_table

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
    raw = check_grid_table(raw, source=path)
    return Grid(name=raw.get("name", path.stem), description=raw.get("description", ""),
                layout=raw.get("layout", "table1"), raw=raw, source=str(path))


def _as_list(raw: dict, key: str, grid: str) -> list:
    value = raw.get(key)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"grid {grid!r}: '{key}' must be a non-empty list")
    return value


def expand(grid: Grid, *, seeds: int | None = None) -> list[CellSpec]:
    """All cells of ``grid`` in a stable order, validated. ``seeds`` overrides the grid's seed list with
    range(seeds)."""
    from nlbench.grid_schema import SAFE_NAME, check_grid_table
    from nlbench.methods import build_method, method_params
    from nlbench.train import TrainConfig

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
    train = asdict(TrainConfig.from_dict(dict(raw.get("train", {}))))
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
        params = method_params(build_method(name, mode, m.get("params", {})))
        tag = m.get("tag")
        if tag is not None and not (isinstance(tag, str) and TAG_PATTERN.fullmatch(tag)):
            raise ConfigError(f"grid {grid.name!r}: method tag {tag!r} of {name!r}; expected letters, digits, '.', "
                              "'-' or '_'")
        resolved_methods.append((name, mode, params, tag))

    cells = []
    for dataset in datasets:
        for b in backbones:
            for model, rate, noise_options in resolved_noise:
                for name, mode, params, tag in resolved_methods:
                    for seed in seed_list:
                        cells.append(CellSpec(
                            grid=grid.name, dataset=dataset, backbone=b["name"], noise=model, rate=rate,
                            method=name, mode=mode, seed=int(seed), backbone_tag=b.get("tag"),
                            backbone_weights=b.get("weights"), noise_options=noise_options,
                            method_params=params, dataset_options=dict(dataset_options.get(dataset, {})),
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
