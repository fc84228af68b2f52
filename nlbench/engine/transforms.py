"""Batch preprocessing on the device: uint8 images in, normalised float images out.

Small datasets (digits, CIFAR, Fashion-MNIST) live on the device as one uint8 tensor; cropping,
flipping, resizing and normalising happen per batch there, so on a GPU the input pipeline costs a
fraction of a millisecond per batch and never bounds training. The CPU runs the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


@dataclass(frozen=True)
class BatchTransform:
    """uint8 (B, C, H, W) → float (B, 3, S, S), normalised.

    augment: random crop with reflect padding of ``pad_fraction``·H pixels (4 px at 32 px, the CIFAR
    recipe) and, where ``hflip``, a random horizontal flip; applied at the source resolution, before
    the resize to ``size``.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    augment: bool = False
    hflip: bool = True
    pad_fraction: float = 0.125

    def describe(self) -> dict:
        """What determines the output, for cache keys."""
        return {
            "size": list(self.size),
            "mean": [round(v, 6) for v in self.mean],
            "std": [round(v, 6) for v in self.std],
            "interpolation": self.interpolation,
            "augment": self.augment,
            "hflip": self.hflip and self.augment,
            "pad_fraction": self.pad_fraction if self.augment else 0.0,
        }

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.augment:
            x = self._random_crop_flip(x, generator)
        if tuple(x.shape[-2:]) != tuple(self.size):
            mode = _INTERPOLATION.get(self.interpolation, "bilinear")
            # antialias matters only when shrinking (large photos); small images are upsampled.
            shrink = x.shape[-1] > self.size[-1]
            x = F.interpolate(x, size=self.size, mode=mode, align_corners=False if mode != "nearest" else None,
                              antialias=shrink and mode != "nearest")
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def _random_crop_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, _, h, w = x.shape
        pad = max(1, round(self.pad_fraction * h))
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        # One random offset per image, gathered with an index grid: no Python loop over the batch.
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.hflip:
            flip = (torch.rand(b, generator=generator, device="cpu") < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], out.flip(-1), out)
        return out.contiguous()
