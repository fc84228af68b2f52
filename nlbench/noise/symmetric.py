"""Noise model 'sym': symmetric (uniform) flips of a fraction of the samples, in the reference codes'
convention (a new label from all C classes) or the exclusive one (from the other C − 1)."""

from __future__ import annotations

import numpy as np

from nlbench.errors import ConfigError
from nlbench.noise.base import NoiseDraw, check_model_options
from nlbench.registry import register_noise

SYM_CONVENTIONS = ("exclusive", "reference")


@register_noise("sym")
def symmetric(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    convention: str = "reference",
    inputs=None,
    dataset=None,
    **opts,
) -> NoiseDraw:
    """Symmetric (uniform) flips of a fraction ``rate`` of the samples.

    convention='reference' follows the DivideMix / ELR / UNICON reference code (DivideMix
    ``dataloader_cifar.py``: shuffle the indices, take the first ``int(r·N)``, give each a
    ``random.randint(0, C−1)`` label): exactly ``int(rate * N)`` samples, chosen uniformly, get a label
    drawn uniformly from all C classes, so some keep their true label (realized flip rate ≈ rate·(1 − 1/C)).
    convention='exclusive' draws the new label from the other C − 1 classes (realized flip rate = rate).
    """
    check_model_options("sym", opts, ("convention",))
    if convention not in SYM_CONVENTIONS:
        raise ConfigError(f"unknown sym convention {convention!r}; expected one of: {', '.join(SYM_CONVENTIONS)}")
    n = len(clean)
    chosen = rng.permutation(n)[: int(rate * n)]
    noisy = clean.copy()
    c = num_classes
    if convention == "reference":
        noisy[chosen] = rng.integers(0, c, size=len(chosen))
        expected = np.full((c, c), rate / c) + np.eye(c) * (1.0 - rate)
        flip = rate * (1.0 - 1.0 / c)
    else:
        offset = rng.integers(1, c, size=len(chosen))
        noisy[chosen] = (clean[chosen] + offset) % c
        expected = (np.full((c, c), rate / (c - 1)) * (1 - np.eye(c)) + np.eye(c) * (1.0 - rate)) if c > 1 \
            else np.eye(c)
        flip = rate
    return NoiseDraw(noisy, convention, expected, np.full(n, flip))
