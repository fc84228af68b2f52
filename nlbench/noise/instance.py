"""Noise model 'inst': instance-dependent noise of Xia et al., NeurIPS 2020, on raw or standardised pixels
or on backbone features."""

from __future__ import annotations

import numpy as np

from nlbench.errors import ConfigError
from nlbench.noise.base import NoiseDraw, check_model_options
from nlbench.registry import register_noise

PIXEL_SCALES = ("raw", "standardised")


def instance_inputs(inputs: np.ndarray, pixel_scale: str = "raw") -> np.ndarray:
    """(N, d) flattened inputs x of instance-dependent noise.

    Images (N, H, W, C): pixel_scale 'raw' keeps the 0-255 values, as the reference does (Xia et al.'s
    ``data.py`` hands ``torch.from_numpy(images).float()`` of the uint8 arrays to
    ``tools.get_instance_noisy_label``; float images are taken to lie in [0, 1] and scaled by 255);
    'standardised' divides uint8 by 255 and standardises each channel with the dataset's statistics.
    Feature rows (N, D) are standardised per dimension (features have no reference scale).
    """
    if pixel_scale not in PIXEL_SCALES:
        raise ConfigError(f"unknown inst pixel_scale {pixel_scale!r}; expected one of: {', '.join(PIXEL_SCALES)}")
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim == 4:
        if pixel_scale == "raw":
            return (x if inputs.dtype == np.uint8 else x * 255.0).reshape(len(x), -1)
        x = x / 255.0 if inputs.dtype == np.uint8 else x
        mean = x.mean(axis=(0, 1, 2), keepdims=True)
        std = x.std(axis=(0, 1, 2), keepdims=True) + 1e-8
    elif x.ndim == 2:
        mean = x.mean(axis=0, keepdims=True)
        std = x.std(axis=0, keepdims=True) + 1e-8
    else:
        raise ConfigError(f"inst noise inputs must be images (N, H, W, C) or features (N, D); got shape {x.shape}")
    return ((x - mean) / std).reshape(len(x), -1)


def _normalised_inputs(inputs: np.ndarray) -> np.ndarray:
    """Standardised inputs (the 'standardised' pixel scale; features always)."""
    return instance_inputs(inputs, "standardised")


INST_INPUTS = ("features", "pixels")


@register_noise("inst", needs_inputs=True)
def instance_dependent(
    clean: np.ndarray,
    *,
    rate: float,
    rng: np.random.Generator,
    num_classes: int,
    inputs: np.ndarray | None = None,
    std: float = 0.1,
    inputs_kind: str = "pixels",
    pixel_scale: str = "raw",
    dataset=None,
    **opts,
) -> NoiseDraw:
    """Instance-dependent noise of Xia et al., NeurIPS 2020 ("Part-dependent label noise").

    Follows the generator of their code (github.com/xiaoboxia/Part-dependent-label-noise,
    ``tools.get_instance_noisy_label``), which the field reuses: per sample a flip rate
    q_i ~ N(rate, std²) truncated to [0, 1]; a projection W (C, d, C) ~ N(0, 1); scores x_i·W[y_i] with
    the true class masked out, softmax, scaled by q_i, and 1 − q_i on the true class; the noisy label is
    drawn from that distribution. x_i is the flattened input (``instance_inputs``).
    ``inputs_kind``: 'pixels' (default, as the reference) or 'features' (x is the backbone's feature
    vector; ``nlbench.run.labels`` extracts it through the feature cache). ``pixel_scale``: 'raw' (default,
    the reference's 0-255 values: large scores, so each sample's flips concentrate on one wrong class)
    or 'standardised' (per-channel standardised pixels: flips spread over more classes).
    """
    from scipy.stats import truncnorm  # scipy: heavy, for the inst model only

    check_model_options("inst", opts, ("inputs_kind", "pixel_scale", "std"))
    if inputs_kind not in INST_INPUTS:
        raise ConfigError(f"unknown inst inputs_kind {inputs_kind!r}; expected one of: {', '.join(INST_INPUTS)}")
    if pixel_scale not in PIXEL_SCALES:
        raise ConfigError(f"unknown inst pixel_scale {pixel_scale!r}; expected one of: {', '.join(PIXEL_SCALES)}")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or std <= 0:
        raise ConfigError(f"inst option std must be a positive number; got {std!r}")
    if inputs is None:
        raise ConfigError("inst noise needs the training inputs (pixels or features)")
    convention = "xia2020:features" if inputs_kind == "features" else (
        "xia2020:pixels" if pixel_scale == "raw" else "xia2020:pixels-standardised")
    x = instance_inputs(inputs, pixel_scale)
    n, d = x.shape
    if rate == 0.0:
        return NoiseDraw(clean.copy(), convention, np.eye(num_classes), np.zeros(n))
    q = truncnorm.rvs((0 - rate) / std, (1 - rate) / std, loc=rate, scale=std, size=n, random_state=rng)
    w = rng.standard_normal((num_classes, d, num_classes), dtype=np.float32)
    probs = flip_distribution(x, clean, q, w)
    u = rng.random(n)
    noisy = np.minimum((u[:, None] > np.cumsum(probs, axis=1)).sum(1), num_classes - 1)
    expected = np.zeros((num_classes, num_classes))
    for c in np.unique(clean):
        expected[c] = probs[clean == c].mean(axis=0)
    return NoiseDraw(noisy, convention, expected, 1.0 - probs[np.arange(n), clean])


def flip_distribution(x: np.ndarray, clean: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(N, C) label distribution per sample (Xia et al.): q_i·softmax(x_i W[y_i]) over the other classes
    (true class masked out) plus 1 − q_i on y_i. x: (N, d) inputs (``instance_inputs``); q: (N,);
    w: (C, d, C)."""
    n, num_classes = len(clean), w.shape[2]
    probs = np.zeros((n, num_classes), dtype=np.float64)
    for c in np.unique(clean):
        idx = np.flatnonzero(clean == c)
        scores = (x[idx] @ w[c]).astype(np.float64)
        scores[:, c] = -np.inf
        scores -= scores.max(axis=1, keepdims=True)
        e = np.exp(scores)
        probs[idx] = q[idx, None] * e / e.sum(axis=1, keepdims=True)
        probs[idx, c] += 1.0 - q[idx]
    return probs
