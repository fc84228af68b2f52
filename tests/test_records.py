"""Records are written atomically through one schema (``Record``); only a complete record with the current
config hash counts as done; schema-1 records (earlier commits) read and tabulate as before; a damaged record
is one line naming its file and field."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import replace

import pytest
from _records import record_of

from nlbench.cli.main import main
from nlbench.report.tables import render
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import (
    SCHEMA_VERSION,
    NoiseAudit,
    Record,
    RecordError,
    is_done,
    load_records,
    read_record,
    record_path,
    write_record,
)


def v1_record(spec, acc: float, last: float, realized: float) -> dict:
    """A record exactly as ``run_cell`` wrote it at commit 20f324e (schema 1, no ``schema_version``): the
    identity at the top level and again in ``config`` (the whole cell spec), the nominal noise again in
    ``noise_audit``, the counters flat in ``cost``."""
    return {
        "status": "done",
        "cell_id": spec.cell_id,
        "config_hash": spec.config_hash,
        "config": spec.as_dict(),
        **{k: getattr(spec, k) for k in ("grid", "dataset", "backbone", "noise", "rate", "method", "mode", "seed")},
        "method_tag": spec.method_tag,
        "test_acc_best": acc,
        "test_acc_last": last,
        "extra_test_acc_best": {},
        "extra_test_acc_last": {},
        "val_acc_best": acc - 2.0,
        "best_epoch": 1,
        "val_labels": spec.val_labels,
        "history": [{"epoch": 0, "train_loss": 2.0, "val_acc": 10.0, "test_acc": 11.0},
                    {"epoch": 1, "train_loss": 1.0, "val_acc": acc - 2.0, "test_acc": acc}],
        "extra": {},
        "noise_audit": {
            "model": spec.noise,
            "convention": "reference",
            "nominal_rate": spec.rate,
            "realized_rate": realized,
            "labels_sha256": "cd" * 32,
            "transition": [[0.5, 0.5], [0.25, 0.75]],
        },
        "selection": [],
        "cost": {
            "wall_s": 2.0, "peak_rss_mb": 800.0, "peak_cuda_mb": None, "feature_cache": {"train/view0": "hit"},
            "backbone_forward_images": 0, "backbone_backward_images": 0, "backbones_built": 0,
            "fft_epoch_s": [], "resumed_from": [],
        },
        "env": {"python": "3.11.7", "platform": "test", "versions": {"torch": "2.4"}, "git_commit": "20f324e",
                "cuda": None},
        "determinism": {"threads": 2, "threads_pinned": True, "device": "cpu", "deterministic_kernels": False},
    }


def write_v1(path, record: dict) -> None:
    """As 20f324e's write_record did: json.dumps(indent=1, sort_keys=True)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_failed_write_keeps_the_old_record_and_leaves_no_temp_file(write_grid, tmp_path):
    spec = expand(load_grid(write_grid()))[0]
    path = tmp_path / "records" / "cell.json"
    write_record(path, record_of(spec, extra={"value": 1}))
    with pytest.raises(TypeError):
        write_record(path, record_of(spec, extra={"value": object()}))  # not serialisable: fails mid-way
    assert json.loads(path.read_text())["extra"]["value"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["cell.json"]


def test_a_record_off_the_schema_is_never_written(write_grid, tmp_path):
    spec = expand(load_grid(write_grid()))[0]
    path = tmp_path / "records" / "cell.json"
    with pytest.raises(RecordError, match="field test_acc_best = 'high': input should be a valid number"):
        write_record(path, record_of(spec, test_acc_best="high"))
    with pytest.raises(TypeError, match="takes a Record"):
        write_record(path, {"status": "done"})
    assert not path.parent.exists() or not list(path.parent.iterdir())


def test_done_needs_a_complete_record_with_matching_hash(write_grid, tmp_path):
    spec = expand(load_grid(write_grid()))[0]
    path = record_path(tmp_path, spec)
    assert not is_done(tmp_path, spec)
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "done", "config_ha')  # torn file
    assert read_record(path) is None and not is_done(tmp_path, spec)
    write_record(path, record_of(spec, config_hash="something-else"))
    assert not is_done(tmp_path, spec)
    write_record(path, record_of(spec))
    assert is_done(tmp_path, spec)


def test_config_hash_follows_hyperparameters(write_grid):
    a = expand(load_grid(write_grid("a")))[0]
    b = expand(load_grid(write_grid("b", train={"lp_lr": 0.5})))[0]
    assert a.cell_id == b.cell_id
    assert a.config_hash != b.config_hash
    # the grid name is not part of the configuration
    assert a.config_hash == expand(load_grid(write_grid("c")))[0].config_hash


def _keys(value, name: str) -> int:
    """How many times a key called ``name`` occurs anywhere in a JSON value."""
    if isinstance(value, dict):
        return sum((k == name) + _keys(v, name) for k, v in value.items())
    if isinstance(value, list):
        return sum(_keys(v, name) for v in value)
    return 0


def test_v2_record_round_trips_and_stores_the_rate_once(write_grid, tmp_path):
    spec = expand(load_grid(write_grid(noise=[{"model": "sym", "rate": 0.4}])))[0]
    record = record_of(spec)
    path = record_path(tmp_path, spec)
    write_record(path, record)
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION == 2
    assert on_disk["rate"] == 0.4 and _keys(on_disk, "rate") == 1 and _keys(on_disk, "nominal_rate") == 0
    assert _keys(on_disk, "noise") == 1 and _keys(on_disk, "seed") == 1
    assert on_disk["cost"]["backbone_forward_images"] == 100  # counters flat in cost, as always
    back = read_record(path)
    assert back.to_dict() == record.to_dict() == on_disk
    assert back.noise_audit.transition == [[0.4, 0.6], [0.25, 0.75]]
    assert back.cost.counters == {"backbone_forward_images": 100, "backbone_backward_images": 0, "backbones_built": 1}
    # The record holds the whole cell: the spec comes back, and with it the same config hash.
    assert back.spec() == spec and back.spec().config_hash == spec.config_hash == back.config_hash


def _v1_grid(write_grid, tmp_path):
    grid = write_grid("old", noise=[{"model": "sym", "rate": 0.6}, {"model": "asym", "rate": 0.2}],
                      methods=[{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}], seeds=(0, 1))
    cells = expand(load_grid(grid))
    results = tmp_path / "runs"
    raw = []
    for k, spec in enumerate(cells):
        record = v1_record(spec, acc=50.0 + 3 * k, last=49.0 + 2 * k, realized=round(spec.rate * 0.9, 6))
        write_v1(record_path(results, spec), record)
        raw.append(record)
    return grid, cells, results, raw


# The leaderboard 20f324e's `nlbench table` printed for _v1_grid's records (cells in expand's order: noise,
# then method, then seed; acc = 50 + 3k): sym 0.6 CE 50, 53 → 51.50 ± 2.12; GCE 56, 59 → 57.50 ± 2.12;
# asym 0.2 CE 62, 65 → 63.50 ± 2.12; GCE 68, 71 → 69.50 ± 2.12 (the best of each column bold).
# The records' 2 × 2 transition makes C = 2: LP CE's 51.50 at sym 0.6 is within chance (50 + 5 points), marked †.
V1_TABLE = """\
| method   |   sym 0.6 (realized 0.54) |   asym 0.2 (realized 0.18) |
|:---------|--------------------------:|---------------------------:|
| LP CE    |               51.50±2.12† |                 63.50±2.12 |
| LP GCE   |            **57.50±2.12** |             **69.50±2.12** |

† training did not leave chance level (mean best test accuracy ≤ 100/C + min(50/C, 5) points); not ranked."""


def test_v1_records_read_and_tabulate_as_before(write_grid, tmp_path):
    grid, cells, results, raw = _v1_grid(write_grid, tmp_path)
    assert all(is_done(results, spec) for spec in cells)  # schema 1 keeps its config hashes: nothing reruns
    records = load_records(results, cells)
    assert render(records, realized=True) == render(raw, realized=True) == V1_TABLE
    for metric in ("test_acc_last", "time", "realized_rate"):
        assert render(records, metric=metric, fmt="csv") == render(raw, metric=metric, fmt="csv")
    code, out, _ = cli("table", "--grid", grid, "--results", str(results), "--realized")
    assert code == 0 and out.rstrip("\n").endswith(V1_TABLE)
    # Migrated: each fact once, the spec whole.
    record = read_record(record_path(results, cells[0]))
    assert record.schema_version == 2 and record.rate == 0.6 and record.noise == "sym"
    assert set(record.config).isdisjoint({"rate", "noise", "grid", "seed"})
    assert record.noise_audit == NoiseAudit(convention="reference", realized_rate=0.54, labels_sha256="cd" * 32,
                                            transition=[[0.5, 0.5], [0.25, 0.75]])
    assert record.spec() == cells[0]


def test_v1_records_of_older_commits_get_the_fields_added_since(write_grid, tmp_path):
    spec = expand(load_grid(write_grid()))[0]
    old = v1_record(spec, acc=50.0, last=49.0, realized=0.54)
    for key in ("method_tag", "extra_test_acc_best", "extra_test_acc_last", "determinism"):
        del old[key]
    del old["noise_audit"]["labels_sha256"], old["cost"]["fft_epoch_s"], old["cost"]["resumed_from"]
    record = Record.from_dict(old)
    assert (record.method_tag, record.extra_test_acc_best, record.determinism) == (None, {}, None)
    assert record.noise_audit.labels_sha256 is None and record.cost.fft_epoch_s == []


def test_v1_record_whose_copies_disagree_is_damaged(write_grid):
    spec = expand(load_grid(write_grid()))[0]
    old = v1_record(spec, acc=50.0, last=49.0, realized=0.54)
    old["noise_audit"]["nominal_rate"] = 0.2
    with pytest.raises(RecordError, match=r"^record r.json: noise_audit.nominal_rate = 0.2 disagrees with rate = 0.6$"):
        Record.from_dict(old, source="r.json")
    old = v1_record(spec, acc=50.0, last=49.0, realized=0.54)
    old["config"]["rate"] = 0.4
    with pytest.raises(RecordError, match=r"config.rate = 0.4 disagrees with rate = 0.6"):
        Record.from_dict(old)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: d.update(rate="0.6"), "field rate = '0.6': input should be a valid number"),
    (lambda d: d.update(seed=True), "field seed = True: input should be a valid integer"),
    (lambda d: d.pop("test_acc_last"), "missing field test_acc_last"),
    (lambda d: d["noise_audit"].update(realized_rate=[0.5]),
     "field noise_audit.realized_rate = [0.5]: input should be a valid number"),
    (lambda d: d["cost"].update(backbones_built="one"),
     "field cost.backbones_built = 'one': input should be a valid integer"),
    (lambda d: d["noise_audit"].pop("convention"), "missing field noise_audit.convention"),
    (lambda d: d.update(schema_version=3),
     "schema_version 3; this nlbench reads versions 1 to 2 (a newer nlbench wrote it?)"),
    (lambda d: d.update(colour="red"), "unknown field colour"),
    (lambda d: d.update(schema_version=True), "field schema_version = True: expected an integer"),
])
def test_damaged_record_is_one_line_naming_file_and_field(write_grid, tmp_path, damage, message):
    grid = write_grid()
    spec = expand(load_grid(grid))[0]
    path = record_path(tmp_path, spec)
    write_record(path, record_of(spec))
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    for command in (["table"], ["status"], ["run", "--cache", str(tmp_path / "cache")]):
        code, out, err = cli(command[0], "--grid", grid, "--results", str(tmp_path), *command[1:])
        assert code == 2, (command, out, err)
        assert err.splitlines() == [f"nlbench: error: record {path}: {message}"], (command, err)
    assert json.loads(path.read_text()) == data  # never overwritten


def test_damaged_v1_record_names_its_field_too(write_grid, tmp_path):
    grid, cells, results, raw = _v1_grid(write_grid, tmp_path)
    path = record_path(results, cells[1])
    damaged = dict(raw[1], test_acc_best="n/a")
    write_v1(path, damaged)
    code, _, err = cli("table", "--grid", grid, "--results", str(results))
    assert code == 2
    assert err.splitlines() == [f"nlbench: error: record {path}: field test_acc_best = 'n/a': input should be a "
                                f"valid number"]


def test_spec_of_a_tagged_variant_round_trips(write_grid, tmp_path):
    spec = expand(load_grid(write_grid(methods=[{"method": "gce", "mode": "lp", "tag": "q9",
                                                  "params": {"q": 0.9}}])))[0]
    spec = replace(spec, val_labels="clean")
    path = record_path(tmp_path, spec)
    write_record(path, record_of(spec))
    back = read_record(path)
    assert (back.method_tag, back.val_labels) == ("q9", "clean") and back.spec() == spec
