"""``nlbench advise``: one's own noisy images → how noisy, which labels are wrong, which method to train and how
good it will be (docs/advise.md). ``load_model`` reads back what ``advise --fit`` saved."""

from __future__ import annotations

from typing import Any

__all__ = ["AdviseOptions", "load_model", "run_advise"]


def __getattr__(name: str) -> Any:
    # Lazy: the CLI imports this package for parsing; the engine (torch) loads only when advise runs.
    if name in ("AdviseOptions", "run_advise"):
        from nlbench.advise import pipeline

        return getattr(pipeline, name)
    if name == "load_model":
        from nlbench.advise.model import load_model

        return load_model
    raise AttributeError(name)
