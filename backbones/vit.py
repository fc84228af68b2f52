"""ViT-B/16 (supervised, timm's AugReg2 by default) and MAE ViT-B/16 (self-supervised), both timm models.

Probe feature: timm's pre-logits of ``vit_base_patch16_224`` (``global_pool='token'``): the class token
after the final LayerNorm, 768-d. That is the supervised ViT's own classifier input, and the feature the
MAE paper's linear probe reads (MAE ``main_linprobe.py`` defaults to the class token; it adds a
parameter-free BatchNorm in its head, which our probe does not).

Both are built with ``dynamic_img_size=True``: at 224 px the position embedding is used as is (timm's
``resample_abs_pos_embed`` returns it unchanged), at other sizes (a grid's ``input_size``, small CPU
runs) it is interpolated on the fly instead of failing. Attention runs through PyTorch's fused
``scaled_dot_product_attention`` (timm's default, ``TIMM_FUSED_ATTN``).
"""

from __future__ import annotations

from nlbench.backbones import Backbone, register_backbone
from nlbench.backbones.timm_models import (
    VIT_B16_ARCH,
    VIT_B16_COST,
    build_timm_backbone,
    timm_licence,
    timm_preprocessing,
)

ARCH = VIT_B16_ARCH
VIT_TAG = "augreg2_in21k_ft_in1k"  # ImageNet-21k pre-training, ImageNet-1k fine-tuning (timm's best B/16)
MAE_TAG = "mae"


@register_backbone(
    "vit_b16",
    source="timm",
    checkpoint=f"{ARCH}.{VIT_TAG} (tag selectable)",
    feature_dim=768,
    licence=timm_licence(ARCH, VIT_TAG),
    default_tag=VIT_TAG,
    preprocessing=timm_preprocessing("vit_b16", ARCH),
    weights=f"timm:{ARCH}.{{tag}}",
    cost=VIT_B16_COST,
    probe_feature="class token after the final LayerNorm (timm pre-logits, global_pool='token')",
)
def vit_b16(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """ViT-B/16, supervised ImageNet-21k → 1k (timm AugReg2); any timm tag of vit_base_patch16_224."""
    return build_timm_backbone("vit_b16", ARCH, pretrained=pretrained, weights=weights, tag=tag,
                               default_tag=VIT_TAG, dynamic_img_size=True)


@register_backbone(
    "mae_vit_b16",
    source="timm",
    checkpoint=f"{ARCH}.{MAE_TAG}",
    feature_dim=768,
    licence=timm_licence(ARCH, MAE_TAG),  # cc-by-nc-4.0: non-commercial, as facebookresearch/mae states
    default_tag=MAE_TAG,
    preprocessing=timm_preprocessing("mae_vit_b16", ARCH, allowed_tags=(MAE_TAG,)),
    weights=f"timm:{ARCH}.{{tag}}",
    cost=VIT_B16_COST,  # same architecture as ViT-B/16
    probe_feature="class token after the final LayerNorm (timm pre-logits, global_pool='token')",
)
def mae_vit_b16(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """ViT-B/16 pre-trained by MAE on ImageNet-1k (self-supervised, no fine-tuning)."""
    return build_timm_backbone("mae_vit_b16", ARCH, pretrained=pretrained, weights=weights, tag=tag,
                               default_tag=MAE_TAG, allowed_tags=(MAE_TAG,), dynamic_img_size=True)
