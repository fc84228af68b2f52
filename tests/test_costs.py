"""GPU-hour estimates (nlbench/run/costs.py) against hand-computed numbers, and the paper's grids."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlbench.cli.main import main
from nlbench.datasets import load_dataset
from nlbench.engine.compile import compile_pays, measured_cost
from nlbench.errors import DataNotFound
from nlbench.registry import DATASETS, dataset_facts, register_dataset
from nlbench.run.costs import ASSUMPTIONS, estimate_gpu_hours
from nlbench.run.grids import CellSpec, expand, load_grid

TRAIN = {"fft_epochs": 10, "input_size": None, "compile": False}


def cell(backbone="vit_b16", mode="fft", method="ce", *, dataset="cifar100", noise="sym", rate=0.6, seed=0,
         params=None, train=None, options=None) -> CellSpec:
    return CellSpec(grid="t", dataset=dataset, backbone=backbone, noise=noise, rate=rate, method=method, mode=mode,
                    seed=seed, method_params=params or {}, train={**TRAIN, **(train or {})},
                    dataset_options=options or {})


def test_figures_are_the_h100_reference_table():
    """Each backbone file declares the figures of docs/performance.md, read back through the registry."""
    cost = {name: measured_cost(name) for name in ("vit_b16", "mae_vit_b16", "msn_vit_b16", "clip_vit_b16",
                                                   "convnext_t", "resnet50", "efficientnet_lite0")}
    assert (cost["vit_b16"].features_img_s, cost["vit_b16"].train_img_s) == (8835, 2448)
    assert (cost["vit_b16"].train_img_s_compiled, cost["vit_b16"].compile_s) == (3142, 31.0)
    assert cost["mae_vit_b16"] == cost["msn_vit_b16"] == cost["vit_b16"]  # same architecture
    assert (cost["resnet50"].features_img_s, cost["resnet50"].train_img_s) == (13152, 3706)
    assert (cost["clip_vit_b16"].train_img_s, cost["convnext_t"].train_img_s) == (2425, 2533)
    assert (cost["clip_vit_b16"].features_img_s, cost["convnext_t"].features_img_s) == (8796, 7788)
    assert (cost["efficientnet_lite0"].features_img_s, cost["efficientnet_lite0"].train_img_s) == (20605, 4898)
    assert [cost[n].gflop_fwd for n in ("vit_b16", "clip_vit_b16", "convnext_t", "resnet50", "efficientnet_lite0")] \
        == [35.1, 35.1, 8.9, 8.2, 0.8]
    assert measured_cost("mystery") is None


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
    # CIFAR-100 sits on the GPU: 0.34 ms per 128 training images for crop/flip/resize (not scaled by size);
    # the compiled cell pays one 31-s compilation.
    pipe = 0.34e-3 / 128
    vit = (475_000 / 2448 + 125_000 / 8835 + 475_000 * pipe) + 60_000 / 8835 \
        + 2 * (95_000 / 2448 + 62_500 / 8835 + 95_000 * pipe) \
        + (475_000 / 3142 + 125_000 / 8835 + 31 + 475_000 * pipe)
    resnet = 155_000 / 13152 + (118_750 / 3706 + 31_250 / 13152 + 475_000 * pipe)
    rows = {r.backbone: r for r in est.rows}
    assert rows["vit_b16"].hours == pytest.approx(vit / 3600)
    assert rows["resnet50"].hours == pytest.approx(resnet / 3600)
    assert est.total_hours == pytest.approx((vit + resnet) / 3600)
    assert (rows["vit_b16"].fft_cells, rows["vit_b16"].lp_fft_cells, rows["vit_b16"].lp_cells) == (2, 2, 2)
    assert rows["vit_b16"].feature_passes == 3 and rows["resnet50"].feature_passes == 5
    text = est.format()
    assert "vit_b16" in text and "resnet50" in text and f"{est.total_hours:.2f} h" in text
    assert rows["vit_b16"].compiled_runs == 1 and rows["resnet50"].compiled_runs == 0  # no compiled figure
    kinds = est.seconds_by_kind()
    assert kinds["compile"] == pytest.approx(31)
    assert kinds["input pipeline"] == pytest.approx((3 * 475_000 + 2 * 95_000) * pipe)
    assert sum(kinds.values()) == pytest.approx(vit + resnet)
    # Every assumption is printed, one per line, and the "where it goes" split.
    assert "assumptions:" in text and "where it goes: train" in text
    assert all(f"    - {a}" in text for a in ASSUMPTIONS)


def test_compile_auto_pays_only_where_measured_and_long_enough():
    # ViT-B/16: 1/2448 − 1/3142 s saved per image; a 31-s compilation pays after 343,574 images.
    saved_per_image = 1 / 2448 - 1 / 3142
    assert 31 / saved_per_image == pytest.approx(343_573.6, rel=1e-6)
    assert compile_pays("vit_b16", 475_000)  # an FFT baseline: 10 × 47,500 images, saves 42.9 s
    assert not compile_pays("vit_b16", 95_000)  # TURN at 40 % clean: saves 8.6 s < 31 s
    assert compile_pays("mae_vit_b16", 343_600) and not compile_pays("vit_b16", 343_500)
    assert not compile_pays("vit_b16", 475_000, scale=0.25)  # 112 px: a quarter of the work
    assert not compile_pays("resnet50", 1e9) and not compile_pays("clip_vit_b16", 1e9)  # no compiled figure
    assert not compile_pays("mystery", 1e9)
    auto = estimate_gpu_hours([cell(train={"compile": "auto"}),
                               cell(mode="lp-fft", method="turn", params={"fft_epochs": 5}, train={"compile": "auto"})])
    assert auto.rows[0].compiled_runs == 1  # the baseline compiles, TURN's short phase does not
    pipe = 0.34e-3 / 128
    expected = (475_000 / 3142 + 31 + 125_000 / 8835 + 475_000 * pipe) \
        + (95_000 / 2448 + 62_500 / 8835 + 95_000 * pipe) + 60_000 / 8835
    assert auto.total_hours == pytest.approx(expected / 3600)


def test_batch_size_other_than_the_reference_is_flagged():
    est = estimate_gpu_hours([cell(train={"fft_batch_size": 64}), cell(train={"fft_batch_size": 128}, seed=1)])
    assert est.other_batch_sizes == [64]
    assert "cells at fft_batch_size 64: rate not measured" in est.format()
    assert estimate_gpu_hours([cell(train={"fft_batch_size": 128})]).other_batch_sizes == []


@pytest.mark.parametrize(("overrides", "epochs", "vit_compiled"), [
    # The study's "5 Epochs FFT" (the default): torch.compile would save 5 · 47,500 · (1/2448 − 1/3142) = 21.4 s
    # per ViT-B/16 run, less than its 31 s compilation, so 'auto' compiles nothing.
    ((), 5, False),
    # The earlier 10 epochs (the option): 42.9 s saved > 31 s, so the ViT-B/16 baselines compile.
    (("train.fft_epochs=10",), 10, True),
])
def test_paper_table1_estimate_by_hand(overrides, epochs, vit_compiled):
    """The dry run's figure for paper_table1, recomputed from the reference table by hand."""
    est = estimate_gpu_hours(expand(load_grid("paper_table1", overrides)))
    pipe = 0.34e-3 / 128
    n, evals = 47_500, 12_500
    shares = [0.4, 0.1, 0.6, 0.6]  # TURN's expected clean share at sym 0.6, sym 0.9, asym 0.4, inst 0.4

    def backbone(train_rate, feat_rate, compiled_rate=None):
        fft_rate = compiled_rate or train_rate
        fft = 36 * (epochs * n / fft_rate + epochs * evals / feat_rate + epochs * n * pipe
                    + (31 if compiled_rate else 0))
        turn = 3 * sum(5 * n * s / train_rate + 5 * evals / feat_rate + 5 * n * s * pipe for s in shares)
        features = (3 * n + 2_500 + 10_000) / feat_rate  # train views 0, 1, 2 (DivideMix/UNICON), val, test
        return (fft + turn + features) / 3600

    vit = backbone(2448, 8835, 3142 if vit_compiled else None)
    expected = {"vit_b16": vit, "mae_vit_b16": vit, "msn_vit_b16": vit, "clip_vit_b16": backbone(2425, 8796),
                "convnext_t": backbone(2533, 7788), "resnet50": backbone(3706, 13152)}
    for r in est.rows:
        assert r.hours == pytest.approx(expected[r.backbone]), r.backbone
    assert est.total_hours == pytest.approx(sum(expected.values()))
    assert est.total_hours == pytest.approx(6.86 if epochs == 5 else 12.42, abs=0.005)  # the figures the docs cite
    assert est.other_batch_sizes == []  # the grid trains at the reference batch, 128


def test_real_noise_subset_and_dataset_sizes():
    # Clothing1M: 1M train, 14,313 val, 10,526 test; TURN trains on 1 − 0.385 of the training set.
    turn = cell(mode="lp-fft", method="turn", dataset="clothing1m", noise="none", rate=0.0, params={"fft_epochs": 5})
    seconds = 5 * 1_000_000 * 0.615 / 2448 + 5 * 24_839 / 8835 + 1_024_839 / 8835
    assert estimate_gpu_hours([turn]).total_hours == pytest.approx(seconds / 3600)
    # A dataset option train_size wins over the table.
    small = cell(dataset="clothing1m", noise="none", rate=0.0, options={"train_size": 100_000})
    assert estimate_gpu_hours([small]).total_hours == pytest.approx((1_000_000 / 2448 + 10 * 24_839 / 8835) / 3600)


@pytest.fixture
def scratch_datasets(monkeypatch):
    """The dataset registry as shipped, restored after the test: a test may register its own datasets."""
    DATASETS.names()  # the built-in entries are in before the registry is copied
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))


def _toy_loader(**options):
    """Toy dataset of this test (its files are never there)."""
    raise DataNotFound("dataset 'toy_facts' needs its files (a test dataset: it has none)")


def test_a_dataset_registered_with_its_facts_is_sized_in_the_dry_run(scratch_datasets, write_grid, capsys):
    fft = cell("resnet50", dataset="toy_facts")
    turn = cell("resnet50", mode="lp-fft", method="turn", dataset="toy_facts", noise="none", rate=0.0,
                params={"fft_epochs": 5})
    assert estimate_gpu_hours([fft]).missing_datasets == ["toy_facts"]  # not registered yet
    register_dataset("toy_facts", sizes=(10_000, 1_000, 2_000), in_memory=True, real_noise_rate=0.25)(_toy_loader)
    est = estimate_gpu_hours([fft, turn])
    assert not est.missing_datasets and "unknown dataset size" not in est.format()
    # FFT: 10 epochs × 10,000 at ResNet-50's 3,706 img/s + 10 × (1,000 + 2,000) eval at 13,152 img/s + the
    # in-memory pipeline; TURN: 5 epochs over 1 − 0.25 of the training set, and one feature pass (13,000).
    pipe = 0.34e-3 / 128
    seconds = (100_000 / 3706 + 30_000 / 13152 + 100_000 * pipe) \
        + (37_500 / 3706 + 15_000 / 13152 + 37_500 * pipe) + 13_000 / 13152
    assert est.total_hours == pytest.approx(seconds / 3600)
    # The same through the command line's dry run.
    grid = write_grid(datasets=["toy_facts"], backbones=["resnet50"], noise=[{"model": "sym", "rate": 0.6}],
                      methods=[{"method": "ce", "mode": "fft"}], train={"input_size": 224, "fft_epochs": 10,
                                                                         "compile": False, "fft_batch_size": 128})
    assert main(["run", "--grid", grid, "--dry-run", "--results", str(Path(grid).parent / "runs")]) == 0
    out = capsys.readouterr().out
    expected = (100_000 / 3706 + 30_000 / 13152 + 100_000 * pipe) / 3600
    assert f"resnet50  {expected:7.2f} h  (1 FFT + 0 LP-FFT cells: 100.0k train img, 30.0k eval img" in out
    assert "unknown dataset size" not in out


def test_dataset_facts_match_the_loader_they_describe():
    """digits loads here: its declared sizes and in-memory flag are what the loader gives."""
    digits = load_dataset("digits")
    facts = dataset_facts("digits")
    assert facts.sizes == (len(digits.train), len(digits.val), len(digits.test)) == (1_257, 180, 360)
    assert facts.in_memory == (digits.train.images is not None) is True
    assert facts.real_noise_rate is None and not digits.real_noise
    assert dataset_facts("webvision").sizes_for("mini") == (63_500, 2_500, 2_500)
    assert dataset_facts("webvision").sizes_for("full") == dataset_facts("webvision").sizes
    assert dataset_facts("folder").sizes is None and not dataset_facts("folder").in_memory
    assert dataset_facts("nope") is None


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
        assert r.fft_cells + r.lp_fft_cells + r.lp_cells == per_backbone
    if grid == "paper_table1":
        assert {c.noise for c in specs} == {"sym", "asym", "inst"} and {c.seed for c in specs} == {0, 1, 2}
        assert "clip_vit_b16" in {c.backbone for c in specs}
    else:
        assert "clip_vit_b16" not in {c.backbone for c in specs}
