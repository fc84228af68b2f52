"""Up-front checks of a run: everything a grid names is checked before its first cell, and ``--dry-run``
runs the very same checks.

``grids.load_grid``/``grids.expand`` check the grid's schema (types, ranges, keys, registry names, files
exist). ``check_run`` adds what needs the inputs themselves: the output folders can be written, no other
grid owns the results folder, every dataset loads (a user's CSV decodes, its images are images), every
noise entry passes its model's own option checks for that dataset, every local weights file is a state
dict. Each problem is a ConfigError of one line; nothing is written until all pass.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from nlbench.atomic import atomic_write_bytes, check_writable
from nlbench.backbones import load_state_dict_file
from nlbench.datasets import load_dataset
from nlbench.datasets.custom import check_images
from nlbench.errors import ConfigError, DataNotFound
from nlbench.noise import check_noise_options
from nlbench.run.grids import Grid
from nlbench.run.spec import CellSpec

# Written into <results>/<grid name>/ by the first run: which grid file owns that folder (see claim_results).
OWNER_FILE = ".grid-source.json"


def check_output_folder(path: str | Path, what: str, hint: str = "choose a folder you can write") -> None:
    """``path`` is, or can be created as, a folder we can write in: not a file, not read-only."""
    if str(path) == "":
        raise ConfigError(f"{what} is empty; expected a folder")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a file; expected a folder")
    existing = p
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: mkdir would meet it as an existing name
            raise ConfigError(f"{what} {str(existing)!r} is a symbolic link to {os.readlink(existing)!r}, which does "
                              "not exist; create its target or choose another folder")
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {str(p)!r} cannot be created: {str(existing)!r} is a file")
    check_writable(p, what, hint)


def check_results_layout(grid: Grid, results: str | Path) -> None:
    """The names nlbench writes under ``<results>/<grid>/`` are free or of the right kind: its folders are
    not files, its fixed files (the owner file, the claims' lock) are not folders."""
    base = Path(results) / grid.name
    for folder in (base, base / "claims", base / "records"):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{str(folder)!r} is a file; nlbench keeps a folder there: move the file away")
    for file in (base / OWNER_FILE, base / "claims" / ".mutex"):
        if file.is_dir():
            raise ConfigError(f"{str(file)!r} is a folder; nlbench keeps a file there: remove the folder "
                              "(nlbench makes the file again)")


def _owner_path(grid: Grid, results: Path) -> Path:
    return Path(results) / grid.name / OWNER_FILE


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_results_owner(grid: Grid, results: str | Path) -> None:
    """Two grid files with one name must not share ``<results>/<name>/``: the second would replace the
    first's records without a word. The folder belongs to the grid file that ran there first; a grid file
    that has since moved (its old path is gone) takes it over."""
    owner = _owner_path(grid, Path(results))
    try:
        recorded = json.loads(owner.read_text()).get("source")
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"cannot read {str(owner)!r} ({exc}); it names the grid file that owns this results "
                          f"folder: repair or delete it") from None
    if not isinstance(recorded, str) or _same_file(recorded, grid.source) or not Path(recorded).is_file():
        return
    raise ConfigError(f"grid {grid.name!r} of {grid.source!r} would write into {str(owner.parent)!r}, which holds "
                      f"the records of another grid file with that name, {recorded!r}; give this grid its own "
                      f"name = \"...\" or use another --results folder")


def claim_results(grid: Grid, results: str | Path) -> None:
    """Check the owner (``check_results_owner``), then record this grid file as the owner of its folder."""
    check_results_owner(grid, results)
    owner = _owner_path(grid, Path(results))
    source = str(Path(grid.source).resolve())
    try:
        if json.loads(owner.read_text()).get("source") == source:
            return
    except (OSError, ValueError, AttributeError):
        pass
    atomic_write_bytes(owner, json.dumps({"grid": grid.name, "source": source}, indent=1).encode())


def check_inputs(cells: list[CellSpec], *, missing_data: Callable[[str], None] | None = None) -> None:
    """Load every dataset of ``cells`` once and check every noise entry against it and every weights file,
    so a bad value in the last entry fails before the first cell runs. With ``missing_data`` (a dry run), a
    dataset whose files are not here is reported to it instead of raised, and the checks that need the
    dataset's contents are skipped for it."""
    datasets = {}
    checked_noise = set()
    checked_weights = set()
    checked_sizes = set()
    for cell in cells:
        key = (cell.dataset, json.dumps(cell.dataset_options, sort_keys=True, default=str))
        if key not in datasets:
            try:
                datasets[key] = load_checked_dataset(cell.dataset, cell.dataset_options)
            except DataNotFound as exc:
                if missing_data is None:
                    raise
                missing_data(str(exc))
                datasets[key] = None
        dataset = datasets[key]
        if dataset is None:
            continue
        check_held_out_labels(cell, dataset)
        noise_key = (key, cell.noise, cell.rate, json.dumps(cell.noise_options, sort_keys=True, default=str))
        if noise_key not in checked_noise:
            checked_noise.add(noise_key)
            if dataset.real_noise:
                if cell.noise != "none":
                    raise ConfigError(f"dataset {cell.dataset!r} carries real label noise (labels as given); use "
                                      f"noise model 'none' (got {cell.noise!r})")
            else:
                try:
                    check_noise_options(cell.noise, cell.rate, cell.noise_options, num_classes=dataset.num_classes,
                                        dataset=cell.dataset)
                except ConfigError:
                    raise
                except (TypeError, ValueError) as exc:  # an option of a type the model's code did not expect
                    raise ConfigError(f"noise {cell.noise!r} options {cell.noise_options}: {exc}") from None
                if (cell.noise == "inst" and cell.noise_options.get("inputs_kind", "pixels") == "pixels"
                        and dataset.train.images is None):
                    raise ConfigError(f"inst noise on pixels needs an in-memory dataset; {cell.dataset!r} is read "
                                      "by path: use the noise option inputs_kind='features'")
        size_key = (key, cell.method_key, cell.mode)
        if size_key not in checked_sizes:
            checked_sizes.add(size_key)
            try:
                cell.method_instance.check_train_size(len(dataset.train))
            except ConfigError as exc:
                raise ConfigError(f"method {cell.method_key!r} ({cell.mode}) on dataset {cell.dataset!r}: "
                                  f"{exc}") from None
        if cell.backbone_weights and cell.backbone_weights not in checked_weights:
            checked_weights.add(cell.backbone_weights)
            _check_weights(cell.backbone, cell.backbone_weights)


def check_held_out_labels(cell: CellSpec, dataset) -> None:
    """Test labels score the methods, and validation labels too with ``val_labels = "clean"``: a part held
    out of noisily labelled training images (a ``folder``/``csv`` dataset's ``test_size``/``val_size``) has
    no clean labels, so it cannot serve. Refused with what the user can do instead."""
    name = cell.dataset
    opts = f"[dataset_options.{name}]"
    if dataset.test.labels is None:
        raise ConfigError(
            f"dataset {name!r}: its test images are held out of the noisy training images "
            f"(test_size = {dataset.identity.get('test_size')}), so their labels are noisy too and cannot score the "
            f"methods; give clean test images (test/<class>/ folders, or CSV rows with split = test), or, if the "
            f"given labels are in fact clean, declare them so (labels = \"clean\" in {opts}) and add a synthetic "
            f"noise model; to compare methods on these noisy labels alone, run nlbench advise --data "
            f"{dataset.identity.get('dataset', 'folder')}:PATH (K-fold on the given labels, each method's clean "
            f"accuracy estimated with the assumption it rests on: docs/advise.md)")
    if cell.val_labels == "clean" and dataset.val.labels is None:
        own = dataset.identity.get("dataset") in ("folder", "csv")
        raise ConfigError(
            f"dataset {name!r}: val_labels = \"clean\" asks for clean validation labels, but its validation images "
            f"are held out of the noisy training images, so they have none; "
            + ("give clean validation images (val/<class>/ folders, or CSV rows with split = val), or " if own else "")
            + "set val_labels = \"noisy\"")


def load_checked_dataset(name: str, options: dict):
    """``load_dataset`` with any loader failure as a ConfigError, and a user's image files checked."""
    try:
        dataset = load_dataset(name, **options)
    except ConfigError:
        raise
    except Exception as exc:  # a loader's own ValueError/OSError: the options or files are bad
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
        raise ConfigError(f"dataset {name!r} ({shown}) cannot be loaded: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())}") from None
    check_images(dataset)
    return dataset


def _check_weights(backbone: str, path: str) -> None:
    try:
        state = load_state_dict_file(path)
    except Exception as exc:  # torch/safetensors raise many types for a file that is not a checkpoint
        raise ConfigError(f"backbone {backbone!r}: weights file {path!r} is not a readable checkpoint "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    if not isinstance(state, dict) or not state:
        raise ConfigError(f"backbone {backbone!r}: weights file {path!r} holds no state dict")


def check_run(grid: Grid, cells: list[CellSpec], *, results: str | Path, cache: str | Path,
              missing_data: Callable[[str], None] | None = None) -> None:
    """Every check a run makes before its first cell (``run`` and ``run --dry-run`` alike; a dry run passes
    ``missing_data`` to hear of datasets whose files are not on this machine rather than stop)."""
    check_output_folder(results, "results folder", "choose a writable one with --results")
    check_output_folder(cache, "cache folder", "choose a writable one with --cache or $NLBENCH_CACHE")
    check_results_layout(grid, results)
    check_results_owner(grid, results)
    check_inputs(cells, missing_data=missing_data)
