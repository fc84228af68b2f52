"""DivideMix: co-divide, the published-setting table, bad input, and lp/fft runs end to end on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nlbench.backbones import Backbone
from nlbench.cli.main import main
from nlbench.datasets import load_dataset
from nlbench.engine.features import FeatureCache, FeatureKey
from nlbench.engine.images import TensorImages
from nlbench.engine.selection import GMMFit, gmm_clean_probability
from nlbench.engine.train import Classifier, TrainConfig, Trainer, accuracy
from nlbench.engine.transforms import BatchTransform
from nlbench.errors import ConfigError
from nlbench.methods import CellContext, build_method
from nlbench.methods import dividemix as dm
from nlbench.methods.dividemix import DIVIDEMIX_SETTINGS, DivideMix, co_divide, published_setting
from nlbench.run.cell import run_cell
from nlbench.run.grids import expand, load_grid

QUIET = {"log": lambda s: None}


def test_co_divide_gives_each_network_the_other_networks_gmm_split():
    # Network 1 finds samples 0-2 clean, network 2 finds samples 3-5 clean.
    loss_1 = np.array([0.0, 0.1, 0.05, 1.0, 0.95, 0.9])
    loss_2 = loss_1[::-1].copy()
    prob_1, prob_2 = gmm_clean_probability(loss_1), gmm_clean_probability(loss_2)
    assert (prob_1[:3] > 0.99).all() and (prob_1[3:] < 0.01).all()
    # Min-max normalisation: an affine change of the losses leaves the posterior unchanged.
    assert np.allclose(gmm_clean_probability(10 * loss_1 + 3), prob_1, atol=1e-6)
    (mask_1, w_1), (mask_2, w_2) = co_divide(prob_1, prob_2, 0.5)
    assert mask_1.tolist() == [False, False, False, True, True, True]  # network 1 trains on network 2's split
    assert mask_2.tolist() == [True, True, True, False, False, False]
    assert np.array_equal(w_1, prob_2) and np.array_equal(w_2, prob_1)
    (strict, _), _ = co_divide(prob_1, np.array([0.2, 0.5, 0.51, 0.9, 0.3, 0.7]), 0.5)
    assert strict.tolist() == [False, False, True, True, False, True]  # clean probability > p_threshold


def test_published_setting_takes_the_nearest_tabulated_setting_of_the_family():
    def lam_tau(dataset, classes, noise, rate):
        key, setting = published_setting(dataset, classes, noise, rate)
        return key, setting.lambda_u, setting.p_threshold

    # CIFAR-100 (Table 7): sym 0.6 is nearest 0.5 → 150; 0.9 → 150 with τ 0.6; asym 0.4 → 150 (C2D).
    assert lam_tau("cifar100", 100, "sym", 0.6) == (("cifar100", "sym", 0.5), 150.0, 0.5)
    assert lam_tau("cifar100", 100, "sym", 0.9) == (("cifar100", "sym", 0.9), 150.0, 0.6)
    assert lam_tau("cifar100", 100, "asym", 0.4) == (("cifar100", "asym", 0.4), 150.0, 0.5)
    assert lam_tau("cifar100", 100, "inst", 0.4) == (("cifar100", "asym", 0.4), 150.0, 0.5)
    assert lam_tau("cifar100", 100, "sym", 0.2)[1] == 25.0
    # CIFAR-10: 0 at sym 0.2 and asym 0.4, 50 with τ 0.6 at sym 0.9.
    assert lam_tau("cifar10", 10, "sym", 0.2)[1:] == (0.0, 0.5)
    assert lam_tau("cifar10", 10, "sym", 0.9)[1:] == (50.0, 0.6)
    assert lam_tau("cifar10", 10, "asym", 0.4)[1:] == (0.0, 0.5)
    # A tie (0.35 lies 0.15 from 0.2 and from 0.5) goes to the heavier rate.
    assert lam_tau("cifar10", 10, "sym", 0.35)[0] == ("cifar10", "sym", 0.5)
    # CIFAR-N takes its CIFAR's rows; a dataset the table lacks the nearer class count on a log scale.
    assert lam_tau("cifar100n", 100, "sym", 0.5)[0][0] == "cifar100"
    assert lam_tau("fashion_mnist", 10, "sym", 0.9)[0] == ("cifar10", "sym", 0.9)
    assert lam_tau(None, 31, "sym", 0.9)[0][0] == "cifar10" and lam_tau(None, 32, "sym", 0.9)[0][0] == "cifar100"
    # Real noise: the official scripts' λ_u 0, τ 0.5; a real-noise dataset without its own row takes them too.
    assert lam_tau("clothing1m", 14, "none", 0.0) == (("clothing1m", "real", 0.0), 0.0, 0.5)
    assert lam_tau("webvision", 50, "none", 0.0) == (("webvision", "real", 0.0), 0.0, 0.5)
    assert lam_tau("cifar10n", 10, "none", 0.0) == (("clothing1m", "real", 0.0), 0.0, 0.5)
    # τ is 0.6 exactly at the 90 % rows and 0.5 elsewhere; every entry names its source.
    assert {k: v.p_threshold for k, v in DIVIDEMIX_SETTINGS.items() if v.p_threshold != 0.5} == {
        ("cifar10", "sym", 0.9): 0.6, ("cifar100", "sym", 0.9): 0.6}
    assert all(v.source for v in DIVIDEMIX_SETTINGS.values())


@pytest.mark.parametrize("params, match", [
    ({"p_threshold": 1.0}, "p_threshold"),
    ({"p_threshold": 0.0}, "p_threshold"),
    ({"views": 0}, "views"),
    ({"T": 0.0}, "T must"),
    ({"epochs": 3, "warmup_epochs": 3}, "warmup_epochs"),
    ({"lambda_u": -1.0}, "lambda_u"),
])
def test_bad_hyperparameters_raise(params, match):
    with pytest.raises(ConfigError, match=match):
        build_method("dividemix", "lp", params)


def test_bad_input_on_the_command_line_writes_nothing(write_grid, tmp_path, capsys):
    for params in ({"p_threshold": 1.5}, {"views": 0}):
        grid = write_grid(methods=[{"method": "dividemix", "mode": "lp", "params": params}])
        assert main(["run", "--grid", grid, "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]) == 2
    grid = write_grid(methods=[{"method": "dividemix", "mode": "lp-fft"}])
    assert main(["run", "--grid", grid, "--results", str(tmp_path / "r"), "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "p_threshold" in err and "views" in err and "supported: fft, lp" in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_lp_run_logs_each_networks_division_from_the_other_network(write_grid, tmp_path, monkeypatch):
    """The epoch loop wires co-divide: network 1's logged labelled set is network 2's GMM split."""
    seen = {}

    def fake_clean_probability(self, pair, k, seed, history, window):
        rng = np.random.default_rng(100 + k)
        seen[k] = rng.random(pair.trainer.num_train)
        return GMMFit(seen[k], 3 + k, k == 0)

    monkeypatch.setattr(DivideMix, "clean_probability", fake_clean_probability)
    cell = expand(load_grid(write_grid(methods=[{"method": "dividemix", "mode": "lp"}], train={"lp_epochs": 2})))[0]
    record = run_cell(cell, tmp_path / "r", tmp_path / "cache", **QUIET)
    sel = {s["phase"]: s for s in record["selection"]}
    assert set(sel) == {"net1", "net2"} and sel["net1"]["epoch"] == 1  # warm-up 1 of 2 epochs
    assert sel["net1"]["size"] == int((seen[1] > 0.5).sum())
    assert sel["net2"]["size"] == int((seen[0] > 0.5).sum())
    assert record["extra"]["labelled_sizes"] == [[sel["net1"]["size"], sel["net2"]["size"]]]
    # every GMM fit's EM iteration count and convergence flag, per epoch and network
    assert record["extra"]["gmm_fits"] == [[{"n_iter": 3, "converged": True}, {"n_iter": 4, "converged": False}]]


def test_gmm_input_at_90_percent_noise_is_the_mean_of_the_last_five_normalised_losses(write_grid, tmp_path,
                                                                                     monkeypatch):
    """Reference-code smoothing: at a nominal rate ≥ 0.9 the GMM fits the mean of the last 5 epochs'
    min-max normalised losses; below it, the current epoch's alone."""
    fitted = []
    monkeypatch.setattr(dm, "fit_loss_gmm",
                        lambda x, seed: fitted.append(np.array(x)) or GMMFit(np.ones(len(x)), 1, True))
    losses_seen = []
    real_ce = dm.per_sample_ce

    def recording_ce(logits, labels):
        losses_seen.append(real_ce(logits, labels))
        return losses_seen[-1]

    monkeypatch.setattr(dm, "per_sample_ce", recording_ce)
    for rate, window in ((0.9, 5), (0.6, 1)):
        fitted.clear(), losses_seen.clear()
        grid = write_grid(noise=[{"model": "sym", "rate": rate}], train={"lp_epochs": 8},
                          methods=[{"method": "dividemix", "mode": "lp", "params": {"warmup_epochs": 1}}])
        record = run_cell(expand(load_grid(grid))[0], tmp_path / f"r{rate}", tmp_path / "cache", **QUIET)
        assert record["extra"]["loss_window"] == window
        normalised = [(v - v.min()) / (v.max() - v.min()) for v in losses_seen]
        net1 = normalised[0::2]  # networks alternate: net1, net2 per epoch
        assert len(fitted) == 2 * 7
        for epoch in range(7):
            expected = np.mean(net1[max(0, epoch + 1 - window) : epoch + 1], axis=0)
            assert np.allclose(fitted[2 * epoch], expected)


def test_lp_block_runs_on_the_feature_cache_alone(write_grid, tmp_path):
    """LP-DivideMix fills the cache (K = 2 augmented train views beside view 0); a second LP cell on the same
    cache does no backbone pass at all."""
    grid = write_grid(noise=[{"model": "sym", "rate": 0.9}],
                      methods=[{"method": "dividemix", "mode": "lp"}, {"method": "unicon", "mode": "lp"},
                               {"method": "cl", "mode": "lp"}])
    dmix, unicon, cl = expand(load_grid(grid))
    first = run_cell(dmix, tmp_path / "r", tmp_path / "cache", **QUIET)
    n = {"train": 1257, "val": 180, "test": 360}
    assert first["cost"]["backbone_forward_images"] == 3 * n["train"] + n["val"] + n["test"]  # the cache fill
    assert first["cost"]["backbone_backward_images"] == 0
    assert sorted(first["cost"]["feature_cache"]) == ["test/view0", "train/view0", "train/view1", "train/view2",
                                                      "val/view0"]
    # digits (10 classes) takes CIFAR-10's sym 0.9 setting: λ_u 50, τ 0.6
    assert first["extra"]["lambda_u"] == 50.0 and first["extra"]["p_threshold"] == 0.6
    assert first["extra"]["setting"].startswith("cifar10 sym 0.9: DivideMix paper")
    for cell in (unicon, cl):
        again = run_cell(cell, tmp_path / "r", tmp_path / "cache", **QUIET)
        assert again["cost"]["backbone_forward_images"] == 0
        assert again["cost"]["backbones_built"] == 0
        assert set(again["cost"]["feature_cache"].values()) == {"hit"}


def test_lp_run_is_deterministic_and_records_both_networks(write_grid, tmp_path):
    grid = write_grid(methods=[{"method": "dividemix", "mode": "lp", "params": {"views": 3}}],
                      noise=[{"model": "asym", "rate": 0.4}], train={"lp_epochs": 3})
    cell = expand(load_grid(grid))[0]
    a = run_cell(cell, tmp_path / "a", tmp_path / "cache", **QUIET)
    b = run_cell(cell, tmp_path / "b", tmp_path / "cache", **QUIET)
    assert a["history"] == b["history"] and a["selection"] == b["selection"]
    assert len(a["history"]) == 3 and math.isfinite(a["test_acc_best"])
    assert a["extra"]["warmup_epochs"] == 1 and a["extra"]["confidence_penalty"] is True  # asymmetric noise
    assert a["extra"]["warmup_steps"] == math.ceil(1257 / (2 * 128))  # one epoch in batches of 2B, B = 128
    assert [s["phase"] for s in a["selection"]] == ["net1", "net2"] * 2
    assert "train/view3" in a["cost"]["feature_cache"]


def pooled_bn_backbone() -> Backbone:
    """A tiny backbone with BatchNorm after global pooling (as at the end of EfficientNet-Lite0 at 16 px): one
    value per channel per image, so a batch of one image cannot be normalised."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Flatten())
    return Backbone(name="tiny-bn", model=model, feature_dim=8, input_size=(16, 16), mean=(0.5,) * 3,
                    std=(0.5,) * 3, interpolation="bilinear", weights_id="random")


def tiny_trainer(tmp_path, *, rate: float = 0.6, noise: str = "sym", n_train: int = 150, epochs: int = 2,
                 seed: int = 0) -> Trainer:
    """A Trainer on a digits subset with a small random CNN backbone (no registry entry), for fft-mode runs
    that take a second on 2 CPU cores. Training labels get symmetric noise at ``rate``."""
    data = load_dataset("digits")
    rng = np.random.default_rng(seed)
    labels = data.train.labels[:n_train].copy()
    flip = rng.random(n_train) < rate
    labels[flip] = rng.integers(0, 10, flip.sum())
    images = {"train": data.train.images[:n_train], "val": data.val.images[:60], "test": data.test.images[:60]}

    def backbone() -> Backbone:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten())
        return Backbone(name="tiny", model=model, feature_dim=8, input_size=(16, 16), mean=(0.5,) * 3,
                        std=(0.5,) * 3, interpolation="bilinear", weights_id="random")

    trainer = Trainer(
        config=TrainConfig(input_size=16, lp_epochs=epochs, fft_epochs=epochs, fft_batch_size=32, lp_batch_size=32),
        num_classes=10, labels=labels, val_labels=data.val.labels[:60], test_labels=data.test.labels[:60],
        images=lambda split, device: TensorImages(images[split], device), backbone_factory=backbone,
        feature_cache=FeatureCache(tmp_path / "cache"),
        feature_key=lambda split, view: FeatureKey("tiny", "random", {"dataset": "digits-sub"}, split, view, {}),
        transform=lambda b, augment: BatchTransform(size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3, augment=augment,
                                                    hflip=False),
        seed=seed, log=lambda s: None)
    return trainer


def tiny_context(tmp_path, mode: str, *, rate: float = 0.6, noise: str = "sym", **kwargs) -> CellContext:
    """``tiny_trainer`` in the context a cell hands its method (the nominal noise it was drawn with)."""
    trainer = tiny_trainer(tmp_path, rate=rate, noise=noise, **kwargs)
    return CellContext.of(trainer, mode, dataset="digits", noise=(noise, rate))


def test_fft_run_trains_two_backbones_and_counts_their_passes(tmp_path):
    ctx = tiny_context(tmp_path, "fft")
    trainer = ctx.engine
    fit = build_method("dividemix", "fft", {"warmup_epochs": 1}).run(ctx)
    n = trainer.num_train
    assert trainer.counters["backbones_built"] == 2
    assert len(fit.history) == 2 and math.isfinite(fit.test_acc_best)
    assert [(s["phase"], s["epoch"]) for s in trainer.selections] == [("net1", 1), ("net2", 1)]
    assert fit.extra["lambda_u"] == 25.0  # sym 0.6
    # Backward passes: the warm-up epoch (every sample, both networks; batches of 2B = 64), then per
    # network ⌈|X|/B⌉ steps, each backpropagating 2 views of its labelled and unlabelled batches.
    expected = 2 * (n - (1 if n % 64 == 1 else 0))
    for s in trainer.selections:
        x = int(s["mask"].sum())
        expected += 2 * x + math.ceil(x / 32) * 2 * min(32, n - x)
    assert trainer.counters["backbone_backward_images"] == expected
    # The test prediction averages both networks.
    tiny = trainer._backbone_factory()  # for its preprocessing only
    pair_logits = [trainer.model_logits(Classifier(net.encoder, net.head), "test", tiny) for net in fit.model]
    mean = 0.5 * (pair_logits[0] + pair_logits[1])
    assert fit.test_acc_last == pytest.approx(accuracy(mean, torch.as_tensor(trainer.test_labels)))
