"""Shared test setup: no test writes outside its tmp folders, and torch stays on the 2 CI cores."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Point the default feature cache at a per-test temporary folder."""
    monkeypatch.setenv("NLBENCH_CACHE", str(tmp_path_factory.mktemp("nlbench-cache")))


TINY_TRAIN = {"input_size": 16, "lp_epochs": 2, "fft_epochs": 1, "fft_batch_size": 64, "eval_batch_size": 512}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


@pytest.fixture
def write_grid(tmp_path):
    """Write a small grid TOML (digits × efficientnet_lite0 at 16 px by default) and return its path."""

    def write(name: str = "tiny", *, noise=None, methods=None, seeds=(0,), train=None, **extra) -> str:
        fields = {
            "description": "test grid",
            "datasets": ["digits"],
            "backbones": ["efficientnet_lite0"],
            "seeds": list(seeds),
            "noise": noise or [{"model": "sym", "rate": 0.6}],
            "methods": methods or [{"method": "ce", "mode": "lp"}],
            **extra,
        }
        lines = [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
        lines += ["[train]"] + [f"{k} = {_toml_value(v)}" for k, v in {**TINY_TRAIN, **(train or {})}.items()]
        path = tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    return write
