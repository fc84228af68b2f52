"""The grid schema (issue 17): every value of a grid is checked up front, one error line, nothing written.

Points 1 (names are one path component), 2 (same-named grids of different folders), 3 (noise options
checked before the first cell, --dry-run included), 4/5 (wrong types and silently accepted values) and 7
(the config hash covers file contents and only the [train] fields a cell reads), and the minor points about
grid files (byte-order mark, relative paths, NLBENCH_CACHE="").
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from _gridfile import VALID, assert_one_error_line, cli, tree, write_toml

from nlbench.errors import ConfigError
from nlbench.run.grids import Grid, expand, load_grid
from nlbench.run.schema import check_rate


def grid(**changes) -> dict:
    """VALID with top-level keys replaced (None deletes a key)."""
    g = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            g.pop(key, None)
        else:
            g[key] = value
    return g


def train(**fields) -> dict:
    return {**VALID["train"], **fields}


def dry_run(tmp_path: Path, g: dict, name: str = "g") -> tuple[int, str, str]:
    path = write_toml(tmp_path / "grids" / f"{name}.toml", g)
    return cli("run", "--dry-run", "--grid", str(path), "--results", str(tmp_path / "res"),
               "--cache", str(tmp_path / "cache"))


def assert_refused(tmp_path: Path, g: dict, *fragments: str) -> None:
    code, out, err = dry_run(tmp_path, g)
    assert_one_error_line(code, err, *fragments)
    assert out == ""
    assert tree(tmp_path / "res") == [] and not (tmp_path / "cache").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grids"]  # nothing written beside the grid either


# ---------------------------------------------------------------- point 4: wrong types anywhere
WRONG_TYPES = {
    "noise = ['sym']": grid(noise=["sym"]),
    "seeds = ['a']": grid(seeds=["a"]),
    "seeds = 3": grid(seeds=3),
    "seeds = [-1]": grid(seeds=[-1]),
    "name = 5": grid(name=5),
    "params = [1]": grid(methods=[{"method": "gce", "mode": "lp", "params": [1]}]),
    "q = 'x'": grid(methods=[{"method": "gce", "mode": "lp", "params": {"q": "x"}}]),
    "lp_epochs = 'abc'": grid(train=train(lp_epochs="abc")),
    "lp_epochs = 2.5": grid(train=train(lp_epochs=2.5)),
    "lp_lr = -1": grid(train=train(lp_lr=-1)),
    "input_size = -16": grid(train=train(input_size=-16)),
    "device = 'tpu'": grid(train=train(device="tpu")),
    "val_fraction = 2.0": grid(dataset_options={"digits": {"val_fraction": 2.0}}),
    "datasets = 'digits'": grid(datasets="digits"),
    "backbones = [3]": grid(backbones=[3]),
    "methods = ['ce']": grid(methods=["ce"]),
    "train = 3": grid(train=3),
    "val_labels = true": grid(val_labels=True),
}


@pytest.mark.parametrize("g", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_wrong_types_are_one_line(g, tmp_path):
    assert_refused(tmp_path, g)


def test_wrong_type_message_names_the_value_and_the_rule(tmp_path):
    code, _, err = dry_run(tmp_path, grid(train=train(lp_epochs="abc")))
    assert_one_error_line(code, err, "[train]: lp_epochs = 'abc': input should be a valid integer")
    code, _, err = dry_run(tmp_path, grid(train=train(device="tpu")))
    assert_one_error_line(code, err, "device = 'tpu'")
    code, _, err = dry_run(tmp_path, grid(dataset_options={"digits": {"val_fraction": 2.0}}))
    assert_one_error_line(code, err, "dataset 'digits'", "val_fraction=2.0")


# ---------------------------------------------------------------- point 5: silently accepted values
SILENTLY_ACCEPTED = {
    "seeds = [0.7]": (grid(seeds=[0.7]), "seeds.0 = 0.7"),
    "seeds = []": (grid(seeds=[]), "seeds = []"),
    "seeds = [1, 1]": (grid(seeds=[1, 1]), "repeat a seed"),
    "rate = true": (grid(noise=[{"model": "sym", "rate": True}]), "rate = True"),
    "input_size = 0": (grid(train=train(input_size=0)), "input_size = 0"),
    "augment = 'no'": (grid(train=train(augment="no")), "augment = 'no'"),
    "fft_lr = nan": (grid(train=train(fft_lr=math.nan)), "fft_lr = nan"),
    "unknown key in a backbone entry": (grid(backbones=[{"name": "efficientnet_lite0", "wieghts": "x.pth"}]),
                                        "unknown field(s) wieghts in the backbones entry of 'efficientnet_lite0'"),
    "top-level typo seed = [1, 2]": (grid(seed=[1, 2]), "unknown top-level field(s) seed"),
    "unknown dataset_options dataset": (grid(dataset_options={"cifar10": {"root": "x"}}), "[dataset_options.cifar10]"),
    "unknown dataset option": (grid(dataset_options={"digits": {"split_sed": 1}}), "has no option(s) split_sed"),
}


@pytest.mark.parametrize("g, fragment", SILENTLY_ACCEPTED.values(), ids=SILENTLY_ACCEPTED.keys())
def test_values_once_silently_accepted_are_refused(g, fragment, tmp_path):
    assert_refused(tmp_path, g, fragment)


def test_mapping_file_with_a_fractional_class_is_refused(tmp_path):
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "map.json").write_text('{"1": 7.9}')
    assert_refused(tmp_path, grid(noise=[{"model": "asym", "rate": 0.2, "mapping_file": "map.json"}]),
                   "entry '1': 7.9")


# ---------------------------------------------------------------- point 1: names are one path component
@pytest.mark.parametrize("name", ["../../escape", "/tmp/nlbench-escape", "a/b", "..", ".hidden", "", "a b", "-x"])
def test_grid_name_must_be_one_safe_path_component(name, tmp_path):
    assert_refused(tmp_path, grid(name=name), f"name = {name!r}")
    assert not Path("/tmp/nlbench-escape").exists()


def test_file_name_that_cannot_name_a_folder_needs_a_name(tmp_path):
    code, _, err = dry_run(tmp_path, grid(), name="my grid")
    assert_one_error_line(code, err, "set name =")
    code, _, err = dry_run(tmp_path, grid(name="mine"), name="my grid")
    assert code == 0, err


# ---------------------------------------------------------------- point 3: noise entries checked up front
BAD_SECOND_NOISE = {
    "unknown option": ({"model": "sym", "rate": 0.2, "convension": "exclusive"}, "unknown options: convension"),
    "asym 0.6 without force": ({"model": "asym", "rate": 0.6}, "pass the noise option force=true"),
    "missing mapping_file": ({"model": "asym", "rate": 0.2, "mapping_file": "gone.json"}, "gone.json"),
    "bad convention": ({"model": "sym", "rate": 0.2, "convention": "nope"}, "unknown sym convention 'nope'"),
    "inst std": ({"model": "inst", "rate": 0.2, "std": -1}, "std must be a positive number"),
}


@pytest.mark.parametrize("entry, fragment", BAD_SECOND_NOISE.values(), ids=BAD_SECOND_NOISE.keys())
def test_bad_second_noise_entry_fails_the_dry_run(entry, fragment, tmp_path):
    assert_refused(tmp_path, grid(noise=[{"model": "sym", "rate": 0.1}, entry]), fragment)


def test_bad_second_noise_entry_fails_before_the_first_cell_runs(tmp_path):
    path = write_toml(tmp_path / "g.toml", grid(noise=[{"model": "sym", "rate": 0.2}, {"model": "asym", "rate": 0.6}]))
    code, out, err = cli("run", "--grid", str(path), "--results", str(tmp_path / "res"), "--cache",
                         str(tmp_path / "cache"))
    assert_one_error_line(code, err, "asym rate 0.6")
    assert out == "" and tree(tmp_path / "res") == [] and not (tmp_path / "cache").exists()


def test_dry_run_of_a_valid_grid_passes_the_same_checks(tmp_path):
    code, out, err = dry_run(tmp_path, grid(noise=[{"model": "sym", "rate": 0.2}, {"model": "asym", "rate": 0.6,
                                                                                    "force": True}]))
    assert code == 0, err
    assert "2 cells, 0 done, 2 to run" in out


# ---------------------------------------------------------------- point 2: same name, different folders
def test_same_named_grids_of_different_folders_do_not_share_results(tmp_path):
    a = write_toml(tmp_path / "a" / "exp.toml", grid())
    b = write_toml(tmp_path / "b" / "exp.toml", grid(noise=[{"model": "sym", "rate": 0.2}]))
    res, cache = str(tmp_path / "res"), str(tmp_path / "cache")
    code, _, err = cli("run", "--grid", str(a), "--results", res, "--cache", cache)
    assert code == 0, err
    records = tmp_path / "res" / "exp" / "records"
    before = {p.name: p.read_bytes() for p in records.iterdir()}
    assert len(before) == 1
    for extra in (["--dry-run"], []):
        code, out, err = cli("run", *extra, "--grid", str(b), "--results", res, "--cache", cache)
        assert_one_error_line(code, err, "holds the records of another grid file", str(a))
        assert out == ""
    assert {p.name: p.read_bytes() for p in records.iterdir()} == before
    # The owner moved: its new path takes the folder over, and its records are still done.
    moved = tmp_path / "c" / "exp.toml"
    moved.parent.mkdir()
    Path(a).rename(moved)
    code, out, err = cli("run", "--grid", str(moved), "--results", res, "--cache", cache)
    assert code == 0, err
    assert "all 1 cells are done" in out


# ---------------------------------------------------------------- point 7: what the config hash covers
def cells_by_key(path: Path) -> dict[str, str]:
    return {f"{c.mode}/{c.method}": c.config_hash for c in expand(load_grid(str(path)))}


def test_hash_covers_the_mapping_file_content_not_its_path(tmp_path):
    (tmp_path / "map.json").write_text('{"1": 7}')
    path = write_toml(tmp_path / "g.toml", grid(noise=[{"model": "asym", "rate": 0.2, "mapping_file": "map.json"}]))
    first = cells_by_key(path)
    (tmp_path / "map.json").write_text('{"1": 7, "3": 5}')
    edited = cells_by_key(path)
    assert edited != first
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "map.json").rename(tmp_path / "elsewhere" / "renamed.json")
    path = write_toml(tmp_path / "g.toml", grid(noise=[{"model": "asym", "rate": 0.2,
                                                        "mapping_file": "elsewhere/renamed.json"}]))
    assert cells_by_key(path) == edited


def test_hash_covers_the_weights_file_content(tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "w.pth")
    path = write_toml(tmp_path / "g.toml", grid(backbones=[{"name": "efficientnet_lite0", "weights": "w.pth"}]))
    first = cells_by_key(path)
    torch.save({"w": torch.ones(4)}, tmp_path / "w.pth")
    assert cells_by_key(path) != first


def test_hash_covers_only_the_train_fields_a_cell_reads(tmp_path):
    methods = [{"method": "ce", "mode": "lp"}, {"method": "ce", "mode": "fft"}, {"method": "cl", "mode": "fft"},
               {"method": "turn", "mode": "lp-fft"}]

    def hashes(**fields) -> dict[str, str]:
        return cells_by_key(write_toml(tmp_path / "g.toml", grid(methods=methods, train=train(**fields))))

    base = hashes()
    lp = hashes(lp_epochs=3)
    assert lp["fft/ce"] == base["fft/ce"]  # changing lp_epochs does not re-run fine-tuning cells
    assert lp["lp/ce"] != base["lp/ce"] and lp["lp-fft/turn"] != base["lp-fft/turn"]
    assert lp["fft/cl"] != base["fft/cl"]  # confident learning probes in fft mode too
    fft = hashes(fft_epochs=3, augment=False)
    assert fft["lp/ce"] == base["lp/ce"] and fft["fft/ce"] != base["fft/ce"]
    shared = hashes(eval_batch_size=256)
    assert all(shared[k] != base[k] for k in base)


# ---------------------------------------------------------------- minor: grid-file details
def test_byte_order_mark_is_not_a_toml_error(tmp_path):
    path = write_toml(tmp_path / "grids" / "bom.toml", grid())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, out, err = cli("run", "--dry-run", "--grid", str(path), "--results", str(tmp_path / "res"))
    assert code == 0, err
    assert "grid bom" in out


def test_relative_paths_resolve_against_the_grid_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "map.json").write_text('{"1": 7}')
    path = write_toml(folder / "g.toml", grid(noise=[{"model": "asym", "rate": 0.2, "mapping_file": "data/map.json"}],
                                             datasets=["digits"]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = cli("run", "--dry-run", "--grid", str(path), "--results", "res")
    assert code == 0, err
    (cell,) = expand(load_grid(str(path)))
    assert cell.noise_options["mapping_file"] == str(folder / "data" / "map.json")


def test_empty_nlbench_cache_is_not_the_current_folder(monkeypatch):
    from nlbench.engine.features import default_cache_dir

    monkeypatch.setenv("NLBENCH_CACHE", "")
    assert default_cache_dir() == Path.home() / ".cache" / "nlbench"


def test_schema_follows_the_dataclasses():
    """A new TrainConfig field or method parameter is typed by the schema without touching it."""
    from dataclasses import fields

    from nlbench.engine.train import TrainConfig
    from nlbench.registry import METHODS
    from nlbench.run.schema import params_model, train_model

    assert list(train_model().model_fields) == [f.name for f in fields(TrainConfig)]
    for name in METHODS.names():
        assert list(params_model(name).model_fields) == [f.name for f in fields(METHODS.get(name))]


def test_valid_grids_shipped_with_nlbench_pass_the_schema():
    from nlbench.run.grids import grid_files

    for name in grid_files():
        assert expand(load_grid(name)), name



# ------------------------------------------------------- the noise rate: one range check, in the schema
@pytest.mark.parametrize("rate", [0.0, 0.25, 1.0, 1])
def test_rates_in_the_closed_unit_interval_pass(rate):
    assert check_rate(rate, "r") == float(rate)


@pytest.mark.parametrize("rate", [-1e-9, 1.0000001, math.inf, -math.inf, math.nan])
def test_rates_outside_the_unit_interval_are_one_line(rate, tmp_path):
    with pytest.raises(ConfigError, match=r"^x is outside \[0, 1\]$"):
        check_rate(rate, "x")
    code, out, err = dry_run(tmp_path, grid(noise=[{"model": "sym", "rate": rate}]))
    assert_one_error_line(code, err, "rate")
    assert tree(tmp_path / "res") == []


def test_a_grid_built_in_code_gets_the_same_rate_check():
    raw = {**copy.deepcopy(VALID), "noise": [{"model": "sym", "rate": 1.5}]}
    with pytest.raises(ConfigError, match=r"^noise rate 1.5 of 'sym' is outside \[0, 1\]$"):
        Grid.from_table(raw, name="g")


def test_the_rate_range_is_checked_in_one_place_only():
    # grids.expand, noise.apply_noise and `noise audit --rate` each checked it once; now the schema does.
    package = Path(__file__).parent.parent / "nlbench"
    checks = [p.name for p in package.rglob("*.py") if "is outside [0, 1]" in p.read_text()]
    assert checks == ["schema.py"]
