"""CLIP ViT-B/16 image tower (OpenAI weights by default) through open_clip.

Probe feature: the pooled class token after ``ln_post``, **before** the projection into the joint
image-text space, 768-d. We take it before the projection because (1) the CLIP paper's own linear probes
do (Radford et al. 2021, appendix A.3: for CLIP-ViT "the features before the linear projection to the
embedding space"), and (2) the projection is a linear map trained for the text contrast: a linear probe
on top of it can represent nothing the probe on its input cannot, while dropping it keeps 768 dimensions
instead of 512. The projection matrix is removed (``visual.proj = None``), so fine-tuning trains the
same tower the probe reads.

Architecture and preprocessing come from open_clip: the model config ``ViT-B-16`` and the pretrained
config of the tag (mean/std, interpolation, resize mode, and QuickGELU, which the OpenAI weights need).
Only the image tower is kept. At other input sizes than the checkpoint's the position embedding is
interpolated per call (timm's ``resample_abs_pos_embed``), as the timm ViTs do with ``dynamic_img_size``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from nlbench.backbones import Backbone, BackboneCost, Preprocessing, load_state_dict_file, register_backbone
from nlbench.backbones.hub import hub_file, load_strict, strip_prefix, weights_dir_file
from nlbench.errors import ConfigError

MODEL = "ViT-B-16"
DEFAULT_TAG = "openai"
# open_clip's file names in a hub repository: safetensors first, the torch pickle otherwise.
HUB_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class OpenCLIPImageTower(nn.Module):
    """open_clip's ``VisionTransformer`` without its projection: (B, 3, H, W) → (B, width) pooled features.

    H and W must be multiples of the patch size; at the checkpoint's size this is exactly
    ``visual(x)``, at others the position embedding is resampled for the call (gradients flow to it).
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        visual.proj = None  # pre-projection features (module docstring)
        self.visual = visual
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.patch = tuple(int(p) for p in visual.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2] // self.patch[0], x.shape[-1] // self.patch[1])
        if grid == self.grid:
            return self.visual(x)
        from timm.layers import resample_abs_pos_embed

        pos = self.visual.positional_embedding  # (1 + gh·gw, width)
        resampled = resample_abs_pos_embed(pos[None], new_size=list(grid), old_size=list(self.grid),
                                           num_prefix_tokens=1)[0].to(pos.dtype)
        return torch.func.functional_call(self.visual, {"positional_embedding": resampled}, (x,), strict=False)


@contextlib.contextmanager
def _quiet_random_init() -> Iterator[None]:
    """open_clip logs a warning when it builds a model without weights; we load them ourselves."""

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    root, flt = logging.getLogger(), _Drop()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def tag_config(tag: str | None) -> tuple[str, dict]:
    """(tag, open_clip's pretrained config of ``ViT-B-16``/tag); ConfigError listing the tags if unknown."""
    import open_clip

    tag = DEFAULT_TAG if tag is None else tag
    cfg = open_clip.get_pretrained_cfg(MODEL, tag)
    if not cfg:
        raise ConfigError(f"backbone 'clip_vit_b16': unknown open_clip tag {tag!r}; expected one of: "
                          f"{', '.join(open_clip.list_pretrained_tags_by_model(MODEL))}")
    return tag, cfg


def image_tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A full open_clip CLIP state dict (or a tower's own) → the keys of ``OpenCLIPImageTower``.

    Keeps ``visual.*`` (text tower, logit scale dropped), drops the projection ``visual.proj``; a state
    dict of the bare ``VisionTransformer`` (no ``visual.`` prefix) gets the prefix.
    """
    state = strip_prefix(state)
    if not any(k.startswith("visual.") for k in state):
        state = {f"visual.{k}": v for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith("visual.") and k != "visual.proj"}


def tag_preprocessing(tag: str) -> Preprocessing:
    """The ``preprocessing`` fact: what ``build_tower`` gives a tag, read from open_clip's configs without
    building the model (image size of the ``ViT-B-16`` config; mean/std and interpolation of the tag's
    pretrained config, open_clip's OpenAI defaults where it states none)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    _, cfg = tag_config(tag)
    size = open_clip.get_model_config(MODEL)["vision_cfg"]["image_size"]
    return Preprocessing(_pair(size), cfg.get("mean") or OPENAI_DATASET_MEAN, cfg.get("std") or OPENAI_DATASET_STD,
                         cfg.get("interpolation") or "bicubic")


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def hub_location(cfg: dict) -> tuple[str, str]:
    """open_clip's ``hf_hub`` field, 'org/repo/' or 'org/repo/filename' → (repo id, filename or '')."""
    parts = (cfg.get("hf_hub") or "").strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def build_tower(tag: str, cfg: dict) -> tuple[OpenCLIPImageTower, dict]:
    """Random-weight image tower of ``ViT-B-16`` for ``tag`` and open_clip's preprocessing config."""
    import open_clip

    force = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    with _quiet_random_init():
        model = open_clip.create_model(MODEL, pretrained=None, force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                                       force_preprocess_cfg=force)
    preprocess = open_clip.get_model_preprocess_cfg(model)
    return OpenCLIPImageTower(model.visual), preprocess


@register_backbone(
    "clip_vit_b16",
    source="open_clip",
    checkpoint=f"{MODEL} / {DEFAULT_TAG}, image tower (tag selectable)",
    feature_dim=768,
    licence="MIT (openai/CLIP)",
    default_tag=DEFAULT_TAG,
    preprocessing=tag_preprocessing,
    weights=f"open_clip:{MODEL}/{{tag}}",
    cost=BackboneCost("vit_base_patch16_clip_224", 35.1, 8796, 2425, None, 9.6),  # H100 (docs/performance.md)
    probe_feature="class token after ln_post, before the 768→512 projection (CLIP paper's linear-probe feature)",
)
def clip_vit_b16(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """CLIP ViT-B/16 image tower (OpenAI, 400M image-text pairs); any open_clip tag of ViT-B-16."""
    tag, cfg = tag_config(tag)
    tower, _ = build_tower(tag, cfg)
    path: Path | str | None = weights
    if weights is None and pretrained:
        path = weights_dir_file("clip_vit_b16", tag)
        if path is None:
            repo, filename = hub_location(cfg)
            if not repo:
                raise ConfigError(f"backbone 'clip_vit_b16': open_clip tag {tag!r} has no hub copy; "
                                  f"pass its weights as a file")
            path = hub_file("clip_vit_b16", tag, DEFAULT_TAG, repo, (filename,) if filename else HUB_FILENAMES)
    if path is not None:
        load_strict(tower, image_tower_state(load_state_dict_file(path)), backbone="clip_vit_b16", source=str(path))
    tower.eval()
    return Backbone.from_facts("clip_vit_b16", tower, pretrained=pretrained, weights=weights, tag=tag,
                               weights_files=(str(path),) if path is not None else ())

