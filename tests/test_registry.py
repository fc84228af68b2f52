from __future__ import annotations

from dataclasses import dataclass

import pytest

from nlbench.cli.main import main
from nlbench.errors import ConfigError
from nlbench.methods import Method, register_method
from nlbench.registry import BACKBONES, DATASETS, METHODS, NOISE, Registry


def test_register_twice_raises():
    reg = Registry("widget")
    reg.add("a", object())
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("a", object())


def test_unknown_name_lists_valid_choices():
    with pytest.raises(ConfigError) as info:
        METHODS.get("gcee")
    message = str(info.value)
    assert "unknown method 'gcee'" in message
    for name in ("ce", "elr", "gce", "turn"):
        assert name in message


def test_unknown_mode_rejected_at_registration():
    class Bogus(Method):
        def run(self, ctx):
            raise AssertionError

    with pytest.raises(ConfigError, match="unknown mode.s. finetune; expected a subset of fft, lp, lp-fft"):
        register_method("bogus", modes=("finetune",), label="Bogus")(dataclass(frozen=True)(Bogus))
    assert "bogus" not in METHODS


def test_builtin_entries_and_modes():
    assert {"ce", "gce", "elr", "turn"} <= set(METHODS.names())
    assert METHODS.entry("turn").meta["modes"] == ("lp-fft",)
    assert set(METHODS.entry("gce").meta["modes"]) == {"fft", "lp", "lp-fft"}
    assert METHODS.entry("dividemix").meta["label"] == "DMix"
    assert METHODS.entry("dividemix").meta["distribution"] == "nlbench"
    assert "efficientnet_lite0" in BACKBONES
    assert BACKBONES.entry("efficientnet_lite0").meta["feature_dim"] == 1280
    assert {"sym", "asym", "inst"} <= set(NOISE.names())
    assert "digits" in DATASETS


def test_description_is_docstring_first_line():
    reg = Registry("thing")

    @reg.register("x")
    class X:
        """One line that describes X.

        More text.
        """

    assert reg.entry("x").description == "One line that describes X."


@pytest.mark.parametrize("kind, expected", [
    ("methods", "turn"), ("backbones", "efficientnet_lite0"), ("noise", "inst"), ("datasets", "digits"),
    ("grids", "quickstart"),
])
def test_cli_list(kind, expected, capsys):
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    assert expected in out
    # one line per entry, each with a description after the name
    line = next(ln for ln in out.splitlines() if ln.startswith(expected))
    assert len(line.split(None, 1)) == 2
