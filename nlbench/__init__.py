"""nlbench: benchmark learning-with-noisy-labels methods on pre-trained backbones."""

__version__ = "0.1.0"
