"""Reproducible records: a fine-tuning cell gives the same record bit for bit whether it runs in a fresh
process or after other cells; the grid can pin the thread count (which fine-tuning results depend on) and
every record states it; a last training batch of one sample is folded into the batch before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dividemix import (  # tests/ is on sys.path (pytest's default prepend import mode)
    pooled_bn_backbone,
    tiny_trainer,
)

from nlbench.engine.images import TensorImages
from nlbench.engine.losses import cross_entropy
from nlbench.engine.train import num_train_batches, training_batches
from nlbench.errors import ConfigError
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid
from nlbench.run.records import record_path

# What legitimately differs between two runs of one cell: timing, memory, the environment report.
VOLATILE_COST = ("wall_s", "peak_rss_mb", "peak_cuda_mb", "fft_epoch_s")


def comparable(path: Path) -> str:
    """The record file at ``path`` without what legitimately differs between two runs."""
    record = json.loads(path.read_text())
    record.pop("env")
    for key in VOLATILE_COST:
        record["cost"].pop(key)
    return json.dumps(record, sort_keys=True)


def cells_by_name(grid_path: str) -> dict:
    return {f"{c.mode}/{c.method}": c for c in expand(load_grid(grid_path))}


@pytest.mark.slow
def test_fft_cell_gives_identical_records_in_a_fresh_process_and_after_other_cells(write_grid, tmp_path):
    grid = write_grid("det", methods=[{"method": "ce", "mode": "fft"}, {"method": "ce", "mode": "lp"},
                                      {"method": "elr", "mode": "fft"}],
                      train={"threads": 2, "fft_batch_size": 128})
    # 1) the FFT CE cell alone in a fresh process, empty cache
    fresh = tmp_path / "fresh"
    cells = cells_by_name(grid)
    target = cells["fft/ce"]
    script = (f"from nlbench.run.grids import expand, load_grid\nfrom nlbench.run.cell import run_cell\n"
              f"cell = [c for c in expand(load_grid({grid!r})) if c.mode == 'fft' and c.method == 'ce'][0]\n"
              f"run_cell(cell, {str(fresh)!r}, {str(fresh / 'cache')!r}, log=lambda m: None)\n")
    env = {**os.environ, "NLBENCH_CACHE": str(fresh / "cache")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    alone = record_path(fresh, target)
    # 2) in this process, after an LP cell and another FFT cell (other criterion, feature cache filled)
    shared = tmp_path / "shared"
    for name in ("lp/ce", "fft/elr"):
        run_cell(cells[name], shared, shared / "cache", log=lambda m: None)
    run_cell(target, shared, shared / "cache", log=lambda m: None)
    # 3) once more, into a fresh results folder and cache, in this process
    again = tmp_path / "again"
    run_cell(target, again, again / "cache", log=lambda m: None)
    assert comparable(alone) == comparable(record_path(shared, target)) == comparable(record_path(again, target))
    alone = json.loads(alone.read_text())
    assert alone["determinism"] == {"threads": 2, "threads_pinned": True, "deterministic": True,
                                    "deterministic_kernels": False, "device": "cpu",
                                    "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    assert len(alone["history"]) == 1 and alone["cost"]["backbone_backward_images"] == 1257


def test_grid_threads_pin_the_cell_and_the_process_setting_comes_back(write_grid, tmp_path):
    before = torch.get_num_threads()
    cells = cells_by_name(write_grid("t1", methods=[{"method": "ce", "mode": "lp"}], train={"threads": 1}))
    record = run_cell(cells["lp/ce"], tmp_path / "r", tmp_path / "c", log=lambda m: None)
    assert record["determinism"]["threads"] == 1 and record["determinism"]["threads_pinned"] is True
    assert record["config"]["train"]["threads"] == 1
    # the pin holds for the cell only: the process gets its own setting back
    assert torch.get_num_threads() == before and not torch.are_deterministic_algorithms_enabled()


def test_without_threads_the_record_states_the_process_thread_count(write_grid, tmp_path):
    cells = cells_by_name(write_grid("t0", methods=[{"method": "ce", "mode": "lp"}]))
    assert cells["lp/ce"].train["threads"] is None
    record = run_cell(cells["lp/ce"], tmp_path / "r", tmp_path / "c", log=lambda m: None)
    assert record["determinism"]["threads"] == torch.get_num_threads()
    assert record["determinism"]["threads_pinned"] is False and record["determinism"]["device"] == "cpu"


@pytest.mark.parametrize(("bad", "rule"), [(0, "greater than or equal to 1"), (-2, "greater than or equal to 1"),
                                           ("2", "a valid integer"), (True, "a valid integer"),
                                           (1.5, "a valid integer")])
def test_bad_thread_counts_are_refused(bad, rule) -> None:
    from nlbench.run.schema import check_train  # the one check of [train] values

    with pytest.raises(ConfigError) as caught:
        check_train({"threads": bad})
    assert str(caught.value) == f"[train]: threads = {bad!r}: input should be {rule}"
    with pytest.raises(ConfigError) as caught:
        check_train({"deterministic": "yes"})
    assert str(caught.value) == "[train]: deterministic = 'yes': input should be a valid boolean"


@pytest.mark.parametrize(("n", "batch", "sizes"), [(65, 32, [32, 33]), (64, 32, [32, 32]), (66, 32, [32, 32, 2]),
                                                   (1, 32, [1]), (33, 32, [33]), (97, 32, [32, 32, 33])])
def test_a_last_batch_of_one_joins_the_batch_before(n: int, batch: int, sizes: list[int]) -> None:
    images = TensorImages(np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1) % 251, torch.device("cpu"))
    index = np.arange(n)
    folded = list(training_batches(images, index, batch, torch.Generator().manual_seed(3)))
    plain = list(images.batches(index, batch, shuffle=True, generator=torch.Generator().manual_seed(3)))
    assert [len(ids) for _, ids in folded] == sizes == [len(ids) for _, ids in folded]
    assert num_train_batches(n, batch) == len(sizes)
    # the same shuffled order as the plain loader: same samples, same sequence, only the cut differs
    assert torch.equal(torch.cat([ids for _, ids in folded]), torch.cat([ids for _, ids in plain]))
    assert torch.equal(torch.cat([x for x, _ in folded]), torch.cat([x for x, _ in plain]))


def test_fine_tune_survives_a_last_batch_of_one_and_trains_every_sample(tmp_path) -> None:
    # 33 training images in batches of 32: the last batch would hold one sample, which BatchNorm in
    # training mode refuses ("Expected more than 1 value per channel when training").
    # BatchNorm after global pooling (as at the end of EfficientNet-Lite0 at 16 px) sees one value per channel.
    trainer = tiny_trainer(tmp_path, n_train=33, epochs=2)
    assert trainer.config.fft_batch_size == 32

    trainer._backbone_factory = pooled_bn_backbone
    fit = trainer.fine_tune(cross_entropy, epochs=2)
    assert len(fit.history) == 2 and np.isfinite(fit.test_acc_last)
    assert trainer.counters["backbone_backward_images"] == 2 * 33
