"""``--set KEY=VALUE``: overrides of a grid file, checked by the grid's schema, in the config hash and the dry
run; a bad key or value is one line, exit 2, nothing written."""

from __future__ import annotations

import pytest
from _gridfile import VALID, assert_one_error_line, cli, tree, write_toml
from _records import record_of

from nlbench.errors import ConfigError
from nlbench.run.grids import expand, load_grid
from nlbench.run.overrides import apply_overrides, parse_value
from nlbench.run.records import record_path, write_record

METHODS = [{"method": "ce", "mode": "lp"}, {"method": "gce", "mode": "lp"}, {"method": "gce", "mode": "fft"},
           {"method": "dividemix", "mode": "lp", "tag": "long", "params": {"epochs": 3}},
           {"method": "dividemix", "mode": "lp"}]


def test_values_are_toml_values_else_strings() -> None:
    assert parse_value("50") == 50 and isinstance(parse_value("50"), int)
    assert parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("[0, 1, 2]") == [0, 1, 2]
    assert parse_value('{ model = "sym", rate = 0.2 }') == {"model": "sym", "rate": 0.2}
    assert parse_value("cpu") == "cpu" and parse_value('"50"') == "50"


def test_paths_into_the_grid_table() -> None:
    raw = {"datasets": ["digits"], "methods": [dict(m) for m in METHODS], "seeds": [0]}
    out = apply_overrides(raw, ["train.lp_epochs=50", "methods.gce.q=0.5", "methods.dividemix@long.epochs=7",
                                "seeds=[0, 1]", "val_labels=clean", "dataset_options.digits.root=/data"])
    assert out["train"] == {"lp_epochs": 50}
    assert out["seeds"] == [0, 1] and out["val_labels"] == "clean"
    assert out["dataset_options"] == {"digits": {"root": "/data"}}
    # every entry of gce (both modes) gets q; only the tagged DivideMix variant gets epochs = 7
    assert [m.get("params") for m in out["methods"]] == [None, {"q": 0.5}, {"q": 0.5}, {"epochs": 7}, None]
    assert raw["methods"][1] == {"method": "gce", "mode": "lp"} and "train" not in raw  # the input is untouched
    # later overrides win
    assert apply_overrides(raw, ["train.lp_epochs=5", "train.lp_epochs=6"])["train"] == {"lp_epochs": 6}


def test_an_override_is_the_same_grid_as_the_value_in_the_file(tmp_path) -> None:
    base = {**VALID, "methods": METHODS}
    in_file = {**base, "train": {**VALID["train"], "lp_epochs": 9},
               "methods": [{**m, "params": {**m.get("params", {}), "q": 0.3}} if m["method"] == "gce" else m
                           for m in METHODS]}
    write_toml(tmp_path / "a" / "g.toml", base)
    write_toml(tmp_path / "b" / "g.toml", in_file)
    overridden = expand(load_grid(str(tmp_path / "a" / "g.toml"), ["train.lp_epochs=9", "methods.gce.q=0.3"]))
    written = expand(load_grid(str(tmp_path / "b" / "g.toml")))
    assert [(c.cell_id, c.config_hash) for c in overridden] == [(c.cell_id, c.config_hash) for c in written]
    plain = {c.cell_id: c.config_hash for c in expand(load_grid(str(tmp_path / "a" / "g.toml")))}
    changed = {c.cell_id for c in overridden if c.config_hash != plain[c.cell_id]}
    # lp_epochs is read by the LP cells only, q by the GCE cells (the FFT one too): just those hashes change
    assert changed == {c.cell_id for c in overridden if c.mode == "lp" or c.method == "gce"}
    fft_only = expand(load_grid(str(tmp_path / "a" / "g.toml"), ["train.fft_epochs=4"]))
    assert {c.cell_id for c in fft_only if c.config_hash != plain[c.cell_id]} == {
        "digits__efficientnet_lite0__sym0.4__fft__gce__seed0"}


def test_dry_run_shows_the_overrides_and_the_cells_they_reopen(tmp_path) -> None:
    grid = str(write_toml(tmp_path / "g.toml", {**VALID, "methods": METHODS[:3]}))
    results = tmp_path / "runs"
    for spec in expand(load_grid(grid)):
        write_record(record_path(results, spec), record_of(spec))
    code, out, err = cli("run", "--grid", grid, "--results", str(results), "--set", "methods.gce.q=0.5",
                         "--dry-run")
    assert code == 0, err
    assert "overrides (--set): methods.gce.q=0.5" in out
    assert "3 cells, 1 done, 2 to run" in out
    assert "[done] digits__efficientnet_lite0__sym0.4__lp__ce__seed0" in out
    assert "[todo] digits__efficientnet_lite0__sym0.4__lp__gce__seed0" in out
    assert "[todo] digits__efficientnet_lite0__sym0.4__fft__gce__seed0" in out
    # nlbench table with the same overrides finds only the records of the overridden config (none for gce yet)
    code, out, err = cli("table", "--grid", grid, "--results", str(results), "--set", "methods.gce.q=0.5",
                         "--format", "csv")
    assert code == 0, err
    assert "LP CE" in out and "GCE" not in out


@pytest.mark.parametrize(("override", "fragments"), [
    ("train.lp_epoch=5", ["unknown [train] field(s) lp_epoch", "expected: input_size, lp_epochs",
                          "(with --set train.lp_epoch=5)"]),
    ("train.lp_epochs=0", ["lp_epochs = 0: input should be greater than or equal to 1"]),
    ("train.lp_epochs=abc", ["lp_epochs = 'abc': input should be a valid integer"]),
    ("train.device=gpu", ["device = 'gpu': expected one of: auto, cpu, cuda, cuda:N"]),
    ("methods.gcx.q=0.5", ["the grid has no method 'gcx'; its methods: ce, gce"]),
    ("methods.gce.qq=0.5", ["method 'gce' has no parameter(s) qq; expected: q"]),
    ("methods.gce.q=high", ["q = 'high'"]),
    ("methods.gce=0.5", ["a method's parameter is methods.METHOD.PARAM"]),
    ("foo.bar=1", ["unknown key 'foo'; expected one of: name, description"]),
    ("noise.rate=0.2", ["'noise' is set whole"]),
    ("train.lp_epochs", ["expected KEY=VALUE"]),
    ("=3", ["expected KEY=VALUE"]),
    ("seeds=[0, 0]", ["repeat a seed"]),
    ("train=5", ["train = 5: input should be a valid dictionary"]),
])
def test_a_bad_override_is_one_line_and_writes_nothing(tmp_path, override: str, fragments: list[str]) -> None:
    grid = str(write_toml(tmp_path / "g.toml", {**VALID, "methods": METHODS[:3]}))
    results = tmp_path / "runs"
    code, _, err = cli("run", "--grid", grid, "--results", str(results), "--set", override)
    assert_one_error_line(code, err, *fragments)
    assert tree(results) == []


def test_a_bad_override_through_the_api() -> None:
    with pytest.raises(ConfigError, match="no method 'nope'"):
        load_grid("quickstart", ["methods.nope.q=1"])
    grid = load_grid("quickstart", ["train.lp_epochs=50", "methods.gce.q=0.5"])
    assert grid.overrides == ("train.lp_epochs=50", "methods.gce.q=0.5")
    assert grid.raw["train"]["lp_epochs"] == 50
    assert all(m.get("params") == {"q": 0.5} for m in grid.raw["methods"] if m["method"] == "gce")
