"""Two-network methods in fft mode checkpoint every epoch: a cell killed mid-epoch resumes and ends exactly
as an uninterrupted run (both networks, history, selections, counters, the method's own loop state)."""

from __future__ import annotations

import pytest
import torch
from test_dividemix import tiny_context  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.network_pair import NetworkPair
from nlbench.methods import build_method


class Interrupted(Exception):
    pass


def run(tmp_path, method: str, checkpoint_dir, *, interrupt_at: int | None = None, monkeypatch=None, logs=None):
    ctx = tiny_context(tmp_path, "fft", epochs=4)
    trainer = ctx.engine
    trainer.checkpoint_dir = checkpoint_dir
    if logs is not None:
        trainer.log = logs.append
    if interrupt_at is not None:
        calls = {"n": 0}
        real = NetworkPair.mixmatch_epoch

        def mixmatch_then_die(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == interrupt_at:
                raise Interrupted
            return real(self, *args, **kwargs)

        monkeypatch.setattr(NetworkPair, "mixmatch_epoch", mixmatch_then_die)
    fit = build_method(method, "fft", {"warmup_epochs": 1}).run(ctx)
    return fit, trainer


@pytest.mark.parametrize("method", ["dividemix", "unicon"])
def test_resumed_two_network_run_equals_uninterrupted(method, tmp_path, monkeypatch):
    reference, ref_trainer = run(tmp_path, method, None)
    # Killed during network 2's semi-supervised pass of epoch 2 (mixmatch calls: epoch 1 → 1, 2; epoch 2 → 3, 4).
    with pytest.raises(Interrupted):
        run(tmp_path, method, tmp_path / "ckpt", interrupt_at=4, monkeypatch=monkeypatch)
    monkeypatch.undo()
    assert (tmp_path / "ckpt" / f"pair-{method}.pt").is_file()
    logs: list[str] = []
    resumed, trainer = run(tmp_path, method, tmp_path / "ckpt", logs=logs)
    assert trainer.resumed_from == [{"call": method, "epoch": 2}]
    assert any(f"{method}: resumed from" in line and "after epoch 2 of 4" in line for line in logs)
    assert resumed.history == reference.history
    assert (resumed.best_epoch, resumed.test_acc_best, resumed.test_acc_last) == \
        (reference.best_epoch, reference.test_acc_best, reference.test_acc_last)
    assert resumed.extra == reference.extra
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [(s["phase"], s["epoch"], s["mask"].tolist()) for s in trainer.selections] == \
        [(s["phase"], s["epoch"], s["mask"].tolist()) for s in ref_trainer.selections]
    assert trainer.counters == ref_trainer.counters
    assert len(trainer.fft_epoch_seconds) == 4


def test_checkpoint_of_a_different_run_is_ignored(tmp_path, monkeypatch):
    ctx = tiny_context(tmp_path, "fft", epochs=2)
    ctx.engine.checkpoint_dir = tmp_path / "ckpt"
    build_method("dividemix", "fft", {"warmup_epochs": 1}).run(ctx)
    logs: list[str] = []
    longer, trainer = run(tmp_path, "dividemix", tmp_path / "ckpt", logs=logs)  # 4 epochs, not 2
    assert trainer.resumed_from is None and len(longer.history) == 4
    assert any("ignoring checkpoint" in line for line in logs)
