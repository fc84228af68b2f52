"""Scale plumbing: memory-mapped features, the view bank, the LP-at-scale and loader benchmarks' arithmetic,
the compile decision, and gpu_check's comparison and MFU (its --smoke run is the last test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlbench.engine.features import FeatureCache, features_tensor
from nlbench.engine.network_pair import ViewBank
from nlbench.engine.train import TrainConfig
from nlbench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_check  # noqa: E402
import loader  # noqa: E402
import lp_scale  # noqa: E402


def test_features_tensor_reads_the_memory_map_without_a_copy(tmp_path):
    path = tmp_path / "f.npy"
    np.save(path, np.arange(24, dtype=np.float32).reshape(6, 4))
    mapped = np.load(path, mmap_mode="r")
    tensor = features_tensor(mapped, torch.device("cpu"))
    assert np.shares_memory(tensor.numpy(), mapped)  # a view of the file's pages, not a copy
    assert tensor[torch.tensor([4, 1])].tolist() == [[16, 17, 18, 19], [4, 5, 6, 7]]
    converted = features_tensor(np.ones((2, 3), dtype=np.float64), torch.device("cpu"))
    assert converted.dtype == torch.float32 and converted.sum().item() == 6


def test_view_bank_indexes_like_the_stack_it_replaces():
    views = [torch.randn(50, 8, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    picks = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(5))
    rows = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(6))
    bank = ViewBank(views)
    assert bank.shape == (3, 50, 8)
    assert torch.equal(bank[picks, rows], torch.stack(views)[picks, rows])


def test_compile_setting_is_validated_and_auto_stays_off_on_cpu():
    assert TrainConfig().compile == "auto"
    from nlbench.run.schema import check_train  # the one check of [train] values

    assert check_train({"compile": True}).compile is True and check_train({"compile": "auto"}).compile == "auto"
    with pytest.raises(ConfigError) as caught:
        check_train({"compile": "sometimes"})
    assert str(caught.value) == "[train]: compile = 'sometimes': input should be a valid boolean or 'auto'"
    # The engine's decision, as on a CUDA machine (only the device's type is read): the dry run's rule.
    from types import SimpleNamespace

    from nlbench.engine.train import Trainer

    vit = SimpleNamespace(name="vit_b16", input_size=(224, 224))
    on = {kind: SimpleNamespace(config=TrainConfig(), device=torch.device(kind)) for kind in ("cuda", "cpu")}
    assert Trainer.compile_fine_tune(on["cuda"], vit, 475_000)  # a 10-epoch CIFAR-100 baseline
    assert not Trainer.compile_fine_tune(on["cuda"], vit, 95_000)  # TURN's short phase
    assert not Trainer.compile_fine_tune(on["cpu"], vit, 475_000)
    assert not Trainer.compile_fine_tune(on["cuda"], SimpleNamespace(name="resnet50", input_size=(224, 224)), 10**7)
    small = SimpleNamespace(config=TrainConfig(input_size=112), device=torch.device("cuda"))
    assert not Trainer.compile_fine_tune(small, vit, 475_000)  # a quarter of the pixels: saves < 31 s
    forced = SimpleNamespace(config=TrainConfig(compile=True), device=torch.device("cpu"))
    assert Trainer.compile_fine_tune(forced, vit, 1)


def test_lp_scale_runs_methods_on_cached_features_only(tmp_path):
    cache = FeatureCache(tmp_path)
    mib = lp_scale.write_features(cache, 600, 5, 16)
    # train views 0, 1, 2 (600 × 16 float32 each) + val 2,500 + test 10,000
    assert mib == pytest.approx((3 * 600 + 2_500 + 10_000) * 16 * 4 / 2**20)
    assert lp_scale.write_features(cache, 600, 5, 16) == 0.0  # present: nothing rewritten
    train = cache.load(lp_scale.feature_key(600, 5, 16, "train", 2), 600)
    assert train.shape == (600, 16) and isinstance(train, np.memmap)
    for method in ("ce", "dividemix", "turn"):
        row = lp_scale.run_method(method, cache_root=str(tmp_path), n=600, num_classes=5, dim=16, epochs=1,
                                  device="cpu", threads=None)
        assert row["backbones_built"] == 0  # every feature came from the cache
        assert row["epochs"] == 1 and row["wall_s"] > 0 and row["peak_anon_mib"] > 0
        assert (row["selection_s"] is not None) == (method == "turn")
    assert "s/epoch per 100k" in lp_scale.markdown([row])


def test_loader_writes_real_jpegs_and_counts_workers(tmp_path):
    paths = loader.write_jpegs(tmp_path, 2, 120, 90)
    with Image.open(paths[0]) as im:
        assert (im.format, im.size) == ("JPEG", (120, 90))
    for decoder in ("pil", "torchvision"):
        wall, cpu = loader.worker_rate(paths, decoder, rounds=1)
        assert wall > 0 and cpu > 0
    needed = loader.workers_needed(500.0)
    # ViT-B/16 at 2,448 img/s eager and 3,142 compiled; ResNet-50 at 3,706: ⌈rate / 500⌉ workers.
    assert needed["vit_b16"] == {"eager": 5, "compiled": 7}
    assert needed["resnet50"] == {"eager": 8, "compiled": None}


def test_gpu_check_mfu_and_comparison():
    # The H100 reference: ViT-B/16 training at 2,448 img/s × 35.1 GFLOP × 3 / 989 TFLOP/s = 26.06 %.
    assert gpu_check.mfu_percent(2448, 35.1, "train", 989.0) == pytest.approx(26.064, abs=1e-3)
    assert gpu_check.mfu_percent(8835, 35.1, "features", 989.0) == pytest.approx(31.356, abs=1e-3)
    assert gpu_check.mfu_percent(100, 1.0, "train", None) is None
    text = "intro\n\n| method | sym 0.6 | asym 0.4 |\n|:--|--:|--:|\n| FFT CE | 63.33 | **72.50** |\n" \
           "| LP CE | 78.61 | 70.83 |\n\nafter\n| x | y |\n"
    ref = gpu_check.parse_markdown_table(text)
    assert ref == {("FFT CE", "sym 0.6"): 63.33, ("FFT CE", "asym 0.4"): 72.5, ("LP CE", "sym 0.6"): 78.61,
                   ("LP CE", "asym 0.4"): 70.83}
    device = {("FFT CE", "sym 0.6"): 64.2, ("FFT CE", "asym 0.4"): 74.0, ("LP CE", "sym 0.6"): 78.61,
              ("LP CE", "asym 0.4"): 72.0, ("LP GCE", "sym 0.6"): 1.0}
    rows = {(r["method"], r["noise"]): r for r in gpu_check.compare(device, ref, lp_tol=1.0, fft_tol=1.0)}
    assert len(rows) == 4  # only cells in both
    assert rows[("FFT CE", "sym 0.6")]["ok"] and rows[("FFT CE", "sym 0.6")]["diff"] == pytest.approx(0.87)
    assert not rows[("FFT CE", "asym 0.4")]["ok"]  # 1.5 points
    assert rows[("LP CE", "sym 0.6")]["ok"] and not rows[("LP CE", "asym 0.4")]["ok"]  # 1.17 > 1.0


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_step_on_cpu(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = result["steps"]
    assert set(steps) == set(gpu_check.STEPS)
    assert not [name for name, step in steps.items() if "error" in step]
    assert steps["quickstart"]["all_within_tolerance"] and all(c["diff"] == 0 for c in steps["quickstart"]["cells"])
    assert {r["compiled"] for r in steps["throughput"]["compiled"]} == {True}
    assert {r["optimizer"] for r in steps["throughput"]["eager_sgd_train"]} == {"sgd"}
    assert len(steps["loader"]["rows"]) == len(loader.SIZES)
    assert {r["method"] for r in steps["lp_scale"]["rows"]} == set(lp_scale.METHODS)
    breakdown = steps["fft_breakdown"]["rows"][0]
    assert breakdown["forward_backward_ms"] > 0 and breakdown["checkpoint_mib"] > 0
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| LP method |" in md and "| backbone | mode |" in md and "quickstart on CPU" in md
    assert "| FFT step of |" in md


def test_jsd_in_row_chunks_equals_the_whole(monkeypatch):
    from nlbench.engine import selection

    rng = np.random.default_rng(0)
    probs, labels = rng.dirichlet(np.ones(7), 1000), rng.integers(0, 7, 1000)
    whole = selection.jsd_to_labels(probs, labels)
    monkeypatch.setattr(selection, "_JSD_CHUNK", 33)
    assert np.array_equal(selection.jsd_to_labels(probs, labels), whole)
    # Hand-computed row: p = (0.5, 0.5), label 0: m = (0.75, 0.25);
    # JSD = ½[log2(1/0.75)] + ½[0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25)] = 0.311278
    bits = selection.jsd_to_labels(np.array([[0.5, 0.5]]), np.array([0]), base=2)[0]
    assert bits == pytest.approx(0.311278, abs=1e-6)
