"""GPU-hour estimates (nlbench/costs.py) against hand-computed numbers, and the paper's grids."""

from __future__ import annotations

import pytest

from nlbench.costs import COSTS, estimate_gpu_hours
from nlbench.grids import CellSpec, expand, load_grid

TRAIN = {"fft_epochs": 10, "input_size": None, "compile": False}


def cell(backbone="vit_b16", mode="fft", method="ce", *, dataset="cifar100", noise="sym", rate=0.6, seed=0,
         params=None, train=None, options=None) -> CellSpec:
    return CellSpec(grid="t", dataset=dataset, backbone=backbone, noise=noise, rate=rate, method=method, mode=mode,
                    seed=seed, method_params=params or {}, train={**TRAIN, **(train or {})},
                    dataset_options=options or {})


def test_figures_are_the_h100_reference_table():
    assert (COSTS["vit_b16"].features_img_s, COSTS["vit_b16"].train_img_s) == (8835, 2448)
    assert COSTS["mae_vit_b16"] == COSTS["msn_vit_b16"] == COSTS["vit_b16"]  # same architecture
    assert (COSTS["resnet50"].features_img_s, COSTS["resnet50"].train_img_s) == (13152, 3706)
    assert (COSTS["clip_vit_b16"].train_img_s, COSTS["convnext_t"].train_img_s) == (2425, 2533)


def test_hand_computed_hours():
    cells = [
        cell(),  # FFT: 10 epochs × 47,500 train at 2,448 img/s + 10 × (2,500 + 10,000) eval at 8,835 img/s
        cell(mode="lp"),  # LP: train + val + test once at 8,835 img/s
        cell(mode="lp", method="gce"),  # same features: no new pass
        cell(mode="lp-fft", method="turn", params={"fft_epochs": 5}),  # 5 × 40 % of 47,500; features shared
        cell(mode="lp-fft", method="turn", seed=1, params={"fft_epochs": 5}),
        cell("resnet50", mode="lp", method="dividemix", params={"views": 2}),  # train views 0, 1, 2 + val + test
        cell("resnet50", train={"input_size": 112, "compile": True}),  # ¼ of the pixels; no compiled figure
        cell(train={"compile": True}),  # ViT-B/16 compiled: 3,142 img/s
    ]
    est = estimate_gpu_hours(cells)
    vit = (475_000 / 2448 + 125_000 / 8835) + 60_000 / 8835 + 2 * (95_000 / 2448 + 62_500 / 8835) \
        + (475_000 / 3142 + 125_000 / 8835)
    resnet = 155_000 / 13152 + (118_750 / 3706 + 31_250 / 13152)
    rows = {r.backbone: r for r in est.rows}
    assert rows["vit_b16"].hours == pytest.approx(vit / 3600)
    assert rows["resnet50"].hours == pytest.approx(resnet / 3600)
    assert est.total_hours == pytest.approx((vit + resnet) / 3600)
    assert (rows["vit_b16"].fft_cells, rows["vit_b16"].turn_cells, rows["vit_b16"].lp_cells) == (2, 2, 2)
    assert rows["vit_b16"].feature_passes == 3 and rows["resnet50"].feature_passes == 5
    text = est.format()
    assert "vit_b16" in text and "resnet50" in text and f"{est.total_hours:.2f} h" in text


def test_real_noise_subset_and_dataset_sizes():
    # Clothing1M: 1M train, 14,313 val, 10,526 test; TURN trains on 1 − 0.385 of the training set.
    turn = cell(mode="lp-fft", method="turn", dataset="clothing1m", noise="none", rate=0.0, params={"fft_epochs": 5})
    seconds = 5 * 1_000_000 * 0.615 / 2448 + 5 * 24_839 / 8835 + 1_024_839 / 8835
    assert estimate_gpu_hours([turn]).total_hours == pytest.approx(seconds / 3600)
    # A dataset option train_size wins over the table.
    small = cell(dataset="clothing1m", noise="none", rate=0.0, options={"train_size": 100_000})
    assert estimate_gpu_hours([small]).total_hours == pytest.approx((1_000_000 / 2448 + 10 * 24_839 / 8835) / 3600)


def test_unknown_datasets_and_backbones_are_reported_not_counted():
    toy = cell(dataset="toy")
    est = estimate_gpu_hours([toy, cell(backbone="mystery")])
    assert est.missing_datasets == ["toy"] and est.missing_backbones == ["mystery"]
    assert est.total_hours == 0.0 and "pass train_size" in est.format()
    # train_size supplies the training images; val/test of an unknown dataset count as 0.
    assert estimate_gpu_hours([toy], train_size={"toy": 2448}).total_hours == pytest.approx(10 / 3600)


@pytest.mark.parametrize(("grid", "cells", "backbones"), [
    ("paper_table1", 6 * 1 * 4 * 9 * 3, 6),
    ("paper_clothing1m", 5 * 9, 5),
    ("paper_webvision", 5 * 9, 5),
])
def test_paper_grids_expand_and_estimate(grid, cells, backbones):
    specs = expand(load_grid(grid))
    assert len(specs) == cells
    assert len({c.backbone for c in specs}) == backbones
    assert {(c.method, c.mode) for c in specs} == {
        ("ce", "fft"), ("gce", "fft"), ("elr", "fft"), ("ce", "lp"), ("gce", "lp"), ("elr", "lp"),
        ("dividemix", "lp"), ("unicon", "lp"), ("turn", "lp-fft")}
    est = estimate_gpu_hours(specs)
    assert not est.missing_backbones and not est.missing_datasets
    assert est.total_hours == pytest.approx(sum(r.hours for r in est.rows))
    per_backbone = len(specs) // backbones
    for r in est.rows:
        assert r.fft_cells + r.turn_cells + r.lp_cells == per_backbone
    if grid == "paper_table1":
        assert {c.noise for c in specs} == {"sym", "asym", "inst"} and {c.seed for c in specs} == {0, 1, 2}
        assert "clip_vit_b16" in {c.backbone for c in specs}
    else:
        assert "clip_vit_b16" not in {c.backbone for c in specs}
