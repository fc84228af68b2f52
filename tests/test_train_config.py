"""One schema, one typed config (issue 21): a grid is checked once, by the grid schema, from bounds declared once
on ``TrainConfig``'s own fields; nothing after it (``grids.expand``, ``TrainConfig``, ``CellSpec``,
``build_method``) checks the same values again."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import fields

import pytest
from _gridfile import VALID, assert_one_error_line, cli, write_toml

import nlbench.methods
import nlbench.run.grids
import nlbench.run.schema
from nlbench.engine.config import TrainConfig
from nlbench.errors import ConfigError
from nlbench.run.grids import Grid, expand, load_grid
from nlbench.run.schema import check_train
from nlbench.run.spec import CellSpec

# The bounds of the [train] fields, written out by hand: (a value just outside, the value on the bound).
BOUNDS = {
    "input_size": (0, 1), "lp_epochs": (0, 1), "fft_epochs": (0, 1), "lp_batch_size": (0, 1),
    "fft_batch_size": (0, 1), "eval_batch_size": (0, 1), "threads": (0, 1),
    "lp_lr": (0.0, 1e-12), "fft_lr": (-1e-3, 1e-12), "lp_weight_decay": (-1e-12, 0.0),
    "fft_weight_decay": (-1e-12, 0.0), "momentum": (1.0, 0.999), "device": ("cuda:", "cuda:1"),
}
CHOICES = {"lp_optimizer": ("adamw", "sgd"), "fft_optimizer": ("adamw", "sgd"), "scheduler": ("constant", "cosine"),
           "amp": ("bf16", "none")}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_each_bound_is_the_schemas_and_sits_where_it_should(name):
    outside, edge = BOUNDS[name]
    with pytest.raises(ConfigError, match=rf"^\[train\]: {name} = "):
        check_train({name: outside})
    assert getattr(check_train({name: edge}), name) == edge


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_each_choice_is_the_schemas(name):
    for value in CHOICES[name]:
        assert getattr(check_train({name: value}), name) == value
    quoted = " or ".join(repr(v) for v in CHOICES[name])
    with pytest.raises(ConfigError) as caught:
        check_train({name: "adam"})
    assert str(caught.value) == f"[train]: {name} = 'adam': input should be {quoted}"


def test_the_bounds_are_declared_once_on_the_config_fields():
    # The schema's [train] model is derived from TrainConfig: the fields that carry bounds are exactly the
    # ones bounded above, and no table of ranges or choices is kept beside them.
    bounded = {f.name for f in fields(TrainConfig) if f.metadata.get("bounds")}
    assert bounded == set(BOUNDS)
    assert not [name for name in vars(nlbench.run.schema) if name.startswith("TRAIN_")]
    assert not hasattr(TrainConfig, "from_dict")


def test_the_config_itself_checks_nothing():
    # What the schema refuses, TrainConfig (and so CellSpec) builds without a word: there is no second check.
    assert TrainConfig(lp_epochs=0, momentum=2.0, scheduler="linear").lp_epochs == 0
    spec = CellSpec(grid="g", dataset="digits", backbone="efficientnet_lite0", noise="sym", rate=0.4, method="ce",
                    mode="lp", seed=0, train={"lp_epochs": 0})
    assert spec.train_config.lp_epochs == 0


def test_check_train_keeps_the_grids_own_values():
    # An int written for a float field stays an int: records store and hash what the grid wrote.
    config = check_train({"lp_lr": 1, "input_size": 16})
    assert config.lp_lr == 1 and type(config.lp_lr) is int
    assert config == TrainConfig(lp_lr=1, input_size=16)


class Spy:
    """Counts the calls of a function it stands in for, and calls it."""

    def __init__(self, monkeypatch, module, name: str) -> None:
        self.calls = 0
        self.real = getattr(module, name)
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)

    def __get__(self, obj, owner=None):  # standing in for a method: bound like one
        return functools.partial(self, obj) if obj is not None else self


def bad_grid(**changes) -> dict:
    g = copy.deepcopy(VALID)
    g.update(changes)
    return g


@pytest.mark.parametrize(("changes", "line"), [
    ({"train": {**VALID["train"], "lp_epochs": 0}},
     "nlbench: error: [train]: lp_epochs = 0: input should be greater than or equal to 1\n"),
    ({"train": {**VALID["train"], "momentum": math.inf}},
     "nlbench: error: [train]: momentum = inf: input should be a finite number\n"),
    ({"methods": [{"method": "gce", "mode": "lp", "params": {"qq": 0.5}}]},
     "nlbench: error: method 'gce' has no parameter(s) qq; expected: q\n"),
])
def test_a_bad_value_is_caught_once_by_the_schema(changes, line, tmp_path, monkeypatch):
    path = write_toml(tmp_path / "grids" / "g.toml", bad_grid(**changes))
    table_checks = Spy(monkeypatch, nlbench.run.grids, "check_grid_table")
    methods_built = Spy(monkeypatch, nlbench.methods, "build_method")
    specs_made = Spy(monkeypatch, CellSpec, "__post_init__")
    code, out, err = cli("run", "--dry-run", "--grid", str(path), "--results", str(tmp_path / "res"),
                         "--cache", str(tmp_path / "cache"))
    assert_one_error_line(code, err)
    assert err == line and out == ""
    assert table_checks.calls == 1  # the schema ran once and refused it ...
    assert methods_built.calls == 0 and specs_made.calls == 0  # ... before anything downstream saw the grid
    # The error is raised inside the schema module, not re-raised from a later check.
    with pytest.raises(ConfigError) as caught:
        load_grid(str(path))
    assert caught.traceback[-1].path.name == "schema.py"


def test_a_valid_grid_is_checked_once_and_expand_checks_nothing_again(tmp_path, monkeypatch):
    path = write_toml(tmp_path / "grids" / "g.toml", bad_grid(
        methods=[{"method": "gce", "mode": "lp", "params": {"q": 0.5}}, {"method": "ce", "mode": "lp"}]))
    validations = Spy(monkeypatch, nlbench.run.schema, "check")  # every pydantic validation of the schema
    grid = load_grid(str(path))
    assert validations.calls > 0
    validations.calls = 0
    specs_made = Spy(monkeypatch, CellSpec, "__post_init__")
    cells = expand(grid)
    assert len(cells) == 2 and validations.calls == 0 and specs_made.calls == 2
    assert {c.train_config for c in cells} == {TrainConfig(**VALID["train"])}


def test_a_grid_made_in_code_goes_through_the_same_schema():
    table = bad_grid(train={"lp_epochs": 0})
    with pytest.raises(ConfigError, match=r"^\[train\]: lp_epochs = 0: "):
        Grid.from_table(table, name="mine")
    with pytest.raises(ConfigError, match="is not one path component"):
        Grid.from_table(VALID, name="../escape")
    grid = Grid.from_table(VALID, name="mine")
    (cell,) = expand(grid)
    assert cell.grid == "mine" and cell.train_config.input_size == 16


def test_build_method_leaves_parameter_names_to_the_schema():
    # A name the method lacks, in code (no grid): Python's own TypeError; through a grid: the schema's line.
    with pytest.raises(TypeError, match="qq"):
        nlbench.methods.build_method("gce", "lp", {"qq": 0.5})
    # Ranges stay the method's own check (its __post_init__), made once, when expand builds it.
    with pytest.raises(ConfigError, match="GCE"):
        nlbench.methods.build_method("gce", "lp", {"q": 1.5})
