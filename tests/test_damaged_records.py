"""Damaged records (issue 22): what ``table``, ``status``, ``report`` and ``run`` do with a record that is not a
record of the schema.

- A record whose field has the wrong type, or a number that is NaN, ±inf or out of its range (an accuracy
  outside [0, 100], a fraction outside [0, 1], a negative cost), is an error naming the file and the field:
  one line ``nlbench: error: record <file>: field <field> = …``, exit 2, nothing created, the record kept.
- A torn or empty record (its bytes are not JSON) holds no result: each command says so in one line
  ``warning: record <file> …`` on stderr, counts its cell as not done (``table`` leaves it out, ``status``
  lists it pending) and ``run`` runs the cell again, replacing the file.

The property-based tests damage every field of ``Record`` (nested ones included) in turn; the CLI runs in
this process (``nlbench.cli.main``), with one subprocess check of the exact stderr and exit code.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _gridfile import VALID, cli, write_toml
from _records import record_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlbench.report.tables import render
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import Record, read_record, record_path, write_record

NAN, INF = math.nan, math.inf
# One seed per cell: cell 0 gets damaged, cell 1 stays whole (so a table has something to show).
GRID = {**VALID, "seeds": [0, 1]}
SELECTION = [{"phase": "warmup", "epoch": 0, "size": 40, "precision": 87.5, "recall": 70.0}]


def good_record(spec) -> Record:
    """A whole record with every kind of nested field filled (selection, extra test sets, an LP probe's
    accuracy in ``extra``), so that each can be damaged."""
    return record_of(spec, selection=SELECTION, extra_test_acc_best={"imagenet": 55.0},
                     extra_test_acc_last={"imagenet": 54.0}, extra={"note": "x", "lp_test_acc_best": 50.0})


# ------------------------------------------------------------------------------------------ the damage
# What each field of the schema holds, by kind; BAD[kind] are values wrong for it (type, NaN/±inf, range).
BAD = {
    "str": [1, 2.5, True, None, [], {}, NAN, INF],
    "str?": [1, 2.5, True, [], {}, NAN, -INF],
    "int": ["1", 1.5, True, None, [], NAN, INF, -INF],
    "accuracy": ["50", True, None, [], NAN, INF, -INF, -0.01, 100.01, 1e308, -1e308, 101],
    "accuracy?": ["50", True, [], NAN, INF, -INF, -0.5, 100.5, 1e308],
    "fraction": ["0.2", True, None, NAN, INF, -INF, -0.01, 1.01, 1e308],
    "nonnegative": ["1", True, None, NAN, INF, -INF, -1.0, -1e308],
    "nonnegative?": ["1", True, NAN, INF, -INF, -1.0],
    "dict": ["x", 1, 2.5, True, None, [], NAN, INF],
    "dict?": ["x", 1, 2.5, True, [], NAN, -INF],
    "list": ["x", 1, 2.5, True, None, {}, NAN, INF],
    "list?": ["x", 1, 2.5, True, {}, NAN, INF],
    "version": ["2", 2.5, True, None, NAN, INF, -1, 3],
    "status": [1, True, None, NAN, "failed", ""],
}
# Every field of Record and of its nested tables, as a path into the record's JSON, with its kind.
FIELDS = {
    ("schema_version",): "version", ("status",): "status", ("cell_id",): "str", ("config_hash",): "str",
    ("grid",): "str", ("dataset",): "str", ("backbone",): "str", ("noise",): "str", ("rate",): "fraction",
    ("method",): "str", ("mode",): "str", ("seed",): "int", ("method_tag",): "str?", ("val_labels",): "str",
    ("config",): "dict", ("test_acc_best",): "accuracy", ("test_acc_last",): "accuracy",
    ("extra_test_acc_best",): "dict", ("extra_test_acc_best", "imagenet"): "accuracy",
    ("extra_test_acc_last",): "dict", ("extra_test_acc_last", "imagenet"): "accuracy",
    ("val_acc_best",): "accuracy", ("best_epoch",): "int",
    ("history",): "list", ("history", 1, "val_acc"): "accuracy", ("history", 1, "test_acc"): "accuracy?",
    ("extra",): "dict", ("extra", "lp_test_acc_best"): "accuracy",
    ("noise_audit",): "dict?", ("noise_audit", "convention"): "str", ("noise_audit", "realized_rate"): "fraction",
    ("noise_audit", "labels_sha256"): "str?", ("noise_audit", "transition"): "list?",
    ("noise_audit", "transition", 1, 0): "fraction",
    ("selection",): "list", ("selection", 0, "precision"): "accuracy", ("selection", 0, "recall"): "accuracy",
    ("selection", 0, "size"): "int",
    ("cost",): "dict", ("cost", "wall_s"): "nonnegative", ("cost", "peak_rss_mb"): "nonnegative",
    ("cost", "peak_cuda_mb"): "nonnegative?", ("cost", "feature_cache"): "dict", ("cost", "fft_epoch_s"): "list",
    ("cost", "resumed_from"): "list", ("cost", "backbone_forward_images"): "int",
    ("env",): "dict", ("determinism",): "dict?",
}


def test_every_field_of_the_schema_is_damaged_by_the_property_tests():
    """FIELDS covers Record and its nested dataclasses: a new field must get its damage here."""
    from dataclasses import fields

    from nlbench.run.records import Cost, NoiseAudit

    top = {p[0] for p in FIELDS}
    assert top == {f.name for f in fields(Record)}
    assert {p[1] for p in FIELDS if p[0] == "noise_audit" and len(p) > 1} == {f.name for f in fields(NoiseAudit)}
    assert {p[1] for p in FIELDS if p[0] == "cost" and len(p) > 1} >= {f.name for f in fields(Cost)} - {"counters"}


def dotted(path: tuple) -> str:
    """The field as the error line names it (``history.1.val_acc``; cost counters sit flat in ``cost``)."""
    return ".".join(str(p) for p in path)


def damaged_json(data: dict, path: tuple, value) -> str:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(data, indent=1)  # NaN/Infinity as Python's json writes them (and reads them back)


@st.composite
def damages(draw) -> tuple[tuple, object]:
    path = draw(st.sampled_from(sorted(FIELDS, key=dotted)))
    return path, draw(st.sampled_from(BAD[FIELDS[path]]))


# ------------------------------------------------------------------------------------------ a results folder
@pytest.fixture(scope="module")
def grid_file(tmp_path_factory) -> tuple[Path, list]:
    path = write_toml(tmp_path_factory.mktemp("grid") / "g.toml", GRID)
    return path, expand(load_grid(str(path)))


def results_with_records(folder: Path, cells) -> tuple[Path, list[Path]]:
    results = folder / "res"
    paths = [record_path(results, spec) for spec in cells]
    for spec, path in zip(cells, paths, strict=True):
        write_record(path, good_record(spec))
    return results, paths


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (folders by name)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def command(name: str, grid: Path, results: Path, cache: Path, *, dry: bool = False) -> list[str]:
    argv = [name, "--grid", str(grid), "--results", str(results)]
    if name == "run":
        argv += ["--cache", str(cache)] + (["--dry-run"] if dry else [])
    return argv


# ------------------------------------------------------------------------------------------ point 1
@pytest.mark.parametrize("value", [NAN, 1e308, INF, -INF, -0.5, 100.5])
def test_an_accuracy_that_is_no_accuracy_is_a_damaged_record(grid_file, tmp_path, value):
    """Issue 22.1: test_acc_best = NaN or 1e308 was "done" in status, skipped by run, printed by table and
    report; now each stops with one line naming the file and the field, exit 2, and the record is kept."""
    grid, cells = grid_file
    results, paths = results_with_records(tmp_path, cells)
    data = json.loads(paths[0].read_text())
    paths[0].write_text(damaged_json(data, ("test_acc_best",), value))
    kept = paths[0].read_bytes()
    before = snapshot(tmp_path)
    expected = ("a finite number" if not math.isfinite(value) else "greater than or equal to 0" if value < 0
                else "less than or equal to 100")
    for name in ("table", "status", "report", "run"):
        code, out, err = cli(*command(name, grid, results, tmp_path / "cache"))
        assert code == 2, (name, out, err)
        assert err.splitlines() == [f"nlbench: error: record {paths[0]}: field test_acc_best = {value!r}: "
                                    f"input should be {expected}"], name
        assert out == "", name
    assert snapshot(tmp_path) == before and paths[0].read_bytes() == kept


@pytest.mark.parametrize(("path", "value"), [
    (("history", 1, "val_acc"), NAN), (("history", 1, "test_acc"), 250.0), (("selection", 0, "precision"), -1.0),
    (("selection", 0, "recall"), INF), (("extra_test_acc_last", "imagenet"), 1e308),
    (("extra", "lp_test_acc_best"), NAN), (("noise_audit", "realized_rate"), 1.5), (("cost", "wall_s"), -INF),
])
def test_every_accuracy_and_fraction_of_a_record_is_checked(grid_file, tmp_path, path, value):
    """Per-epoch accuracies, selection precision/recall, extra test sets, the probe's accuracy, the realized
    rate and costs are checked as the headline accuracy is: `status` no longer calls such a record done."""
    grid, cells = grid_file
    results, paths = results_with_records(tmp_path, cells)
    paths[0].write_text(damaged_json(json.loads(paths[0].read_text()), path, value))
    code, out, err = cli(*command("status", grid, results, tmp_path / "cache"))
    assert code == 2 and out == ""
    assert err.startswith(f"nlbench: error: record {paths[0]}: field {dotted(path)} = {value!r}: input should be ")
    assert err.count("\n") == 1


def test_a_damaged_record_is_never_written(grid_file, tmp_path):
    """The schema's ranges hold for the writer too: run_cell cannot write an accuracy of NaN or 250."""
    _, cells = grid_file
    path = record_path(tmp_path, cells[0])
    for fields in ({"test_acc_best": NAN}, {"test_acc_last": 250.0},
                   {"history": [{"epoch": 0, "train_loss": NAN, "val_acc": INF, "test_acc": None}]}):
        with pytest.raises(Exception, match="input should be"):
            write_record(path, record_of(cells[0], **fields))
    assert not path.exists()
    # A diverged loss is a result, not damage: the history's train_loss may be NaN.
    write_record(path, record_of(cells[0], history=[{"epoch": 0, "train_loss": NAN, "val_acc": 10.0,
                                                     "test_acc": 10.0}], best_epoch=0))
    assert math.isnan(read_record(path).history[0]["train_loss"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(damage=damages(), name=st.sampled_from(["table", "status", "report", "run"]))
def test_property_a_damaged_field_stops_every_command_with_one_line(grid_file, damage, name):
    grid, cells = grid_file
    path, value = damage
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results, paths = results_with_records(tmp, cells)
        paths[0].write_text(damaged_json(json.loads(paths[0].read_text()), path, value))
        before = snapshot(tmp)
        code, out, err = cli(*command(name, grid, results, tmp / "cache"))
        assert code == 2, (out, err)
        assert out == ""
        assert err.count("\n") == 1 and err.startswith(f"nlbench: error: record {paths[0]}: "), err
        # The line names the field (a counter sits flat in cost; a version names itself).
        assert dotted(path) in err or (path == ("schema_version",) and "schema_version" in err), err
        assert snapshot(tmp) == before  # nothing created, the record kept


# ------------------------------------------------------------------------------------------ point 2
def torn(text: str, length: int) -> str:
    return text[:length]


def assert_one_warning(err: str, path: Path) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: record {path} "), err
    assert "not done" in lines[0], err


@pytest.mark.parametrize("length", [0, 500])
def test_a_torn_or_empty_record_is_named_by_table_status_and_report(grid_file, tmp_path, length):
    """Issue 22.2: a record truncated to 500 or 0 bytes was dropped by table and listed pending by status
    without a word; each now says so in one warning line naming the file."""
    grid, cells = grid_file
    results, paths = results_with_records(tmp_path, cells)
    paths[0].write_text(torn(paths[0].read_text(), length))
    code, out, err = cli(*command("table", grid, results, tmp_path / "cache"))
    assert code == 0
    assert_one_warning(err, paths[0])
    assert "1 cells, 1 seed(s)" in out and "61.25" in out  # the whole record of seed 1 only
    if length == 0:
        assert err == (f"warning: record {paths[0]} is empty (0 bytes), not a record: its cell counts as not done "
                       f"and `nlbench run` runs it again, replacing the file\n")
    else:
        assert f"is not complete JSON ({length} bytes: torn or damaged)" in err
    code, out, err = cli(*command("status", grid, results, tmp_path / "cache"))
    assert code == 0
    assert_one_warning(err, paths[0])
    assert f"pending  -  {cells[0].cell_id}" in out and f"done     -  {cells[1].cell_id}" in out
    code, out, err = cli(*command("report", grid, results, tmp_path / "cache"))
    assert code == 0
    assert_one_warning(err, paths[0])
    assert "(1 records," in out


def test_a_torn_record_is_named_then_its_cell_runs_again(grid_file, tmp_path):
    """`nlbench run` names the torn file once, reruns that cell only and replaces the file with a whole
    record; the whole record of the other cell is not touched."""
    grid, cells = grid_file
    results, paths = results_with_records(tmp_path, cells)
    paths[0].write_text(torn(paths[0].read_text(), 500))
    other = paths[1].read_bytes()
    code, out, err = cli(*command("run", grid, results, tmp_path / "cache"))
    assert code == 0, err
    assert_one_warning(err, paths[0])
    assert "1 of 2 cells to run (1 done)" in out
    record = read_record(paths[0])
    assert record is not None and record.config_hash == cells[0].config_hash and 0 <= record.test_acc_best <= 100
    assert paths[1].read_bytes() == other
    code, _, err = cli(*command("status", grid, results, tmp_path / "cache"))
    assert code == 0 and err == ""  # the replaced record is whole: no warning any more


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(0.0, 1.0, exclude_max=True), name=st.sampled_from(["table", "status", "run"]))
def test_property_a_torn_record_is_one_warning_and_its_cell_not_done(grid_file, fraction, name):
    """Any strict prefix of a record (0 bytes included): one warning naming the file, the cell not done (run:
    the dry run shows it to run), the whole record of the other cell used as before. (`report`, which takes
    seconds per example, is checked on 0 and 500 bytes above.)"""
    grid, cells = grid_file
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results, paths = results_with_records(tmp, cells)
        text = paths[0].read_text()
        paths[0].write_text(torn(text, int(fraction * len(text))))
        code, out, err = cli(*command(name, grid, results, tmp / "cache", dry=True))
        assert code == 0, err
        assert_one_warning(err, paths[0])
        if name == "table":
            assert "1 cells, 1 seed(s)" in out
        elif name == "status":
            assert "1 done" in out and "1 pending" in out
        else:
            assert f"[todo] {cells[0].cell_id}" in out and f"[done] {cells[1].cell_id}" in out


def test_cli_line_and_exit_code_in_a_subprocess(grid_file, tmp_path):
    """The exact stderr and exit code of the entry point (`python -m nlbench`), as a shell sees them."""
    grid, cells = grid_file
    results, paths = results_with_records(tmp_path, cells)
    paths[0].write_text(damaged_json(json.loads(paths[0].read_text()), ("test_acc_best",), NAN))
    env = {**os.environ, "NLBENCH_CACHE": str(tmp_path / "nlbench-cache")}
    done = subprocess.run([sys.executable, "-m", "nlbench", "table", "--grid", str(grid), "--results", str(results)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"nlbench: error: record {paths[0]}: field test_acc_best = nan: input should be a finite "
                           f"number\n")


# ------------------------------------------------------------------------------------------ minor: "clean"
def test_a_none_column_beside_synthetic_noise_is_headed_clean(tmp_path):
    """Issue 22 (minor): `{ model = "none" }` on a dataset with clean labels is a clean run (realized rate 0,
    as run_cell records the 'none' model's draw); its column was headed "real", the heading of real-noise
    datasets. Real noise (no clean labels to audit, or a realized rate above 0) keeps "real"."""
    g = {**VALID, "noise": [{"model": "sym", "rate": 0.4}, {"model": "none"}]}
    grid = write_toml(tmp_path / "g.toml", g)
    cells = expand(load_grid(str(grid)))
    for spec in cells:
        audit = None
        if spec.noise == "none":
            from nlbench.run.records import NoiseAudit

            audit = NoiseAudit(convention="none", realized_rate=0.0, labels_sha256="ab" * 32,
                               transition=[[1.0, 0.0], [0.0, 1.0]])
        write_record(record_path(tmp_path / "res", spec),
                     record_of(spec, **({"noise_audit": audit} if audit else {})))
    code, out, err = cli("table", "--grid", str(grid), "--results", str(tmp_path / "res"))
    assert code == 0, err
    header = out.splitlines()[2]
    assert [c.strip() for c in header.strip("|").split("|")] == ["method", "sym 0.4", "clean"]
    real = {"mode": "lp", "method": "ce", "backbone": "b", "dataset": "clothing1m", "noise": "none", "rate": 0.0,
            "seed": 0, "test_acc_best": 70.0, "test_acc_last": 69.0, "noise_audit": None, "selection": []}
    noisy_audit = {**real, "dataset": "cifar10", "seed": 1, "noise_audit": {"realized_rate": 0.17}}
    for records in ([real], [noisy_audit], [real, noisy_audit]):
        assert "real" in render(records).splitlines()[0] and "clean" not in render(records)


def test_the_report_page_heads_a_clean_none_column_clean_too():
    """The HTML report names the columns as `nlbench table` does: a clean run's 'none' column is "clean", real
    noise keeps "real" (before, the page said "real" for both)."""
    from nlbench.report.page import report_frame

    base = {"mode": "lp", "method": "ce", "backbone": "b", "dataset": "digits", "rate": 0.0, "seed": 0,
            "test_acc_best": 70.0, "test_acc_last": 69.0, "selection": []}
    clean = {**base, "noise": "none", "noise_audit": {"realized_rate": 0.0}}
    sym = {**base, "noise": "sym", "rate": 0.4, "noise_audit": {"realized_rate": 0.36}}
    assert sorted(set(report_frame([clean, sym])["setting"])) == ["clean", "sym 0.4"]
    real = {**base, "dataset": "clothing1m", "noise": "none", "noise_audit": None}
    assert set(report_frame([real])["setting"]) == {"real"}
