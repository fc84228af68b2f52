"""One typed cell spec, built once: ``grids.expand`` makes each ``CellSpec`` with its resolved ``TrainConfig``
and its method built from the resolved params, while what records store (``as_dict``) and the config hash
stay exactly what they were before the typed forms existed."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict

import pytest

from nlbench.engine.config import TrainConfig
from nlbench.methods import build_method, method_params
from nlbench.methods.gce import GCE
from nlbench.run.grids import expand, load_grid
from nlbench.run.spec import CellSpec

STORED_FIELDS = ["grid", "dataset", "backbone", "noise", "rate", "method", "mode", "seed", "backbone_tag",
                 "backbone_weights", "noise_options", "method_params", "dataset_options", "train", "val_labels",
                 "method_tag", "noise_seed"]


def hand_made(**kw) -> CellSpec:
    fields = dict(grid="g", dataset="digits", backbone="efficientnet_lite0", noise="sym", rate=0.4, method="gce",
                  mode="lp", seed=1, method_params={"q": 0.7}, train={"input_size": 16, "lp_epochs": 2,
                                                                       "fft_epochs": 3})
    return CellSpec(**{**fields, **kw})


def test_expand_gives_every_cell_its_train_config_and_its_method_built_once(write_grid):
    grid = load_grid(write_grid(
        methods=[{"method": "gce", "mode": "lp", "params": {"q": 0.5}}, {"method": "ce", "mode": "fft"}],
        seeds=(0, 1), train={"input_size": 16, "lp_epochs": 3}))
    cells = expand(grid)
    assert len(cells) == 4
    expected_config = TrainConfig(**grid.raw["train"])
    assert (expected_config.input_size, expected_config.lp_epochs) == (16, 3)
    for cell in cells:
        assert isinstance(cell.train_config, TrainConfig)
        assert cell.train_config == expected_config
        assert asdict(cell.train_config) == cell.train  # the typed form and the stored dict agree
        assert cell.method_instance == build_method(cell.method, cell.mode, cell.method_params)
        assert method_params(cell.method_instance) == cell.method_params
    gce = [c for c in cells if c.method == "gce"]
    assert gce[0].method_instance == GCE(q=0.5)
    # One methods entry of the grid, one method object for all its cells (seeds here).
    assert gce[0].method_instance is gce[1].method_instance


def test_records_store_the_same_fields_and_hash_as_before_the_typed_forms():
    spec = hand_made()
    with_method = hand_made(method_instance=GCE(q=0.7))
    for s in (spec, with_method):
        d = s.as_dict()
        assert list(d) == STORED_FIELDS
        json.dumps(d)  # plain data: the typed forms are not in it
        # Pinned from the code before this change (commit 20f324e), which had no typed forms.
        assert s.config_hash == "53d96a20ea4c5c37"
    assert spec == with_method  # the typed forms are not compared either


def test_a_spec_read_back_from_a_record_or_a_pickle_has_its_typed_forms():
    spec = hand_made(method_instance=GCE(q=0.7))
    again = CellSpec.from_dict(json.loads(json.dumps(spec.as_dict())))
    assert again == spec and again.config_hash == spec.config_hash
    assert again.train_config == TrainConfig(input_size=16, lp_epochs=2, fft_epochs=3)
    assert again.method_instance is None  # run_cell builds it from method_params
    shipped = pickle.loads(pickle.dumps(spec))  # how submitit hands cells to a SLURM job
    assert shipped.train_config == spec.train_config and shipped.method_instance == GCE(q=0.7)


def test_a_method_that_does_not_hold_the_params_is_refused():
    with pytest.raises(ValueError, match="does not hold method_params"):
        hand_made(method_instance=GCE(q=0.5))
