"""Checks of one registry entry against what the engine promises (scikit-learn's ``check_estimator`` idea):
``nlbench check method NAME`` and ``nlbench check backbone NAME``.

A method runs in every mode it declares on a toy cell (digits × EfficientNet-Lite0 at 16 px, sym 0.4,
seed 0, two epochs per phase), each cell as ``nlbench run`` runs it (``run_cell``: labels, engine, record):

- **record valid**: the record reads back through the record schema, is the cell's (config hash), and its
  accuracies are in [0, 100] with the best epoch in its history;
- **same seed, same record**: a second run of the cell (the feature cache now warm) gives the same record
  in everything training decides (scores, history, selections, extra, labels);
- **cached LP cell does no backbone forward** (mode lp): that second run builds no backbone and passes no
  image through one (the record's counters and a count of the ``Backbone`` objects made);
- **resume equals uninterrupted** (modes that fine-tune): the cell, interrupted right after its first
  per-epoch checkpoint is saved (a ``KeyboardInterrupt``, what Ctrl-C and SIGTERM raise in ``nlbench run``)
  and run again, resumes from the checkpoint and ends with the uninterrupted record.

A backbone is built as a run builds it (``create_backbone``: its declared facts checked), its features
checked against the declared feature dim and preprocessing, for determinism (one model twice, two builds),
and a linear-probe cell on digits run twice: the second, on the warm cache, must not run the backbone.

Every check gives one ``CheckResult``; a cell that raises fails the check it was running with the error's
one-line message, and the checks that needed its record are not run.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nlbench.backbones import Backbone, backbone_facts, create_backbone
from nlbench.engine.training_state import EpochCheckpoint
from nlbench.errors import ConfigError
from nlbench.registry import METHODS
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid
from nlbench.run.layout import checkpoint_dir
from nlbench.run.records import Record, read_record, record_path
from nlbench.run.spec import CellSpec

# The toy cell: small enough for a CPU (two epochs of each phase over digits' 1,257 training images at 16 px),
# threads pinned so that two runs of a cell are bit-identical.
TOY_TRAIN = {"input_size": 16, "lp_epochs": 2, "fft_epochs": 2, "fft_batch_size": 64, "eval_batch_size": 512,
             "threads": 1}
TOY_DATASET, TOY_BACKBONE, TOY_NOISE = "digits", "efficientnet_lite0", {"model": "sym", "rate": 0.4}
# What training decides in a record (timing, memory, cache events and the environment legitimately differ).
TRAINING_FIELDS = ("config_hash", "test_acc_best", "test_acc_last", "extra_test_acc_best", "extra_test_acc_last",
                   "val_acc_best", "best_epoch", "history", "selection", "extra", "noise_audit")


@dataclass(frozen=True)
class CheckResult:
    """One check of one entry: ``subject`` ('ce fft', 'efficientnet_lite0'), the check's name, the outcome
    and why (one line)."""

    subject: str
    check: str
    passed: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.subject}: {self.check}" + \
            (f" — {self.detail}" if self.detail else "")


Report = Callable[[CheckResult], None]


class CellFailed(Exception):
    """A cell of a check raised; the message is the error's one line."""


# ------------------------------------------------------------------------------------------- methods
def check_method(name: str, *, modes: list[str] | None = None, report: Report = lambda r: None,
                 work: Path | None = None) -> list[CheckResult]:
    """Run method ``name`` through its declared modes (or ``modes``, a subset) on the toy cell and check the
    engine's promises; each result is passed to ``report`` as it comes. ConfigError for an unknown method
    or a mode it does not declare."""
    declared = list(METHODS.entry(name).meta["modes"])
    for mode in modes or []:
        if mode not in declared:
            raise ConfigError(f"method {name!r} does not support mode {mode!r}; supported: {', '.join(declared)}")
    results: list[CheckResult] = []

    def note(result: CheckResult) -> None:
        results.append(result)
        report(result)

    with _work_folder(work) as folder:
        for mode in modes or declared:
            _check_method_mode(name, mode, folder / mode, note)
    return results


def toy_grid(folder: Path, *, methods: list[dict], backbone: str = TOY_BACKBONE,
             train: dict[str, Any] | None = None) -> Path:
    """The toy cell's grid file in ``folder`` (digits, one backbone, sym 0.4, seed 0)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    entries = ", ".join("{ " + ", ".join(f"{k} = {value(v)}" for k, v in m.items()) + " }" for m in methods)
    lines = ['name = "check"', f'datasets = ["{TOY_DATASET}"]', f'backbones = ["{backbone}"]', "seeds = [0]",
             f'noise = [{{ model = "{TOY_NOISE["model"]}", rate = {TOY_NOISE["rate"]} }}]', f"methods = [{entries}]",
             "[train]", *(f"{k} = {value(v)}" for k, v in (train or TOY_TRAIN).items())]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "check.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_method_mode(name: str, mode: str, folder: Path, note: Report) -> None:
    subject = f"{name} {mode}"
    cache = folder / "cache"
    try:
        (spec,) = expand(load_grid(str(toy_grid(folder, methods=[{"method": name, "mode": mode}]))))
    except ConfigError as exc:
        note(CheckResult(subject, "grid of the toy cell", False, _one_line(exc)))
        return

    try:  # 1. a record, as run writes it
        first = _run(spec, folder / "first", cache)
    except CellFailed as exc:
        note(CheckResult(subject, "record valid", False, f"the cell raised {exc}"))
        return
    problems = record_problems(first, spec)
    note(CheckResult(subject, "record valid", not problems, "; ".join(problems) or
                     f"test acc {first.test_acc_best:.2f} at epoch {first.best_epoch}, {len(first.history)} epoch(s)"))

    try:  # 2. the same cell again, on the warm feature cache
        with counting_backbones() as built:
            second = _run(spec, folder / "second", cache)
    except CellFailed as exc:
        note(CheckResult(subject, "same seed, same record", False, f"the second run raised {exc}"))
        return
    difference = record_difference(first, second)
    note(CheckResult(subject, "same seed, same record", difference is None,
                     f"the second run differs: {difference}" if difference else ""))

    if mode == "lp":  # 3. the warm cache serves every feature
        counters = second.cost.counters
        forwards, builds = counters.get("backbone_forward_images", 0), counters.get("backbones_built", 0)
        misses = sorted(k for k, v in second.cost.feature_cache.items() if v != "hit")
        ok = forwards == 0 and builds == 0 and built[0] == 0 and not misses
        note(CheckResult(subject, "cached LP cell does no backbone forward", ok, "" if ok else
                         f"the second run passed {forwards} image(s) through a backbone, built {builds} "
                         f"(made {built[0]} Backbone object(s)), cache misses: {', '.join(misses) or 'none'}"))

    if "fft" in mode.split("-"):  # 4. interrupted after its first checkpoint, then run again
        note(_resume_check(subject, spec, folder / "resumed", cache, first))


def _resume_check(subject: str, spec: CellSpec, results: Path, cache: Path, reference: Record) -> CheckResult:
    check = "resume equals uninterrupted"
    with interrupt_after_first_checkpoint() as saved:
        try:
            _run(spec, results, cache)
        except CellInterrupted:
            pass
        except CellFailed as exc:
            return CheckResult(subject, check, False, f"the interrupted run raised {exc}")
    if not saved:
        return CheckResult(subject, check, False, "the cell saved no per-epoch checkpoint (an interrupted cell "
                                                  "would start over)")
    if read_record(record_path(results, spec)) is not None:
        return CheckResult(subject, check, False, "the interrupted cell wrote a record")
    if not any(checkpoint_dir(results, spec).glob("*.pt")):
        return CheckResult(subject, check, False, "the interrupted cell left no checkpoint to resume from")
    try:
        resumed = _run(spec, results, cache)
    except CellFailed as exc:
        return CheckResult(subject, check, False, f"the resumed run raised {exc}")
    if not resumed.cost.resumed_from:
        return CheckResult(subject, check, False, f"the rerun did not resume from {saved[0]}")
    difference = record_difference(reference, resumed)
    where = ", ".join(f"loop {r['call']} after epoch {r['epoch']}" for r in resumed.cost.resumed_from)
    return CheckResult(subject, check, difference is None,
                       f"resumed ({where}) but differs: {difference}" if difference else f"resumed {where}")


class CellInterrupted(KeyboardInterrupt):
    """Raised by ``interrupt_after_first_checkpoint`` right after a loop saved its first checkpoint."""


@contextlib.contextmanager
def interrupt_after_first_checkpoint() -> Iterator[list[Path]]:
    """Within the block, the first per-epoch checkpoint any training loop saves (``EpochCheckpoint.save``,
    the one checkpoint of the engine's and the methods' loops) is followed by ``CellInterrupted``, a
    ``KeyboardInterrupt`` as Ctrl-C or SIGTERM raise it mid-run. Yields the list of saved paths (empty if
    the cell saved none)."""
    original = EpochCheckpoint.save
    saved: list[Path] = []

    def save_then_interrupt(self: EpochCheckpoint, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if self.active and not saved:
            saved.append(self.path)
            raise CellInterrupted(f"interrupted after {self.path.name}")

    EpochCheckpoint.save = save_then_interrupt  # type: ignore[method-assign]
    try:
        yield saved
    finally:
        EpochCheckpoint.save = original  # type: ignore[method-assign]


@contextlib.contextmanager
def counting_backbones() -> Iterator[list[int]]:
    """Within the block, count the ``Backbone`` objects made (every factory returns one; a cell that makes
    none runs none). Yields a one-item list holding the count."""
    original = Backbone.__init__
    made = [0]

    def init(self: Backbone, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        original(self, *args, **kwargs)

    Backbone.__init__ = init  # type: ignore[method-assign]
    try:
        yield made
    finally:
        Backbone.__init__ = original  # type: ignore[method-assign]


def _run(spec: CellSpec, results: Path, cache: Path) -> Record:
    """``run_cell`` as a run calls it; the record as read back from its file."""
    try:
        run_cell(spec, results, cache, log=lambda message: None)
    except CellInterrupted:
        raise
    except Exception as exc:  # a broken entry: any error is the check's finding
        raise CellFailed(f"{type(exc).__name__}: {_one_line(exc)}") from exc
    record = read_record(record_path(results, spec))
    if record is None:
        raise CellFailed(f"no record at {record_path(results, spec)}")
    return record


def record_problems(record: Record, spec: CellSpec) -> list[str]:
    """What is wrong with a finished cell's record beyond its schema: another cell's hash, an empty history, a
    best epoch not in the history. The ranges (accuracies in [0, 100], rates in [0, 1], selection scores) are the
    record schema's own (``nlbench.run.records``): a record outside them cannot be written or read."""
    problems = []
    if record.config_hash != spec.config_hash or record.cell_id != spec.cell_id:
        problems.append(f"record of cell {record.cell_id} ({record.config_hash}), expected {spec.cell_id} "
                        f"({spec.config_hash})")
    if not record.history:
        problems.append("the history is empty")
    elif not any(row.get("epoch") == record.best_epoch for row in record.history):
        problems.append(f"best_epoch {record.best_epoch} is not an epoch of the history")
    return problems


def record_difference(a: Record, b: Record) -> str | None:
    """The first difference between two records in what training decides (``TRAINING_FIELDS``), as
    'field: a != b' (history: the first differing epoch and key), or None."""
    da, db = a.to_dict(), b.to_dict()
    for field in TRAINING_FIELDS:
        if da[field] == db[field]:
            continue
        if field == "history" and len(da[field]) == len(db[field]):
            for i, (ra, rb) in enumerate(zip(da[field], db[field], strict=True)):
                for key in sorted(set(ra) | set(rb)):
                    if ra.get(key) != rb.get(key):
                        return f"history[{i}].{key}: {ra.get(key)!r} != {rb.get(key)!r}"
        if isinstance(da[field], dict) and isinstance(db[field], dict):
            for key in sorted(set(da[field]) | set(db[field]), key=str):
                if da[field].get(key) != db[field].get(key):
                    return f"{field}.{key}: {_short(da[field].get(key))} != {_short(db[field].get(key))}"
        return f"{field}: {_short(da[field])} != {_short(db[field])}"
    return None


# ------------------------------------------------------------------------------------------ backbones
def check_backbone(name: str, *, input_size: int | None = None, report: Report = lambda r: None,
                   work: Path | None = None) -> list[CheckResult]:
    """Build backbone ``name`` as a run does and check its facts, its features and the feature cache (a
    linear-probe cell on digits at ``input_size``, default the checkpoint's own); each result is passed to
    ``report`` as it comes. ConfigError for an unknown backbone."""
    facts = backbone_facts(name)
    results: list[CheckResult] = []

    def note(check: str, passed: bool, detail: str = "") -> None:
        results.append(CheckResult(name, check, passed, detail))
        report(results[-1])

    try:
        backbone = create_backbone(name)
    except Exception as exc:  # offline without its weights, a wrong fact, a broken factory
        note("builds with its declared facts", False, f"{type(exc).__name__}: {_one_line(exc)}")
        return results
    note("builds with its declared facts", True,
         f"feature_dim {facts.feature_dim}, input {backbone.input_size[0]}×{backbone.input_size[1]}, "
         f"weights {backbone.weights_id}")

    images = _probe_images(backbone)
    try:
        features = _features(backbone, images)
    except Exception as exc:
        note("features match the declared facts", False, f"a forward raised {type(exc).__name__}: {_one_line(exc)}")
        return results
    expected = facts.preprocessing_for(backbone.tag)
    problems = []
    if tuple(features.shape) != (len(images), facts.feature_dim):
        problems.append(f"{len(images)} images give features of shape {tuple(features.shape)}, the facts say "
                        f"({len(images)}, {facts.feature_dim})")
    if not torch.isfinite(features).all():
        problems.append("the features hold NaN or infinity")
    if (backbone.input_size, backbone.mean, backbone.std, backbone.interpolation) != \
            (expected.input_size, expected.mean, expected.std, expected.interpolation):
        problems.append(f"the model preprocesses {backbone.input_size} {backbone.mean} {backbone.std} "
                        f"{backbone.interpolation}, the facts say {expected}")
    note("features match the declared facts", not problems, "; ".join(problems) or
         f"({len(images)}, {facts.feature_dim}) at {expected.input_size[0]} px")

    again = _features(backbone, images)
    try:
        rebuilt = _features(create_backbone(name), images)
    except Exception as exc:
        note("features are deterministic", False, f"a second build raised {type(exc).__name__}: {_one_line(exc)}")
        return results
    same_model, same_build = torch.equal(features, again), torch.equal(features, rebuilt)
    note("features are deterministic", same_model and same_build, "" if same_model and same_build else
         ("one model gives different features for the same images" if not same_model else
          f"a second build gives other features (largest difference {float((features - rebuilt).abs().max()):.3g})"))
    del backbone

    with _work_folder(work) as folder:
        train = {**TOY_TRAIN, "input_size": input_size}
        if input_size is None:
            train.pop("input_size")
        try:
            (spec,) = expand(load_grid(str(toy_grid(folder, methods=[{"method": "ce", "mode": "lp"}],
                                                    backbone=name, train=train))))
            _run(spec, folder / "first", folder / "cache")
            with counting_backbones() as built:
                second = _run(spec, folder / "second", folder / "cache")
        except (ConfigError, CellFailed) as exc:
            note("cached LP cell does no backbone forward", False, f"the LP cell raised {_one_line(exc)}")
            return results
        forwards = second.cost.counters.get("backbone_forward_images", 0)
        ok = forwards == 0 and built[0] == 0
        note("cached LP cell does no backbone forward", ok, "" if ok else
             f"the second LP cell passed {forwards} image(s) through the backbone and made {built[0]} backbone(s)")
    return results


def _probe_images(backbone: Backbone) -> torch.Tensor:
    """Four seeded images at the backbone's input size, normalised by its preprocessing."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, *backbone.input_size, generator=generator)
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def _features(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    model = backbone.model.eval()
    return model(images.to(next(model.parameters()).device)).float().cpu()


# ------------------------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _work_folder(work: Path | None) -> Iterator[Path]:
    """``work`` (kept), or a temporary folder removed afterwards: results and feature cache of the checks."""
    if work is not None:
        Path(work).mkdir(parents=True, exist_ok=True)
        yield Path(work)
        return
    with tempfile.TemporaryDirectory(prefix="nlbench-check-") as tmp:
        yield Path(tmp)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
