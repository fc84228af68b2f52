"""The noisy labels have their own seed (issue 23, point 9).

Reference: DivideMix (LiJunnan1992/DivideMix @ d9d3058) ``Train_cifar.py`` 223-224 names the noise file
``'%s/%.1f_%s.json' % (data_path, r, noise_mode)`` (no seed in it), and ``dataloader_cifar.py`` 56-57 loads it
when it exists, 58-78 draw and save it only when it does not: one noisy-label vector per (rate, mode), reused
by every run and seed. UNICON (nazmul-karim170/UNICON-Noisy-Label @ 616dc49) does the same:
``Train_cifar.py`` 344-345 (``clean_%.4f_%s.npz``), ``dataloader_cifar.py`` 83-85 (load) and 125-126 (save).

nlbench's default ``noise_seed = 0`` is that: every training seed of a setting trains on the draw of seed 0;
``noise_seed = "per-seed"`` redraws from each training seed (nlbench's behaviour before the field existed).
"""

from __future__ import annotations

import numpy as np
import pytest
from _records import record_of

from nlbench.datasets import load_dataset
from nlbench.errors import ConfigError
from nlbench.noise import apply_noise
from nlbench.report.leaderboard import leaderboard
from nlbench.run.frames import results_frame
from nlbench.run.grids import expand, load_grid
from nlbench.run.labels import clean_train_val, noisy_labels
from nlbench.run.spec import CellSpec

SEEDS = (0, 1, 2)


def cells_of(write_grid, **extra) -> dict[int, CellSpec]:
    return {c.seed: c for c in expand(load_grid(write_grid(seeds=SEEDS, **extra)))}


def reference_draw(dataset, seed: int) -> np.ndarray:
    """The grid's noise (sym 0.6 on digits) drawn directly from ``seed``: train part."""
    clean = clean_train_val(dataset)
    drawn = apply_noise("sym", clean, rate=0.6, seed=seed, num_classes=dataset.num_classes, dataset="digits")
    return drawn.labels[:len(dataset.train)]


def test_by_default_every_training_seed_trains_on_one_draw(write_grid):
    cells, dataset = cells_of(write_grid), load_dataset("digits")
    assert {s: c.noise_seed for s, c in cells.items()} == {0: 0, 1: 0, 2: 0}
    expected = reference_draw(dataset, 0)
    for seed in SEEDS:
        train, _, result = noisy_labels(cells[seed], dataset)
        np.testing.assert_array_equal(train, expected)
        assert result.digest == noisy_labels(cells[0], dataset)[2].digest


def test_per_seed_redraws_the_labels_from_each_training_seed(write_grid):
    cells, dataset = cells_of(write_grid, noise_seed="per-seed"), load_dataset("digits")
    assert {s: c.noise_seed for s, c in cells.items()} == {0: 0, 1: 1, 2: 2}
    draws = {s: noisy_labels(cells[s], dataset)[0] for s in SEEDS}
    for seed in SEEDS:
        np.testing.assert_array_equal(draws[seed], reference_draw(dataset, seed))
    # Reference convention, sym 0.6, 10 classes: a sample keeps its class with p 0.4 + 0.6/10 = 0.46 and takes
    # each other class with p 0.06, so two independent draws agree with p 0.46² + 9 · 0.06² = 0.244.
    assert abs((draws[0] != draws[1]).mean() - 0.756) < 0.05


def test_a_fixed_noise_seed_other_than_zero_is_drawn_from(write_grid):
    cells, dataset = cells_of(write_grid, noise_seed=7), load_dataset("digits")
    assert {c.label_seed for c in cells.values()} == {7}
    np.testing.assert_array_equal(noisy_labels(cells[2], dataset)[0], reference_draw(dataset, 7))


def test_the_config_hash_follows_the_labels(write_grid):
    shared = cells_of(write_grid)
    per_seed = cells_of(write_grid, noise_seed="per-seed")
    other = cells_of(write_grid, noise_seed=3)
    # Seed 0 draws from seed 0 either way: the same labels, the same hash (and the hash of before the field).
    assert shared[0].config_hash == per_seed[0].config_hash
    # Seeds 1 and 2 train on other labels under per-seed: other records.
    for seed in (1, 2):
        assert shared[seed].config_hash != per_seed[seed].config_hash
    for seed in SEEDS:
        assert other[seed].config_hash != shared[seed].config_hash
    # The cell id is the training seed's: one record file per training seed whatever the noise seed.
    assert [shared[s].cell_id for s in SEEDS] == [per_seed[s].cell_id for s in SEEDS]


def test_a_record_without_the_field_keeps_its_hash_and_its_training_seed_draw():
    fields = dict(grid="g", dataset="digits", backbone="efficientnet_lite0", noise="sym", rate=0.4, method="gce",
                  mode="lp", seed=1, method_params={"q": 0.7},
                  train={"input_size": 16, "lp_epochs": 2, "fft_epochs": 3})
    old = CellSpec(**fields)  # as read back from a record written before noise_seed existed
    assert old.noise_seed is None and old.label_seed == 1
    # Pinned in tests/test_spec.py from the code before typed forms and noise seeds existed.
    assert old.config_hash == "53d96a20ea4c5c37"
    assert CellSpec(**fields, noise_seed=1).config_hash == "53d96a20ea4c5c37"
    assert CellSpec(**fields, noise_seed=0).config_hash != "53d96a20ea4c5c37"


def test_the_record_stores_the_noise_seed(write_grid):
    cell = cells_of(write_grid)[2]
    record = record_of(cell)
    assert record.config["noise_seed"] == 0
    again = record.spec()
    assert again.noise_seed == 0 and again.config_hash == cell.config_hash
    assert results_frame([record.to_dict()])["noise_seed"].tolist() == [0]


def test_the_override_and_bad_values(write_grid):
    grid = load_grid(write_grid(seeds=SEEDS), overrides=["noise_seed=per-seed"])
    assert [c.noise_seed for c in expand(grid)] == [0, 1, 2]
    for bad in (-1, True, "per_seed", 1.5):
        with pytest.raises(ConfigError, match="noise_seed") as info:
            load_grid(write_grid(seeds=SEEDS, noise_seed=bad))
        assert "\n" not in str(info.value)


def test_the_table_says_which_variance_its_spread_shows(write_grid):
    def caption(**extra) -> str:
        records = [record_of(c, test_acc_best=50.0 + c.seed).to_dict() for c in cells_of(write_grid, **extra).values()]
        return leaderboard(results_frame(records)).splitlines()[0]

    assert caption().endswith("; ± = std over training seeds, one noise draw per setting (noise_seed 0)")
    assert caption(noise_seed="per-seed").endswith(
        "; ± = std over seeds, each with its own noise draw (noise_seed per-seed: noise and training variance)")
