"""The one checkpoint helper of every training loop: a saved and resumed loop of N networks gets back its
weights, optimisers, schedules, random states, cell progress, fit fields and own loop state; a checkpoint
of another run is ignored."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nlbench.engine.train import Fit, make_optimizer, make_scheduler
from nlbench.engine.training_state import CellProgress, EpochCheckpoint, Network, pack, unpack


def networks(seed: int, n: int = 2) -> list[Network]:
    out = []
    for k in range(n):
        torch.manual_seed(seed + k)
        model = nn.Linear(3, 2)
        opt = make_optimizer("adamw", model.parameters(), lr=0.1, weight_decay=0.0, momentum=0.9,
                             device=torch.device("cpu"))
        out.append(Network(model, opt, make_scheduler("cosine", opt, 10)))
    return out


def train_epoch(nets: list[Network], generator: torch.Generator, rng: np.random.Generator,
                progress: CellProgress, epoch: int) -> float:
    x = torch.randn(8, 3, generator=generator) + float(rng.normal())
    for net in nets:
        loss = net.model(x).pow(2).mean()
        net.optimizer.zero_grad()
        loss.backward()
        net.optimizer.step()
        net.scheduler.step()
    progress.log_selection(np.arange(epoch + 1), 6, epoch=epoch, phase="net1")
    progress.count("steps", len(nets))
    return float(loss.detach())


def run(tmp_path, epochs: int, *, stop_after: int | None = None, logs: list | None = None, fingerprint=None):
    nets, generator, rng = networks(0), torch.Generator().manual_seed(0), np.random.default_rng(0)
    progress, fit = CellProgress(), Fit(model=nn.ModuleList([n.model for n in nets]))
    checkpoint = EpochCheckpoint(tmp_path / "ckpt.pt", fingerprint or {"epochs": epochs}, label="toy", call="toy",
                                 epochs=epochs, log=(logs if logs is not None else []).append)
    first, loop = checkpoint.resume(networks=nets, generator=generator, progress=progress, fit=fit,
                                    numpy_generators=[rng])
    losses = loop.get("losses", [])
    for epoch in range(first, epochs):
        losses.append(train_epoch(nets, generator, rng, progress, epoch))
        fit.history.append({"epoch": epoch, "train_loss": losses[-1]})
        fit.best_epoch, fit.test_acc_best = epoch, float(epoch)
        checkpoint.save(epoch, networks=nets, generator=generator, progress=progress, fit=fit,
                        numpy_generators=[rng], loop={"losses": losses, "array": np.arange(epoch + 1)})
        if stop_after is not None and epoch + 1 == stop_after:
            break
    return nets, progress, fit, losses


def test_resumed_loop_of_two_networks_equals_the_uninterrupted_one(tmp_path):
    ref_nets, ref_progress, ref_fit, ref_losses = run(tmp_path / "a", 4)
    run(tmp_path / "b", 4, stop_after=2)
    logs: list[str] = []
    nets, progress, fit, losses = run(tmp_path / "b", 4, logs=logs)
    assert logs == [f"toy: resumed from {tmp_path / 'b' / 'ckpt.pt'} after epoch 2 of 4"]
    assert losses == ref_losses and fit.history == ref_fit.history and fit.best_epoch == 3
    for a, b in zip(nets, ref_nets, strict=True):
        for x, y in zip(a.model.parameters(), b.model.parameters(), strict=True):
            assert torch.equal(x, y)
        assert a.scheduler.state_dict()["last_epoch"] == 4
    assert progress.counters == ref_progress.counters and progress.counters["steps"] == 8
    assert [s["mask"].tolist() for s in progress.selections] == [s["mask"].tolist() for s in ref_progress.selections]
    assert progress.resumed_from == [{"call": "toy", "epoch": 2}] and ref_progress.resumed_from is None


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    run(tmp_path, 2)
    logs: list[str] = []
    _, progress, fit, losses = run(tmp_path, 3, logs=logs, fingerprint={"epochs": 3})
    assert len(losses) == 3 and progress.resumed_from is None
    assert len(logs) == 1 and logs[0].startswith("toy: ignoring checkpoint") and "different run" in logs[0]


def test_pack_round_trips_arrays_and_128_bit_ints_through_weights_only_load(tmp_path):
    state = np.random.default_rng(5).bit_generator.state  # PCG64: 128-bit integers
    value = {"gen": state, "arrays": [np.arange(3), np.array([[0.5]])], "n": 7, "flag": True}
    torch.save(pack(value), tmp_path / "x.pt")
    back = unpack(torch.load(tmp_path / "x.pt", weights_only=True))
    assert back["gen"] == state and back["n"] == 7 and back["flag"] is True
    assert np.array_equal(back["arrays"][0], np.arange(3)) and back["arrays"][1].dtype == np.float64
