from __future__ import annotations

from dataclasses import dataclass

import pytest

from nlbench.cli.main import main
from nlbench.errors import ConfigError
from nlbench.methods import Method, register_method
from nlbench.registry import BACKBONES, DATASETS, METHODS, NOISE, Registry, dataset_facts, register_dataset


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

    @reg.register("y")
    class Y:
        """A summary that wraps: it goes on
        over a second line.

        Details, not part of the description.
        """

    assert reg.entry("y").description == "A summary that wraps: it goes on over a second line."


def test_list_methods_shows_each_description_whole(capsys):
    """The descriptions of methods whose docstring summary wraps (Co-teaching, Co-teaching+, JoCoR) are not cut."""
    assert main(["list", "methods"]) == 0
    lines = {ln.split(None, 1)[0]: ln for ln in capsys.readouterr().out.splitlines()}
    for entry in METHODS:
        assert f"{entry.name}  " in lines[entry.name] and entry.description in lines[entry.name]
        assert entry.description.endswith("."), entry.name  # a whole sentence, not one cut at a line break
    assert "on which its peer takes a step (mean CE)." in lines["coteaching"]
    assert "of the disagreement set." in lines["coteaching_plus"]
    assert "equal for the engine's SGD and AdamW)." in lines["jocor"]


def test_dataset_facts_are_checked_when_a_dataset_registers(monkeypatch):
    DATASETS.names()  # the built-in entries are in before the registry is copied
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))  # restored after the test

    def loader():
        """A loader with bad facts."""

    with pytest.raises(ConfigError, match=r"dataset 'bad_facts': sizes must be \(train, val, test\) image counts, "
                                          r"train > 0; got \(0, 1, 2\); in_memory must be True or False; got 'yes'"):
        register_dataset("bad_facts", sizes=(0, 1, 2), in_memory="yes")(loader)
    with pytest.raises(ConfigError, match=r"real_noise_rate must be a number in \[0, 1\) or None; got 1.5"):
        register_dataset("bad_facts", real_noise_rate=1.5)(loader)
    with pytest.raises(ConfigError, match=r"variant_sizes\['mini'\] must be"):
        register_dataset("bad_facts", variant_sizes={"mini": (5, 1)})(loader)
    assert "bad_facts" not in DATASETS
    register_dataset("good_facts", sizes=[100, 10, 20], variant_sizes={"small": (10, 1, 2)})(loader)
    facts = dataset_facts("good_facts")
    assert facts.sizes == (100, 10, 20) and facts.sizes_for("small") == (10, 1, 2)
    assert not facts.in_memory and facts.real_noise_rate is None


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
