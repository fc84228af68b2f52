"""``nlbench check method|backbone NAME``: a sound entry passes every check; an entry that breaks one promise
(an accuracy out of range, a record that changes from run to run, state a checkpoint does not carry, features
that change from build to build) fails with one line naming that check; an unknown name is one error line."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
import torch
from _tinynet import TinyCNN

from nlbench.backbones import Backbone, Preprocessing, register_backbone
from nlbench.cli.main import main
from nlbench.engine.losses import cross_entropy
from nlbench.methods import LossMethod, Method, register_method
from nlbench.registry import BACKBONES, METHODS


@pytest.fixture
def registries(monkeypatch):
    """Entries a test registers are gone after it."""
    for registry in (METHODS, BACKBONES):
        registry.names()  # the built-in entries first, so that the restored registry holds them
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def check(capsys, *args: str) -> tuple[int, list[str], str]:
    """Exit code, the PASS/FAIL lines, stderr."""
    code = main(["check", *args])
    out, err = capsys.readouterr()
    return code, [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))], err


def test_check_method_ce_passes_in_lp_and_fft(capsys, tmp_path):
    """Two of CE's three modes (lp-fft: in the slow test of every method below)."""
    code, lines, _ = check(capsys, "method", "ce", "--mode", "lp", "--mode", "fft", "--work", str(tmp_path))
    assert code == 0, lines
    assert [line.split(" — ")[0] for line in lines] == [
        "PASS  ce lp: record valid", "PASS  ce lp: same seed, same record",
        "PASS  ce lp: cached LP cell does no backbone forward",
        "PASS  ce fft: record valid", "PASS  ce fft: same seed, same record",
        "PASS  ce fft: resume equals uninterrupted",
    ]
    assert lines[-1].endswith("resumed loop 0 after epoch 1")  # interrupted after the first of two epochs


def test_an_accuracy_above_100_fails_record_valid_only(capsys, registries):
    @register_method("check_over_100", modes=("lp",), label="Over100")
    @dataclass(frozen=True)
    class Over100(Method):
        """Reports a test accuracy above 100 %."""

        def run(self, ctx):
            fit = ctx.engine.linear_probe(cross_entropy)
            fit.test_acc_best = 150.0
            return fit

    code, lines, err = check(capsys, "method", "check_over_100")
    assert code == 1
    # The record schema refuses the value as the cell writes its record (records.py: accuracies in [0, 100]).
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith("FAIL  check_over_100 lp: record valid — ")
    assert "test_acc_best = 150.0" in fails[0] and "less than or equal to 100" in fails[0]
    # The cell ends there: the checks that need its record (same seed, cache hit) have nothing to compare.
    assert len(lines) == 1 and "0 of 1 checks passed" in err


def test_a_record_that_changes_between_runs_fails_same_seed_same_record(capsys, registries):
    runs = itertools.count()

    @register_method("check_drifting", modes=("lp",), label="Drifting")
    @dataclass(frozen=True)
    class Drifting(Method):
        """Stores how often it has run: a state outside the seed."""

        def run(self, ctx):
            fit = ctx.engine.linear_probe(cross_entropy)
            fit.extra["runs_before"] = next(runs)
            return fit

    code, lines, _ = check(capsys, "method", "check_drifting")
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL  check_drifting lp: same seed, same record — the second run differs: extra.runs_before: 0 != 1"]


class StepScaledCE:
    """Cross-entropy scaled by the number of steps taken: a Python counter, which a checkpoint does not carry
    (``criterion_state`` keeps tensors and arrays)."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, logits, labels, index):
        self.steps += 1
        return cross_entropy(logits, labels, index) * (1.0 + self.steps / 10.0)


@pytest.mark.slow
def test_state_lost_on_resume_fails_resume_equals_uninterrupted(capsys, registries):
    @register_method("check_step_scaled", modes=("fft",), label="StepScaled")
    @dataclass(frozen=True)
    class StepScaled(LossMethod):
        """A loss whose scale grows with the steps taken."""

        def criterion(self, num_samples, num_classes):
            return StepScaledCE()

    code, lines, _ = check(capsys, "method", "check_step_scaled")
    assert code == 1
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith(
        "FAIL  check_step_scaled fft: resume equals uninterrupted — resumed (loop 0 after epoch 1) but differs: ")
    assert len(lines) == 3


def test_check_backbone_efficientnet_lite0_passes(capsys, tmp_path):
    code, lines, _ = check(capsys, "backbone", "efficientnet_lite0", "--input-size", "16", "--work", str(tmp_path))
    assert code == 0, lines
    assert [line.split(" — ")[0] for line in lines] == [
        "PASS  efficientnet_lite0: builds with its declared facts",
        "PASS  efficientnet_lite0: features match the declared facts",
        "PASS  efficientnet_lite0: features are deterministic",
        "PASS  efficientnet_lite0: cached LP cell does no backbone forward",
    ]
    assert "(4, 1280) at 224 px" in lines[1]


def test_a_backbone_whose_builds_differ_fails_deterministic_features(capsys, registries):
    facts = dict(source="tests", checkpoint="unseeded", feature_dim=16, licence="-", weights="random:unseeded",
                 preprocessing=Preprocessing((8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear"))

    @register_backbone("check_unseeded_cnn", **facts)
    def unseeded(*, pretrained=True, weights=None, tag=None):
        """A CNN initialised from the global random state: each build has other weights."""
        return Backbone.from_facts("check_unseeded_cnn", TinyCNN(), pretrained=pretrained)

    torch.manual_seed(0)
    code, lines, _ = check(capsys, "backbone", "check_unseeded_cnn")
    assert code == 1
    fails = [line for line in lines if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].startswith(
        "FAIL  check_unseeded_cnn: features are deterministic — a second build gives other features")
    assert len(lines) == 4


@pytest.mark.parametrize("args, message", [
    (["method", "no_such_method"], "nlbench: error: unknown method 'no_such_method'; expected one of: ce, cl, "),
    (["backbone", "no_such_net"], "nlbench: error: unknown backbone 'no_such_net'; expected one of: "),
    (["method", "turn", "--mode", "lp"], "nlbench: error: method 'turn' does not support mode 'lp'; supported: "
                                         "lp-fft"),
    (["backbone", "efficientnet_lite0", "--input-size", "0"], "nlbench: error: --input-size 0; expected a "
                                                              "positive number of pixels"),
])
def test_bad_names_are_one_error_line(capsys, args, message):
    code = main(["check", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(message)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS.names())
def test_every_registered_method_passes(capsys, method, tmp_path):
    code, lines, _ = check(capsys, "method", method, "--work", str(tmp_path))
    assert code == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
    modes = METHODS.entry(method).meta["modes"]
    assert len(lines) == sum(2 + (mode == "lp") + ("fft" in mode.split("-")) for mode in modes)
