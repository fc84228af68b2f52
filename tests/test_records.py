"""Records are written atomically and only a complete record with the current config hash counts as done."""

from __future__ import annotations

import json

import pytest

from nlbench.grids import expand, load_grid
from nlbench.records import is_done, read_record, record_path, write_record


def test_failed_write_keeps_the_old_record_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "records" / "cell.json"
    write_record(path, {"status": "done", "value": 1})
    with pytest.raises(TypeError):
        write_record(path, {"status": "done", "value": object()})  # not serialisable: fails mid-way
    assert json.loads(path.read_text())["value"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["cell.json"]


def test_done_needs_a_complete_record_with_matching_hash(write_grid, tmp_path):
    spec = expand(load_grid(write_grid()))[0]
    path = record_path(tmp_path, spec)
    assert not is_done(tmp_path, spec)
    path.parent.mkdir(parents=True)
    path.write_text('{"status": "done", "config_ha')  # torn file
    assert read_record(path) is None and not is_done(tmp_path, spec)
    write_record(path, {"status": "done", "config_hash": "something-else"})
    assert not is_done(tmp_path, spec)
    write_record(path, {"status": "done", "config_hash": spec.config_hash})
    assert is_done(tmp_path, spec)


def test_config_hash_follows_hyperparameters(write_grid):
    a = expand(load_grid(write_grid("a")))[0]
    b = expand(load_grid(write_grid("b", train={"lp_lr": 0.5})))[0]
    assert a.cell_id == b.cell_id
    assert a.config_hash != b.config_hash
    # the grid name is not part of the configuration
    assert a.config_hash == expand(load_grid(write_grid("c")))[0].config_hash
