"""The paper's backbones: build, feature dims, preprocessing, local checkpoints, offline weights, MSN mapping.

No network: every model is built with random weights; "published" checkpoints are files the tests write
in the publisher's format (a timm checkpoint with its classifier, a full open_clip CLIP state dict, a
Hugging Face ViTMSNModel state dict) and, for the offline path, in the Hugging Face cache layout.
"""

from __future__ import annotations

import hashlib
import math

import open_clip
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nlbench.backbones import create_backbone, timm_data_config, weights_identity
from nlbench.backbones.clip import _pair, build_tower, tag_config
from nlbench.backbones.msn import MSN_CFG, hf_to_timm, timm_to_hf
from nlbench.cli.main import main
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES

# The documented probe-feature dimension of each backbone (docs/backbones.md).
FEATURE_DIMS = {
    "vit_b16": 768, "mae_vit_b16": 768, "msn_vit_b16": 768, "clip_vit_b16": 768,
    "convnext_t": 768, "resnet50": 2048, "efficientnet_lite0": 1280,
}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(autouse=True)
def _isolated_weights(monkeypatch, tmp_path):
    """No test reads a real cache or weights folder."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NLBENCH_WEIGHTS_DIR", raising=False)
    torch.manual_seed(0)


def features(backbone, x: torch.Tensor) -> torch.Tensor:
    backbone.model.eval()
    with torch.no_grad():
        return backbone.model(x)


def fill_hf_cache(cache, repo_id: str, filename: str, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``filename`` of ``repo_id`` in the Hugging Face cache layout (refs/main → snapshots/<commit>/)."""
    folder = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "snapshots" / commit / filename))


# ------------------------------------------------------------------ registry and CLI listing
def test_all_seven_registered_with_meta(capsys):
    assert set(FEATURE_DIMS) <= set(BACKBONES.names())
    for name, dim in FEATURE_DIMS.items():
        meta = BACKBONES.entry(name).meta
        assert meta["feature_dim"] == dim
        assert meta["source"] and meta["checkpoint"] and meta["licence"]
    assert BACKBONES.entry("mae_vit_b16").meta["licence"] == "cc-by-nc-4.0"  # non-commercial, as timm states
    assert main(["list", "backbones"]) == 0
    out = capsys.readouterr().out
    for name in FEATURE_DIMS:
        assert name in out
    assert "vit_base_patch16_224.augreg2_in21k_ft_in1k" in out and "facebook/vit-msn-base" in out


# ------------------------------------------------------------------ build, dims, preprocessing
@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_builds_random_with_documented_feature_dim(name):
    backbone = create_backbone(name, pretrained=False)
    assert backbone.weights_id == "random"
    assert backbone.feature_dim == FEATURE_DIMS[name]
    out = features(backbone, torch.randn(2, 3, *backbone.input_size))
    assert out.shape == (2, FEATURE_DIMS[name])
    assert torch.isfinite(out).all()
    # Small inputs work too (ViTs resample their position embedding): the CPU throughput runs use 64 px.
    assert features(backbone, torch.randn(1, 3, 64, 64)).shape == (1, FEATURE_DIMS[name])


@pytest.mark.parametrize(("name", "tag", "mean", "std", "interpolation"), [
    ("vit_b16", None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic"),  # AugReg: inception normalisation
    ("mae_vit_b16", None, *IMAGENET, "bicubic"),
    ("msn_vit_b16", None, *IMAGENET, "bilinear"),  # ViTImageProcessor default resample
    ("convnext_t", None, *IMAGENET, "bicubic"),
    ("resnet50", None, *IMAGENET, "bilinear"),  # torchvision weights
    ("resnet50", "a1_in1k", *IMAGENET, "bicubic"),  # timm's recipe
    ("clip_vit_b16", None, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), "bicubic"),
])
def test_preprocessing_follows_the_checkpoint(name, tag, mean, std, interpolation):
    backbone = create_backbone(name, pretrained=False, tag=tag)
    assert backbone.input_size == (224, 224)
    assert backbone.mean == pytest.approx(mean) and backbone.std == pytest.approx(std)
    assert backbone.interpolation == interpolation


@pytest.mark.parametrize(("name", "tag"), [
    ("vit_b16", None), ("mae_vit_b16", None), ("msn_vit_b16", None), ("convnext_t", None), ("resnet50", None),
    ("resnet50", "a1_in1k"), ("efficientnet_lite0", None), ("clip_vit_b16", None),
])
def test_declared_preprocessing_is_the_librarys_own(name, tag):
    """Builds take their preprocessing from the declared facts (``Backbone.from_facts``); the facts must be
    what the library states for the built model: timm's ``resolve_data_config``, open_clip's preprocess config."""
    backbone = create_backbone(name, pretrained=False, tag=tag)
    if name == "clip_vit_b16":
        _, cfg = build_tower(*tag_config(tag))
        library = {"input_size": _pair(cfg["size"]), "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
                   "interpolation": cfg["interpolation"]}
    else:
        library = timm_data_config(backbone.model)
    assert (backbone.input_size, backbone.mean, backbone.std, backbone.interpolation) == (
        library["input_size"], library["mean"], library["std"], library["interpolation"])


def test_conv_nets_run_channels_last_and_vits_use_fused_attention():
    assert create_backbone("convnext_t", pretrained=False).channels_last
    assert create_backbone("resnet50", pretrained=False).channels_last
    vit = create_backbone("vit_b16", pretrained=False)
    assert not vit.channels_last
    assert all(block.attn.fused_attn for block in vit.model.blocks)


def test_unknown_tags_raise_with_choices():
    with pytest.raises(ConfigError, match="unknown tag 'nope'.*augreg2_in21k_ft_in1k"):
        create_backbone("vit_b16", pretrained=False, tag="nope")
    with pytest.raises(ConfigError, match="expected one of: mae"):
        create_backbone("mae_vit_b16", pretrained=False, tag="augreg_in1k")
    with pytest.raises(ConfigError, match="one checkpoint"):
        create_backbone("msn_vit_b16", pretrained=False, tag="x")
    with pytest.raises(ConfigError, match="unknown open_clip tag 'nope'.*openai"):
        create_backbone("clip_vit_b16", pretrained=False, tag="nope")


# ------------------------------------------------------------------ local checkpoint files
@pytest.mark.parametrize(("name", "suffix"), [
    ("vit_b16", ".safetensors"), ("mae_vit_b16", ".pth"), ("msn_vit_b16", ".safetensors"),
    ("clip_vit_b16", ".pth"), ("convnext_t", ".safetensors"), ("resnet50", ".pth"),
    ("efficientnet_lite0", ".safetensors"),
])
def test_local_checkpoint_gives_identical_outputs(tmp_path, name, suffix):
    source = create_backbone(name, pretrained=False)
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    loaded = create_backbone(name, weights=str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert loaded.weights_id == f"file:{digest}" == weights_identity(name, None, path)  # the feature cache's key
    assert loaded.weights_files == (str(path),)
    x = torch.randn(1, 3, 64, 64)
    # ``loaded`` was built with fresh random weights before the file was read: equal outputs mean the load worked.
    assert torch.equal(features(source, x), features(loaded, x))


def test_timm_checkpoint_with_classifier_loads_without_it(tmp_path):
    published = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    path = tmp_path / "model.safetensors"
    save_file(published.state_dict(), str(path))
    backbone = create_backbone("resnet50", weights=str(path))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = published.forward_head(published.forward_features(x), pre_logits=True)
    assert torch.allclose(features(backbone, x), expected, atol=1e-5)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "convnext.safetensors"
    save_file(create_backbone("convnext_t", pretrained=False).model.state_dict(), str(path))
    with pytest.raises(ConfigError, match="resnet50.*does not fit the model.*missing"):
        create_backbone("resnet50", weights=str(path))


def test_missing_weights_file():
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("vit_b16", weights="/nonexistent/vit.safetensors")


# ------------------------------------------------------------------ offline: HF cache, weights folder, errors
def test_offline_reads_the_hugging_face_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    published = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    fill_hf_cache(cache, "timm/resnet50.tv_in1k", "model.safetensors", published.state_dict())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    backbone = create_backbone("resnet50")  # pretrained, HF_HUB_OFFLINE=1
    assert backbone.weights_id == "timm:resnet50.tv_in1k" and str(cache) in backbone.weights_files[0]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = published.forward_head(published.forward_features(x), pre_logits=True)
    assert torch.allclose(features(backbone, x), expected, atol=1e-5)


@pytest.mark.parametrize(("name", "tag", "hub", "command"), [
    ("vit_b16", None, "timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "nlbench fetch-weights --backbones vit_b16"),
    ("resnet50", "a1_in1k", "timm/resnet50.a1_in1k", "nlbench fetch-weights --backbones resnet50@a1_in1k"),
    ("mae_vit_b16", None, "timm/vit_base_patch16_224.mae", "nlbench fetch-weights --backbones mae_vit_b16"),
    ("msn_vit_b16", None, "facebook/vit-msn-base", "nlbench fetch-weights --backbones msn_vit_b16"),
    ("clip_vit_b16", None, "timm/vit_base_patch16_clip_224.openai", "nlbench fetch-weights --backbones clip_vit_b16"),
])
def test_missing_weights_name_backbone_hub_file_and_command(name, tag, hub, command):
    with pytest.raises(ConfigError) as info:
        create_backbone(name, tag=tag)
    message = str(info.value)
    assert f"backbone {name!r}" in message and hub in message and f"`{command}`" in message
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_fetch_weights_fills_a_weights_folder_that_works_offline(tmp_path, monkeypatch, capsys):
    cache, folder = tmp_path / "hf", tmp_path / "weights"
    published = timm.create_model("resnet50", pretrained=False, num_classes=1000).eval()
    fill_hf_cache(cache, "timm/resnet50.tv_in1k", "model.safetensors", published.state_dict())
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE")  # fetch-weights refuses to run offline; the file is cached already
    assert main(["fetch-weights", "--backbones", "resnet50", "--weights-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    target = folder / "resnet50@tv_in1k.safetensors"
    assert target.is_file() and str(target) in out and "model.safetensors" in out

    # A compute node: offline, empty HF cache, the weights folder only.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("NLBENCH_WEIGHTS_DIR", str(folder))
    backbone = create_backbone("resnet50")
    assert backbone.weights_files == (str(target),)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = published.forward_head(published.forward_features(x), pre_logits=True)
    assert torch.allclose(features(backbone, x), expected, atol=1e-5)


def test_fetch_weights_refuses_offline_and_unknown_names(capsys):
    assert main(["fetch-weights", "--backbones", "resnet50"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert main(["fetch-weights", "--backbones", "resnet5"]) == 2
    assert "unknown backbone 'resnet5'" in capsys.readouterr().err


# ------------------------------------------------------------------ MSN: Hugging Face names → timm
def hf_vit_state(depth: int, dim: int, patch: int, tokens: int, mlp: int, prefix: str = "") -> dict:
    """A random state dict with Hugging Face ViTMSNModel names and shapes."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    state = {
        "embeddings.cls_token": r(1, 1, dim), "embeddings.position_embeddings": r(1, tokens, dim),
        "embeddings.patch_embeddings.projection.weight": r(dim, 3, patch, patch),
        "embeddings.patch_embeddings.projection.bias": r(dim),
        "layernorm.weight": 1 + r(dim), "layernorm.bias": r(dim),
    }
    for i in range(depth):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            state[p + f"attention.attention.{part}.weight"] = r(dim, dim)
            state[p + f"attention.attention.{part}.bias"] = r(dim)
        state |= {p + "attention.output.dense.weight": r(dim, dim), p + "attention.output.dense.bias": r(dim),
                  p + "intermediate.dense.weight": r(mlp, dim), p + "intermediate.dense.bias": r(mlp),
                  p + "output.dense.weight": r(dim, mlp), p + "output.dense.bias": r(dim),
                  p + "layernorm_before.weight": 1 + r(dim), p + "layernorm_before.bias": r(dim),
                  p + "layernorm_after.weight": 1 + r(dim), p + "layernorm_after.bias": r(dim)}
    return {prefix + k: v for k, v in state.items()}


def hf_vit_forward(s: dict, x: torch.Tensor, *, heads: int, patch: int, eps: float = 1e-6) -> torch.Tensor:
    """The Hugging Face ViT encoder written out by hand with separate q, k, v: class token after the final norm."""
    dim = s["embeddings.cls_token"].shape[-1]
    h = F.conv2d(x, s["embeddings.patch_embeddings.projection.weight"],
                 s["embeddings.patch_embeddings.projection.bias"], stride=patch)
    h = h.flatten(2).transpose(1, 2)  # (B, N, D)
    h = torch.cat([s["embeddings.cls_token"].expand(len(x), -1, -1), h], 1) + s["embeddings.position_embeddings"]
    depth = len({k.split(".")[2] for k in s if k.startswith("encoder.layer.")})
    hd = dim // heads
    for i in range(depth):
        p = f"encoder.layer.{i}."

        def lin(t, name, p=p):
            return t @ s[p + name + ".weight"].T + s[p + name + ".bias"]

        a = F.layer_norm(h, (dim,), s[p + "layernorm_before.weight"], s[p + "layernorm_before.bias"], eps)
        q, k, v = (lin(a, f"attention.attention.{n}").view(len(x), -1, heads, hd).transpose(1, 2)
                   for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
        h = h + lin((att @ v).transpose(1, 2).reshape(len(x), -1, dim), "attention.output.dense")
        m = F.layer_norm(h, (dim,), s[p + "layernorm_after.weight"], s[p + "layernorm_after.bias"], eps)
        h = h + lin(F.gelu(lin(m, "intermediate.dense")), "output.dense")
    h = F.layer_norm(h, (dim,), s["layernorm.weight"], s["layernorm.bias"], eps)
    return h[:, 0]


def test_msn_mapping_matches_the_hand_computed_encoder():
    # A small ViT (2 layers, width 64, 4 heads, 32-px input, 16-px patches): same code path, fast.
    state = hf_vit_state(depth=2, dim=64, patch=16, tokens=5, mlp=256, prefix="vit.")
    state["vit.embeddings.mask_token"] = torch.zeros(1, 1, 64)  # present in some HF checkpoints: dropped
    model = timm.models.VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=2, num_heads=4,
                                          num_classes=0).eval()
    mapped = hf_to_timm(state)
    assert mapped["blocks.1.attn.qkv.weight"].shape == (192, 64)
    key = state["vit.encoder.layer.1.attention.attention.key.weight"]
    assert torch.equal(mapped["blocks.1.attn.qkv.weight"][64:128], key)  # rows: [q; k; v]
    model.load_state_dict(mapped, strict=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = hf_vit_forward({k[4:]: v for k, v in state.items()}, x, heads=4, patch=16)
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_msn_full_size_round_trip_and_load(tmp_path):
    source = create_backbone("msn_vit_b16", pretrained=False)
    timm_state = source.model.state_dict()
    hf = timm_to_hf(timm_state)
    assert len(hf) == 12 * 16 + 6 and hf["encoder.layer.11.attention.attention.value.weight"].shape == (768, 768)
    back = hf_to_timm(hf)
    assert back.keys() == timm_state.keys() and all(torch.equal(back[k], timm_state[k]) for k in back)
    path = tmp_path / "pytorch_model.bin"  # the Hugging Face file name and format
    torch.save(hf, path)
    loaded = create_backbone("msn_vit_b16", weights=str(path))
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(features(source, x), features(loaded, x))
    assert loaded.mean == MSN_CFG.mean


def test_msn_mapping_is_strict(tmp_path):
    state = hf_vit_state(depth=2, dim=64, patch=16, tokens=5, mlp=256)
    broken = {k: v for k, v in state.items() if k != "encoder.layer.1.attention.attention.value.bias"}
    with pytest.raises(ConfigError, match="layer 1 lacks attention value bias"):
        hf_to_timm(broken)
    with pytest.raises(ConfigError, match="unknown tensor.*encoder.layer.0.extra.weight"):
        hf_to_timm(state | {"encoder.layer.0.extra.weight": torch.zeros(1)})
    path = tmp_path / "small.safetensors"  # right names, wrong model size (width 64, 2 layers): refused
    save_file(state, str(path))
    with pytest.raises(ConfigError, match="msn_vit_b16.*does not fit.*missing: blocks.2"):
        create_backbone("msn_vit_b16", weights=str(path))


# ------------------------------------------------------------------ CLIP: image tower before the projection
def test_clip_tower_is_the_image_encoder_before_its_projection(tmp_path):
    clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    path = tmp_path / "open_clip_pytorch_model.bin"  # a full CLIP state dict, as open_clip publishes it
    torch.save(clip.state_dict(), path)
    backbone = create_backbone("clip_vit_b16", weights=str(path))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = features(backbone, x)
        assert pooled.shape == (2, 768)
        assert torch.allclose(pooled @ clip.visual.proj, clip.encode_image(x), atol=1e-4)


def test_clip_tower_at_other_sizes_equals_a_model_built_for_that_size():
    from timm.layers import resample_abs_pos_embed

    tower = create_backbone("clip_vit_b16", pretrained=False).model.eval()
    small = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True, force_image_size=64).visual
    small.proj = None
    state = {k.removeprefix("visual."): v for k, v in tower.state_dict().items()}
    state["positional_embedding"] = resample_abs_pos_embed(state["positional_embedding"][None], [4, 4], [14, 14],
                                                           num_prefix_tokens=1)[0]
    small.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(tower(x), small.eval()(x), atol=1e-5)
    tower.train()
    tower(x).sum().backward()  # the native-size position embedding is what fine-tuning at 64 px trains
    assert tower.visual.positional_embedding.grad.abs().sum() > 0


# ------------------------------------------------------------------ --weights NAME=PATH for a run
def test_weights_overrides_set_the_grid_field(tmp_path):
    from nlbench.cli.backbones import apply_weights_overrides
    from nlbench.run.grids import expand, load_grid

    grid_file = tmp_path / "g.toml"
    grid_file.write_text('datasets = ["digits"]\nbackbones = ["resnet50", { name = "vit_b16", tag = "augreg_in1k" }]\n'
                         'noise = [{ model = "sym", rate = 0.2 }]\nmethods = [{ method = "ce", mode = "lp" }]\n')
    weights = tmp_path / "vit.safetensors"
    weights.write_bytes(b"x")
    grid = apply_weights_overrides(load_grid(str(grid_file)), [f"vit_b16={weights}"])
    cells = {c.backbone: c for c in expand(grid)}
    assert cells["vit_b16"].backbone_weights == str(weights) and cells["vit_b16"].backbone_tag == "augreg_in1k"
    assert cells["resnet50"].backbone_weights is None
    with pytest.raises(ConfigError, match="write --weights NAME=PATH"):
        apply_weights_overrides(load_grid(str(grid_file)), [str(weights)])
    with pytest.raises(ConfigError, match="'convnext_t' is not in grid"):
        apply_weights_overrides(load_grid(str(grid_file)), [f"convnext_t={weights}"])
    with pytest.raises(ConfigError, match="does not exist"):
        apply_weights_overrides(load_grid(str(grid_file)), [f"vit_b16={tmp_path / 'nope.pth'}"])
