"""Checkpoint and resume: an interrupted fine-tuning ends exactly as an uninterrupted one, and a sweep killed
with SIGKILL in the middle of a cell finishes every cell exactly once when run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _tinynet import tiny_model

from nlbench.engine.features import FeatureCache, FeatureKey
from nlbench.engine.images import TensorImages
from nlbench.engine.train import TrainConfig, Trainer
from nlbench.engine.transforms import BatchTransform
from nlbench.methods.elr import ELRLoss

TESTS = Path(__file__).parent
N_TRAIN, N_EVAL, CLASSES = 96, 32, 4


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and spares the cores other processes share."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Interrupted(Exception):
    pass


class InterruptingImages(TensorImages):
    """Training images that raise after ``after`` batches of epoch ``epoch`` (a kill mid-epoch)."""

    def __init__(self, images: np.ndarray, device: torch.device, *, epoch: int, after: int) -> None:
        super().__init__(images, device)
        self.epoch, self.after, self.calls = epoch, after, 0

    def batches(self, *args, **kwargs):
        current, self.calls = self.calls, self.calls + 1
        for i, item in enumerate(super().batches(*args, **kwargs)):
            if current == self.epoch and i == self.after:
                raise Interrupted
            yield item


def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", N_TRAIN), ("val", N_EVAL), ("test", N_EVAL)):
        labels = rng.integers(0, CLASSES, n)
        # Class-dependent brightness so that the model can learn something in a few epochs.
        images = (rng.integers(0, 96, (n, 8, 8, 3)) + 40 * labels[:, None, None, None]).astype(np.uint8)
        out[split] = (images, labels)
    return out


def make_trainer(tmp: Path, checkpoint: Path | None, *, epochs: int = 3, interrupt: tuple[int, int] | None = None,
                 logs: list[str] | None = None) -> Trainer:
    d = data()

    def images(split: str, device: torch.device):
        if split == "train" and interrupt is not None:
            return InterruptingImages(d[split][0], device, epoch=interrupt[0], after=interrupt[1])
        return TensorImages(d[split][0], device)

    def key(split: str, view: int) -> FeatureKey:
        return FeatureKey("tiny", "random", {"dataset": "synthetic"}, split, view, {})

    def transform(backbone, augment: bool) -> BatchTransform:
        return BatchTransform(size=(8, 8), mean=backbone.mean, std=backbone.std, augment=augment, hflip=True)

    trainer = Trainer(
        config=TrainConfig(fft_epochs=epochs, fft_batch_size=16, fft_lr=0.05, eval_batch_size=64, device="cpu"),
        num_classes=CLASSES, labels=d["train"][1], val_labels=d["val"][1], test_labels=d["test"][1],
        images=images, backbone_factory=tiny_model, feature_cache=FeatureCache(tmp / "cache"), feature_key=key,
        transform=transform, seed=3, log=(logs.append if logs is not None else lambda m: None),
    )
    trainer.checkpoint_dir = checkpoint
    return trainer


def subset_index(trainer: Trainer):
    """A TURN-like re-drawn subset per epoch (seeded), logged as a selection: the 'selection state'."""
    rng = np.random.default_rng(7)
    drawn: dict[int, np.ndarray] = {}

    def index(epoch: int) -> np.ndarray:
        if epoch not in drawn:
            drawn[epoch] = np.sort(rng.choice(N_TRAIN, 64, replace=False))
            trainer.log_selection(drawn[epoch], epoch=epoch, phase="fft")
        return drawn[epoch]

    return index


def fine_tune(trainer: Trainer):
    criterion = ELRLoss(N_TRAIN, CLASSES, lam=3.0, beta=0.7)  # per-sample targets persist across epochs
    fit = trainer.fine_tune(criterion, index=subset_index(trainer))
    return fit, criterion


def assert_same_run(a: tuple, b: tuple, ta: Trainer, tb: Trainer) -> None:
    (fa, ca), (fb, cb) = a, b
    assert fa.history == fb.history
    assert (fa.best_epoch, fa.val_acc_best, fa.test_acc_best, fa.test_acc_last) == \
        (fb.best_epoch, fb.val_acc_best, fb.test_acc_best, fb.test_acc_last)
    sa, sb = fa.model.state_dict(), fb.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert torch.equal(ca.targets, cb.targets)
    assert [(s["phase"], s["epoch"]) for s in ta.selections] == [(s["phase"], s["epoch"]) for s in tb.selections]
    assert all(np.array_equal(x["mask"], y["mask"]) for x, y in zip(ta.selections, tb.selections, strict=True))
    assert ta.counters == tb.counters


def test_fine_tune_resumed_after_interrupt_equals_uninterrupted(tmp_path: Path) -> None:
    plain = make_trainer(tmp_path, None)
    reference = fine_tune(plain)
    assert len(reference[0].history) == 3

    # Saving checkpoints must not change the run (it draws no random numbers).
    saved = make_trainer(tmp_path, tmp_path / "a")
    assert_same_run(reference, fine_tune(saved), plain, saved)
    assert (tmp_path / "a" / "fine_tune-0.pt").is_file()

    # Killed after 2 batches of the second epoch: the checkpoint holds epoch 1 only.
    broken = make_trainer(tmp_path, tmp_path / "b", interrupt=(1, 2))
    with pytest.raises(Interrupted):
        fine_tune(broken)
    logs: list[str] = []
    resumed = make_trainer(tmp_path, tmp_path / "b", logs=logs)
    result = fine_tune(resumed)
    assert resumed.resumed_from == [{"call": 0, "epoch": 1}]
    assert any("resumed from" in line and "after epoch 1 of 3" in line for line in logs)
    assert_same_run(reference, result, plain, resumed)

    # A finished phase's checkpoint (epoch 3 of 3): calling again trains nothing and returns the same fit.
    again = make_trainer(tmp_path, tmp_path / "b")
    before = again.counters["backbone_backward_images"]
    assert_same_run(reference, fine_tune(again), plain, again)
    assert again.resumed_from == [{"call": 0, "epoch": 3}]
    assert before == 0 and again.counters == plain.counters  # restored, not recounted


def test_checkpoint_of_another_run_is_ignored(tmp_path: Path) -> None:
    fine_tune(make_trainer(tmp_path, tmp_path / "c", epochs=2))
    logs: list[str] = []
    longer = make_trainer(tmp_path, tmp_path / "c", epochs=3, logs=logs)
    result = fine_tune(longer)
    assert longer.resumed_from is None
    assert any("ignoring checkpoint" in line for line in logs)
    plain = make_trainer(tmp_path, None, epochs=3)
    assert_same_run(fine_tune(plain), result, plain, longer)


# ------------------------------------------------------------------------ kill -9 of a local sweep
GRID = """
description = "kill test"
datasets = ["digits"]
backbones = ["tiny_test_cnn"]
seeds = [0]
noise = [{ model = "sym", rate = 0.4 }]
methods = [{ method = "ce", mode = "lp" }, { method = "gce", mode = "lp" }, { method = "elr", mode = "fft" }]
[train]
input_size = 8
lp_epochs = 3
fft_epochs = 4
fft_batch_size = 128
eval_batch_size = 512
"""
TRAINING_FIELDS = ("config_hash", "test_acc_best", "test_acc_last", "val_acc_best", "best_epoch", "history",
                   "selection", "extra", "noise_audit")


def nlbench(args: list[str], *, sleep: float = 0.0, stdout=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "NLBENCH_TEST_STEP_SLEEP": str(sleep), "OMP_NUM_THREADS": "1", "CI": "1"}
    code = "import sys, _tinynet; _tinynet.register(); from nlbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-u", "-c", code, *args], env=env, stdout=stdout,
                            stderr=subprocess.STDOUT, text=True)


def finished(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_kill9_mid_cell_then_rerun_finishes_each_cell_once(tmp_path: Path) -> None:
    grid = tmp_path / "killtest.toml"
    grid.write_text(GRID)
    results, cache = tmp_path / "runs", tmp_path / "cache"
    args = ["run", "--grid", str(grid), "--results", str(results), "--cache", str(cache)]
    records = results / "killtest" / "records"
    fft = "digits__tiny_test_cnn__sym0.4__fft__elr__seed0"

    # 1. A slow sweep (each training step sleeps 0.1 s), killed with SIGKILL once the FFT cell has checkpointed
    #    its first epoch: in the middle of the cell.
    log1 = tmp_path / "run1.log"
    with open(log1, "w") as out:
        proc = nlbench(args, sleep=0.1, stdout=out)
        deadline = time.time() + 180
        while not list((results / "killtest" / "checkpoints").glob("*/fine_tune-0.pt")):
            assert proc.poll() is None, log1.read_text()
            assert time.time() < deadline, "the FFT cell never checkpointed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first = log1.read_text()
    assert not (records / f"{fft}.json").exists(), "killed too late: the FFT cell had finished"
    lp_done = sorted(p.name for p in records.glob("*.json"))
    assert lp_done == ["digits__tiny_test_cnn__sym0.4__lp__ce__seed0.json",
                       "digits__tiny_test_cnn__sym0.4__lp__gce__seed0.json"]
    stamps = {name: (records / name).stat().st_mtime_ns for name in lp_done}
    assert all(f"{name[:-5]}: test" in first for name in lp_done)

    # 2. Run again: only the FFT cell runs, resuming after its checkpointed epoch.
    second = finished(nlbench(args))
    assert "1 of 3 cells to run (2 done)" in second
    assert f"{fft}: test" in second and not any(f"{name[:-5]}: test" in second for name in lp_done)
    assert {name: (records / name).stat().st_mtime_ns for name in lp_done} == stamps  # not rewritten
    resumed = json.loads((records / f"{fft}.json").read_text())
    assert resumed["cost"]["resumed_from"] and resumed["cost"]["resumed_from"][0]["epoch"] >= 1
    assert "resumed from" in second
    assert not any((results / "killtest" / "checkpoints").glob("*/*.pt")), "checkpoints kept after the record"

    # 3. The resumed record equals an uninterrupted run's in everything training decides.
    finished(nlbench(["run", "--grid", str(grid), "--results", str(tmp_path / "ref"), "--cache", str(cache)]))
    reference = json.loads((tmp_path / "ref" / "killtest" / "records" / f"{fft}.json").read_text())
    assert reference["cost"]["resumed_from"] == []
    for field in TRAINING_FIELDS:
        assert resumed[field] == reference[field], field
    assert len(resumed["cost"]["fft_epoch_s"]) == 4  # epochs before the kill come from the checkpoint

    # 4. And a third run has nothing to do.
    assert "all 3 cells are done; nothing to run" in finished(nlbench(args))


@pytest.mark.slow
def test_debug_executor_runs_the_slurm_job_code_in_process(tmp_path: Path) -> None:
    grid = tmp_path / "killtest.toml"
    grid.write_text(GRID.replace('{ method = "elr", mode = "fft" }', '{ method = "elr", mode = "fft" }, '
                                 '{ method = "ce", mode = "fft" }').replace("fft_epochs = 4", "fft_epochs = 1"))
    out = finished(nlbench(["run", "--grid", str(grid), "--results", str(tmp_path / "r"), "--cache",
                            str(tmp_path / "c"), "--executor", "debug"]))
    # 2 LP cells share one job; each FFT cell is its own job.
    jobs = [line for line in out.splitlines() if line.startswith("debug job ")]
    assert len(jobs) == 3 and "LP group tiny_test_cnn/digits @ 8 px: 2 cell(s)" in jobs[0]
    assert len(list((tmp_path / "r" / "killtest" / "records").glob("*.json"))) == 4
