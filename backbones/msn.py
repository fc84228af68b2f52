"""MSN ViT-B/16 (Assran et al. 2022): Hugging Face's ``facebook/vit-msn-base`` mapped onto timm's ViT-B/16.

timm has no MSN tag. The MSN encoder is exactly timm's ``vit_base_patch16_224`` (facebookresearch/msn
``src/deit.py``: ``deit_base``, LayerNorm eps 1e-6, qkv bias, class token, final norm), and Hugging Face
hosts its 600-epoch target encoder converted to transformers' ``ViTMSNModel`` names. ``hf_to_timm``
renames those tensors to timm's and joins the separate query/key/value projections into timm's fused
``qkv``; every tensor must be used and every shape must match (``load_strict``).

Probe feature: the class token after the final LayerNorm, 768-d: the encoder output MSN's own linear
evaluation reads (``linear_eval.py``; its head adds a LayerNorm and an l2 normalisation, ours does not).

Preprocessing: the checkpoint's ``preprocessor_config.json`` (transformers' ``ViTImageProcessor``) gives
ImageNet mean/std, 224 px and bilinear resampling; they are recorded below as a timm ``PretrainedCfg``
from timm's ImageNet constants, so random-weight and offline builds preprocess identically, and each
load from the hub checks the downloaded file against them.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import PretrainedCfg

from nlbench.backbones import Backbone, Preprocessing, load_state_dict_file, register_backbone
from nlbench.backbones.hub import hub_file, load_strict, strip_prefix, weights_dir_file
from nlbench.backbones.timm_models import VIT_B16_COST
from nlbench.errors import ConfigError

ARCH = "vit_base_patch16_224"
HUB_ID = "facebook/vit-msn-base"
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"

MSN_CFG = PretrainedCfg(
    hf_hub_id=HUB_ID,
    architecture=ARCH,
    tag="msn",
    input_size=(3, 224, 224),
    interpolation="bilinear",  # ViTImageProcessor's default resample (PIL 2), as the conversion script used
    crop_pct=0.875,  # MSN linear_eval.py: Resize(256), CenterCrop(224)
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    num_classes=0,
    license="apache-2.0",
    origin_url="https://github.com/facebookresearch/msn",
    paper_ids="arXiv:2204.07141",
)

# Hugging Face ViT(-MSN) names → timm VisionTransformer names. Per-layer names use {i}.
_FIXED = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_LAYER = {
    "layernorm_before": "norm1",
    "attention.output.dense": "attn.proj",
    "layernorm_after": "norm2",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
}
_QKV = ("query", "key", "value")  # timm's fused qkv rows: [q; k; v], each head-major (reshape(3, heads, dim))
# Tensors of a Hugging Face checkpoint that the encoder does not use.
_IGNORED = re.compile(r"^(embeddings\.mask_token|classifier\..*|pooler\..*)$")
_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def hf_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a Hugging Face ``ViTMSNModel`` state dict (optionally prefixed ``vit.``) to timm ViT names.

    query/key/value (D, D) weights and (D,) biases of each layer are concatenated in that order into
    ``blocks.{i}.attn.qkv`` (3D, D) and (3D,). Unused tensors (mask token, classifier, pooler) are
    dropped; any other unknown key, or a layer lacking one of q/k/v or with unequal q/k/v shapes, raises
    ``ConfigError``.
    """
    state = strip_prefix(strip_prefix(state), ("vit.",))
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        if key in _FIXED:
            out[_FIXED[key]] = value
            continue
        if _IGNORED.match(key):
            continue
        m = _LAYER_KEY.match(key)
        if m is None:
            unknown.append(key)
            continue
        layer, name, kind = int(m.group(1)), m.group(2), m.group(3)
        if name in _LAYER:
            out[f"blocks.{layer}.{_LAYER[name]}.{kind}"] = value
        elif name.startswith("attention.attention.") and name.rsplit(".", 1)[1] in _QKV:
            qkv.setdefault((layer, kind), {})[name.rsplit(".", 1)[1]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"MSN checkpoint: unknown tensor(s) {', '.join(sorted(unknown)[:4])}"
                          f"{' …' if len(unknown) > 4 else ''}; expected Hugging Face ViTMSNModel names")
    for (layer, kind), parts in sorted(qkv.items()):
        missing = [p for p in _QKV if p not in parts]
        if missing:
            raise ConfigError(f"MSN checkpoint: layer {layer} lacks attention {'/'.join(missing)} {kind}")
        shapes = {tuple(parts[p].shape) for p in _QKV}
        if len(shapes) != 1:
            raise ConfigError(f"MSN checkpoint: layer {layer} query/key/value {kind} shapes differ: {sorted(shapes)}")
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[p] for p in _QKV], dim=0)
    return out


def timm_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``hf_to_timm``: timm ViT names → Hugging Face ``ViTMSNModel`` names (qkv split in 3)."""
    fixed = {v: k for k, v in _FIXED.items()}
    layer_names = {v: k for k, v in _LAYER.items()}
    out = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        m = re.match(r"^blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m is None:
            raise ConfigError(f"timm ViT tensor {key!r} has no Hugging Face ViTMSN name")
        layer, name, kind = m.groups()
        if name == "attn.qkv":
            for part, chunk in zip(_QKV, value.chunk(3, dim=0), strict=True):
                out[f"encoder.layer.{layer}.attention.attention.{part}.{kind}"] = chunk
        elif name in layer_names:
            out[f"encoder.layer.{layer}.{layer_names[name]}.{kind}"] = value
        else:
            raise ConfigError(f"timm ViT tensor {key!r} has no Hugging Face ViTMSN name")
    return out


def load_msn_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a Hugging Face MSN checkpoint, or a timm-named state dict of this backbone, strictly."""
    state = strip_prefix(load_state_dict_file(path))
    if any(k.startswith(("embeddings.", "encoder.", "vit.")) for k in state):
        state = hf_to_timm(state)
    load_strict(model, state, backbone="msn_vit_b16", source=str(path))


_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def check_preprocessor(path: Path) -> None:
    """Warn when the hub's ``preprocessor_config.json`` disagrees with ``MSN_CFG``'s preprocessing."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    found = {
        "mean": tuple(round(float(v), 4) for v in cfg.get("image_mean", MSN_CFG.mean)),
        "std": tuple(round(float(v), 4) for v in cfg.get("image_std", MSN_CFG.std)),
        "interpolation": _PIL_RESAMPLE.get(cfg.get("resample", 2), str(cfg.get("resample"))),
    }
    expected = {"mean": tuple(round(v, 4) for v in MSN_CFG.mean), "std": tuple(round(v, 4) for v in MSN_CFG.std),
                "interpolation": MSN_CFG.interpolation}
    differ = {k: (found[k], expected[k]) for k in found if found[k] != expected[k]}
    if differ:
        warnings.warn(f"msn_vit_b16: {path} states preprocessing {differ} (found, used); nlbench uses MSN_CFG",
                      stacklevel=3)


@register_backbone(
    "msn_vit_b16",
    source="Hugging Face → timm",
    checkpoint=f"{HUB_ID} mapped onto timm {ARCH}",
    feature_dim=768,
    preprocessing=Preprocessing(MSN_CFG.input_size[1:], MSN_CFG.mean, MSN_CFG.std, MSN_CFG.interpolation),
    weights=f"hf:{HUB_ID}",
    cost=VIT_B16_COST,  # the ViT-B/16 architecture
    licence="apache-2.0 (Hugging Face card); the upstream facebookresearch/msn repository is CC-BY-NC-4.0",
    probe_feature="class token after the final LayerNorm (timm pre-logits, global_pool='token')",
)
def msn_vit_b16(*, pretrained: bool = True, weights: str | None = None, tag: str | None = None) -> Backbone:
    """ViT-B/16 pre-trained by MSN on ImageNet-1k (self-supervised), Hugging Face weights on timm's ViT."""
    if tag is not None:
        raise ConfigError(f"backbone 'msn_vit_b16' has one checkpoint ({HUB_ID}); got tag {tag!r}")
    model = timm.create_model(ARCH, pretrained=False, num_classes=0, dynamic_img_size=True, pretrained_cfg=MSN_CFG)
    files: tuple[str, ...] = ()
    if weights is not None:
        load_msn_weights(model, weights)
        files = (str(weights),)
    elif pretrained:
        path = weights_dir_file("msn_vit_b16", None)
        if path is None:
            path = hub_file("msn_vit_b16", None, None, HUB_ID, HUB_FILENAMES)
            try:
                preprocessor = hub_file("msn_vit_b16", None, None, HUB_ID, (PREPROCESSOR_FILE,))
            except ConfigError:  # only a cross-check: the weights are there, go on without it
                preprocessor = None
            if preprocessor is not None:
                check_preprocessor(preprocessor)
                files = (str(preprocessor),)
        load_msn_weights(model, path)
        files = (str(path), *files)
    model.eval()
    return Backbone.from_facts("msn_vit_b16", model, pretrained=pretrained, weights=weights, tag=tag,
                               weights_files=files)
