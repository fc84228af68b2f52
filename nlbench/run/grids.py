"""Grids: TOML files that cross datasets × backbones × noise settings × methods × seeds into cells.

A grid is a registered name (a file in ``benchmarks/grids/``, shipped as ``nlbench.builtin_grids``) or the
path of a user's own file. Expanding it validates every name, mode, rate and hyperparameter before
anything runs, so bad input fails with one clear message and nothing written.

Grid file fields: ``description``, ``layout`` ('table1' or 'real'), ``datasets``, ``backbones`` (names or
tables {name, tag, weights}), ``noise`` (tables {model, rate, and options}), ``methods`` (tables
{method, mode, params, tag}: ``tag`` names a variant, so one method can appear twice with
different params), ``seeds``, ``noise_seed`` (the seed of the noisy-label draw, shared by every training
seed; "per-seed": redrawn from each; default 0), ``[train]`` (engine fields, see ``TrainConfig``),
``[dataset_options.NAME]``, ``val_labels`` ('noisy' or 'clean') and ``[slurm]``.

A ``Grid`` holds a table the schema (``nlbench.run.schema.check_grid_table``) has checked: ``load_grid`` and
``Grid.from_table`` run it, once, and ``expand`` trusts it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path

from nlbench.engine.config import TrainConfig
from nlbench.errors import ConfigError
from nlbench.run.overrides import apply_overrides
from nlbench.run.schema import GridTable, check_grid_table
from nlbench.run.spec import CellSpec

LAYOUTS = ("table1", "real")
TOO_DEEP = "a value is nested too deeply (lists or tables within each other); expected a grid's flat values"
# A cell id names files: '<id>.json', '<id>.lock', checkpoints '<id>.pt.sha256', and the temporary file beside
# each ('.<name>.XXXXXXXX.tmp'); 200 bytes keeps all of them within a file name's 255.
MAX_CELL_ID = 200


def check_cell_id(cell_id: str, where: str) -> None:
    """A ConfigError (one line) when ``cell_id`` is too long to name the cell's files."""
    size = len(cell_id.encode())
    if size > MAX_CELL_ID:
        raise ConfigError(f"{where}: cell id {cell_id[:60]}… is {size} bytes long; at most {MAX_CELL_ID} make a "
                          "file name: shorten its tags or registered names")


@dataclass(frozen=True)
class Grid:
    """A grid whose table the schema has checked (``raw``: with its paths resolved). Made by ``load_grid``
    or ``Grid.from_table``; ``expand`` checks it no further."""

    name: str
    description: str
    layout: str
    raw: dict
    source: str
    overrides: tuple[str, ...] = ()  # the --set KEY=VALUE applied to the file (nlbench.run.overrides)

    @classmethod
    def from_table(cls, table: dict, *, name: str, source: str | Path | None = None) -> Grid:
        """A grid from a parsed table: checked by the schema (``source``, a grid file, resolves its relative
        paths); ``name`` unless the table sets one."""
        try:
            raw = check_grid_table(table, source=source, label=None if source is not None else name)
        except RecursionError:
            raise ConfigError(f"grid {name!r}: {TOO_DEEP}") from None
        return cls(name=raw.get("name", name), description=raw.get("description", ""),
                   layout=raw.get("layout", "table1"), raw=raw, source=str(source if source is not None else name))

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
    ``nlbench.run.overrides``) applied to it, its schema checked (``nlbench.run.schema``) and its relative
    paths resolved against the file's folder."""
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
    except RecursionError:
        raise ConfigError(f"cannot read grid file {str(path)!r}: {TOO_DEEP}") from None
    overrides = tuple(overrides)
    try:
        grid = Grid.from_table(apply_overrides(raw, overrides), name=path.stem, source=path)
    except RecursionError:  # a deep value copied by an override
        raise ConfigError(f"grid file {str(path)!r}: {TOO_DEEP}") from None
    except ConfigError as exc:
        if not overrides or str(exc).startswith("--set"):
            raise
        raise ConfigError(f"{exc} (with --set {' --set '.join(overrides)})") from None
    return replace(grid, overrides=overrides)


def expand(grid: Grid, *, seeds: int | None = None) -> list[CellSpec]:
    """All cells of ``grid`` in a stable order. The grid's table was checked when the grid was made; what is
    checked here is ``seeds`` (a command-line override: range(seeds) replaces the grid's seed list), each
    method's mode and params' ranges (``build_method``: the method's own code), and that no two entries make
    the same cell."""
    from nlbench.methods import build_method, method_params  # torch-backed: loading a grid file needs no torch

    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds must be ≥ 1; got {seeds}")
    raw = grid.raw
    backbones = [b if isinstance(b, dict) else {"name": b} for b in raw["backbones"]]
    seed_list = list(range(seeds)) if seeds is not None else list(raw.get("seeds", [0]))
    # Every [train] field, defaults filled in: what records store and the config hash reads.
    train = asdict(TrainConfig(**raw.get("train", {})))
    val_labels = raw.get("val_labels", "noisy")
    noise_seed = raw.get("noise_seed", GridTable.model_fields["noise_seed"].default)
    dataset_options = raw.get("dataset_options", {})
    resolved_noise = []
    for n in raw["noise"]:
        n = dict(n)
        model, rate = n.pop("model"), n.pop("rate", 0.0)  # rate: absent for model "none" (real noise)
        resolved_noise.append((model, float(rate), n))
    resolved_methods = []
    for m in raw["methods"]:
        name, mode = m["method"], m["mode"]
        resolved_methods.append((name, mode, build_method(name, mode, m.get("params", {})), m.get("tag")))

    cells = []
    for dataset in raw["datasets"]:
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
                            noise_seed=int(seed) if noise_seed == "per-seed" else int(noise_seed),
                        ))
    seen: set[str] = set()
    for cell in cells:
        check_cell_id(cell.cell_id, f"grid {grid.name!r}")
        if cell.cell_id in seen:
            # Two entries would write one record file and overwrite each other's results.
            raise ConfigError(f"grid {grid.name!r}: the cell {cell.cell_id} appears twice (a repeated entry, or "
                              f"the same method and mode twice: give each variant its own tag = \"...\")")
        seen.add(cell.cell_id)
    return cells
