"""ResNet-50 (ImageNet-1k), a timm model; torchvision's original weights by default.

Probe feature: timm's pre-logits of ``resnet50``: global average pool of the last stage, 2048-d.
``tv_in1k`` is torchvision's classic recipe (76.1 % top-1), the checkpoint most LNL papers start from;
timm's stronger recipes are a tag away (``a1_in1k``, ``tv2_in1k``, …). Runs channels_last.
"""

from __future__ import annotations

from nlbench.backbones import Backbone, BackboneCost, register_backbone
from nlbench.backbones.timm_models import build_timm_backbone, timm_licence, timm_preprocessing

ARCH = "resnet50"
DEFAULT_TAG = "tv_in1k"


@register_backbone(
    "resnet50",
    source="timm",
    checkpoint=f"{ARCH}.{DEFAULT_TAG} (tag selectable, e.g. a1_in1k)",
    feature_dim=2048,
    licence=timm_licence(ARCH, DEFAULT_TAG),
    default_tag=DEFAULT_TAG,
    preprocessing=timm_preprocessing("resnet50", ARCH),
    weights=f"timm:{ARCH}.{{tag}}",
    cost=BackboneCost(ARCH, 8.2, 13152, 3706, None, 5.7),  # H100 reference figures (docs/performance.md)
    probe_feature="global average pool (timm pre-logits)",
)
def resnet50(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """ResNet-50, supervised ImageNet-1k (torchvision weights via timm); any timm tag of resnet50."""
    return build_timm_backbone("resnet50", ARCH, pretrained=pretrained, weights=weights, tag=tag,
                               default_tag=DEFAULT_TAG, channels_last=True)
