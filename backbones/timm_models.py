"""Shared builder of the timm-hosted backbones (ViT-B/16, MAE ViT-B/16, ConvNeXt-T, ResNet-50).

Each checkpoint is a timm ``arch.tag`` name; timm's pretrained config of that tag gives the hub id, the
licence and the preprocessing (``resolve_data_config``). The model is built with ``num_classes=0``, so
its forward returns timm's pre-logits feature: what the linear probe reads and what the fine-tuning head
sits on. Weights are read from a local file, the weights folder or the Hugging Face cache (``hub.py``) and
loaded strictly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import timm
import torch

from nlbench.backbones import Backbone, BackboneCost, Preprocessing, load_state_dict_file
from nlbench.backbones.hub import hub_file, load_strict, state_mismatch, strip_prefix, weights_dir_file
from nlbench.errors import ConfigError

# timm's hub repositories hold model.safetensors; older ones pytorch_model.bin (timm's own search order).
# The ViT-B/16 architecture's H100 reference figures (docs/performance.md), shared by the families built on it
# (vit_b16, mae_vit_b16 in vit.py; msn_vit_b16 in msn.py). The reference's compilation took 24-31 s; the
# estimate counts the slowest.
VIT_B16_ARCH = "vit_base_patch16_224"
VIT_B16_COST = BackboneCost(VIT_B16_ARCH, 35.1, 8835, 2448, 3142, 9.5, compile_s=31.0)

HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


def pretrained_cfg(arch: str, tag: str):
    """timm's PretrainedCfg of ``arch.tag`` (None when timm does not know the tag)."""
    return timm.models.get_pretrained_cfg(f"{arch}.{tag}")


def timm_tags(arch: str) -> list[str]:
    """The pretrained tags timm knows for ``arch``."""
    return sorted(name.split(".", 1)[1] for name in timm.list_pretrained(f"{arch}.*"))


def resolve_tag(name: str, arch: str, tag: str | None, default_tag: str, allowed: tuple[str, ...] | None) -> str:
    """``tag`` or the default, checked against timm's tags of ``arch`` (and ``allowed`` where the family
    fixes its checkpoint)."""
    tag = default_tag if tag is None else tag
    choices = list(allowed) if allowed is not None else timm_tags(arch)
    if tag not in choices:
        raise ConfigError(f"backbone {name!r}: unknown tag {tag!r}; expected one of: {', '.join(choices)}")
    return tag


def drop_classifier(state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Remove the classifier tensors named by the model's pretrained config (head, head.fc, fc, …)."""
    classifiers = model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
    own = set(model.state_dict())
    drop = {f"{c}.{p}" for c in classifiers for p in ("weight", "bias")} - own
    return {k: v for k, v in state.items() if k not in drop}


def load_timm_weights(model: torch.nn.Module, path: str | Path, *, backbone: str) -> None:
    """Load a checkpoint file strictly into a timm model built with ``num_classes=0``.

    Accepts timm's hub checkpoints (classifier dropped) and a backbone's own ``state_dict``; other layouts
    (an original repository's, e.g. MAE's ``mae_pretrain_vit_base.pth``) go through timm's
    ``checkpoint_filter_fn`` of the architecture first, where it has one.
    """
    state = drop_classifier(strip_prefix(load_state_dict_file(path)), model)
    if state_mismatch(model, state):
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = drop_classifier(filter_fn(state, model), model)
            except Exception:  # a format the filter does not know either: report the original mismatch below
                pass
    load_strict(model, state, backbone=backbone, source=str(path))


def build_timm_backbone(
    name: str,
    arch: str,
    *,
    pretrained: bool,
    weights: str | None,
    tag: str | None,
    default_tag: str,
    allowed_tags: tuple[str, ...] | None = None,
    channels_last: bool = False,
    **model_kwargs,
) -> Backbone:
    """A ``Backbone`` of timm's ``arch.tag`` with weights from ``weights``, the weights folder or the hub
    (``Backbone.from_facts``: preprocessing and weights identity from the registered facts of ``name``)."""
    tag = resolve_tag(name, arch, tag, default_tag, allowed_tags)
    cfg = pretrained_cfg(arch, tag)
    # Built with the tag's pretrained config attached (no download), so that resolve_data_config reads the
    # checkpoint's own preprocessing even for random weights.
    model = timm.create_model(f"{arch}.{tag}", pretrained=False, num_classes=0, **model_kwargs)
    path = weights
    if weights is None and pretrained:
        path = weights_dir_file(name, tag)
        if path is None:
            if not cfg.hf_hub_id:
                raise ConfigError(f"backbone {name!r}: timm tag {tag!r} has no hub copy; pass its weights as a file")
            path = hub_file(name, tag, default_tag, cfg.hf_hub_id, HUB_FILENAMES)
    if path is not None:
        load_timm_weights(model, path, backbone=name)
    model.eval()
    return Backbone.from_facts(name, model, pretrained=pretrained, weights=weights, tag=tag,
                               channels_last=channels_last, weights_files=(str(path),) if path is not None else ())


def timm_preprocessing(name: str, arch: str, allowed_tags: tuple[str, ...] | None = None
                       ) -> Callable[[str], Preprocessing]:
    """The ``preprocessing`` fact of a timm family: tag → input size, mean/std and interpolation of timm's
    pretrained config of ``arch.tag`` (what ``resolve_data_config`` gives the built model), read without
    building it; an unknown tag raises ConfigError with the choices."""

    def preprocessing(tag: str) -> Preprocessing:
        cfg = pretrained_cfg(arch, resolve_tag(name, arch, tag, tag, allowed_tags))
        return Preprocessing(tuple(cfg.input_size[1:]), cfg.mean, cfg.std, cfg.interpolation)

    return preprocessing


def timm_licence(arch: str, tag: str) -> str:
    """The licence timm's pretrained config records for ``arch.tag`` (the hub card's)."""
    cfg = pretrained_cfg(arch, tag)
    return (cfg.license if cfg is not None else None) or "not stated"
