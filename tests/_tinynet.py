"""A tiny seeded CNN backbone for runner tests that need many fast fine-tuning epochs.

Only subprocesses the tests start call ``register()`` (``python -c "import _tinynet; _tinynet.register(); ..."``
with tests/ on PYTHONPATH), so the test process's registry stays as shipped; ``tiny_model`` is used directly.
$NLBENCH_TEST_STEP_SLEEP (seconds) makes every training forward pass sleep that long, so a test can
kill a sweep in the middle of a fine-tuning without burning CPU.
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from nlbench.backbones import Backbone, Preprocessing, register_backbone


class TinyCNN(nn.Module):
    """(B, 3, H, W) → (B, 16): two conv-BN-ReLU layers and global average pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delay = float(os.environ.get("NLBENCH_TEST_STEP_SLEEP", "0"))
        if delay and self.training:
            time.sleep(delay)
        return self.body(x)


def tiny_model() -> Backbone:
    with torch.random.fork_rng():  # the same "pre-trained" weights every time, global RNG untouched
        torch.manual_seed(1234)
        model = TinyCNN()
    return Backbone(name="tiny_test_cnn", model=model, feature_dim=16, input_size=(8, 8), mean=(0.5, 0.5, 0.5),
                    std=(0.25, 0.25, 0.25), interpolation="bilinear", weights_id="random:tiny_test_cnn")


def tiny_test_cnn(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """Tiny seeded CNN (tests only)."""
    return tiny_model()


def register() -> None:
    """Register ``tiny_test_cnn`` as a backbone (in a test's subprocess only)."""
    register_backbone("tiny_test_cnn", source="tests", checkpoint="seeded random", feature_dim=16, licence="-",
                      preprocessing=Preprocessing((8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bilinear"),
                      weights="random:tiny_test_cnn")(tiny_test_cnn)
