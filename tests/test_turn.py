"""TURN end to end on digits: probe, class-balanced selection scored against the true mask, fine-tuning."""

from __future__ import annotations

import numpy as np

from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid


def test_turn_cell_records_balanced_selection_and_is_deterministic(write_grid, tmp_path):
    cell = expand(load_grid(write_grid(methods=[{"method": "turn", "mode": "lp-fft",
                                                 "params": {"lp_epochs": 3, "fft_epochs": 1}}])))[0]
    a = run_cell(cell, tmp_path / "a", tmp_path / "cache", log=lambda s: None)
    (sel,) = a["selection"]
    assert sel["size"] > 0 and sel["size"] % 10 == 0  # n samples from each of the 10 classes
    assert 0 <= sel["precision"] <= 100 and 0 <= sel["recall"] <= 100
    # the selected set is cleaner than the training set (sym 0.6, reference convention: 54 % wrong)
    assert sel["precision"] > 100 * (1 - a["noise_audit"]["realized_rate"])
    assert len(a["history"]) == 1  # one FFT epoch
    assert a["extra"]["subset_size"] == sel["size"]
    assert a["cost"]["backbone_backward_images"] == sel["size"]
    assert np.isfinite(a["test_acc_best"]) and np.isfinite(a["extra"]["lp_test_acc_best"])
    # one GMM per class, each run until EM converged (at most gmm_max_iter = 1000 iterations)
    fits = a["extra"]["gmm_fits"]
    assert len(fits) == 10 and all(f["converged"] and 1 <= f["n_iter"] <= 1000 for f in fits)
    b = run_cell(cell, tmp_path / "b", tmp_path / "cache", log=lambda s: None)
    assert b["selection"] == a["selection"]
    assert b["test_acc_best"] == a["test_acc_best"] and b["history"] == a["history"]


def test_freeze_bn_keeps_running_statistics_but_trains_affine_weights(tmp_path):
    import torch
    from test_dividemix import tiny_trainer
    from torch import nn

    from nlbench.engine.losses import cross_entropy

    def bn_of(model):
        return next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    for freeze in (True, False):
        trainer = tiny_trainer(tmp_path, epochs=1)
        fresh = bn_of(trainer.build_backbone().model)
        fit = trainer.fine_tune(cross_entropy, epochs=1, lr=0.05, freeze_bn=freeze)
        tuned = bn_of(fit.model)
        assert torch.equal(tuned.running_mean, fresh.running_mean) is freeze
        assert not torch.equal(tuned.weight, fresh.weight)
