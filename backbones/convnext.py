"""ConvNeXt-T (ImageNet-1k, Liu et al. 2022), a timm model.

Probe feature: timm's pre-logits of ``convnext_tiny``: global average pool, then the head's LayerNorm,
768-d (the classifier input of the published model). Runs channels_last on CUDA and CPU.
"""

from __future__ import annotations

from nlbench.backbones import Backbone, BackboneCost, register_backbone
from nlbench.backbones.timm_models import build_timm_backbone, timm_licence, timm_preprocessing

ARCH = "convnext_tiny"
DEFAULT_TAG = "fb_in1k"


@register_backbone(
    "convnext_t",
    source="timm",
    checkpoint=f"{ARCH}.{DEFAULT_TAG} (tag selectable)",
    feature_dim=768,
    licence=timm_licence(ARCH, DEFAULT_TAG),
    default_tag=DEFAULT_TAG,
    preprocessing=timm_preprocessing("convnext_t", ARCH),
    weights=f"timm:{ARCH}.{{tag}}",
    cost=BackboneCost(ARCH, 8.9, 7788, 2533, None, 8.0),  # H100 reference figures (docs/performance.md)
    probe_feature="global average pool + the head's LayerNorm (timm pre-logits)",
)
def convnext_t(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """ConvNeXt-Tiny, supervised ImageNet-1k (FAIR weights via timm); any timm tag of convnext_tiny."""
    return build_timm_backbone("convnext_t", ARCH, pretrained=pretrained, weights=weights, tag=tag,
                               default_tag=DEFAULT_TAG, channels_last=True)
