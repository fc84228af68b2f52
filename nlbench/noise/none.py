"""Noise model 'none': the labels as given (real-noise datasets, or a clean reference run)."""

from __future__ import annotations

import numpy as np

from nlbench.noise.base import NoiseDraw, check_model_options
from nlbench.registry import register_noise


@register_noise("none")
def no_noise(clean: np.ndarray, *, rate: float, rng, num_classes: int, inputs=None, dataset=None, **opts) -> NoiseDraw:
    """No synthetic noise: labels as given (real-noise datasets, or a clean reference run)."""
    check_model_options("none", opts)
    return NoiseDraw(clean.copy(), "none", np.eye(num_classes), np.zeros(len(clean)))
