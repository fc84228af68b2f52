"""The decode paths of images read by path (nlbench/datasets/files.py) on real files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nlbench.datasets.files import (
    DECODERS,
    PathImages,
    _read_bytes,
    decode_batch_on_device,
    decode_tensor,
    default_decoder,
    fit_square,
    load_image,
)
from nlbench.errors import ConfigError


def smooth_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB image (gradients plus low-frequency blobs): JPEG keeps it almost exactly, so decoders
    can be compared pixel by pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for c in range(3):
        fx, fy = rng.uniform(0.5, 2.0, 2)
        channels.append(127 + 100 * np.sin(2 * np.pi * (fx * xx / width + fy * yy / height + c / 3)))
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def halves(width: int, height: int) -> np.ndarray:
    """Left third red, middle third green, right third blue: where a centre crop lands is visible."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 3, 0] = 250
    a[:, width // 3 : 2 * width // 3, 1] = 250
    a[:, 2 * width // 3 :, 2] = 250
    return a


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(120, 90), (90, 120), (64, 64), (300, 200)]):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(smooth_photo(w, h, seed=i)).save(p, quality=95)
        paths.append(str(p))
    png = tmp_path / "4.png"
    Image.fromarray(smooth_photo(80, 60, seed=4)).save(png)
    paths.append(str(png))
    return paths


def test_fit_square_resizes_shorter_side_and_crops_the_centre():
    wide = torch.from_numpy(halves(96, 32)).permute(2, 0, 1)  # 3:1, shorter side 32
    out = fit_square(wide, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    # The centred 32×32 square of the 96×32 image is exactly the green third, then halved.
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert out[1].min() == 250 and out[0].max() == 0 and out[2].max() == 0
    tall = wide.transpose(1, 2).contiguous()  # 32×96 (H×W): rows, not columns, are cropped
    assert fit_square(tall, 16).shape == (3, 16, 16)
    assert torch.equal(fit_square(out, 16), out)  # already the size: unchanged


def test_torchvision_and_pil_decoders_agree_on_real_jpegs(photos):
    # No resize (a 64×64 file fitted to 64): both use libjpeg-turbo's decoder, pixel for pixel equal.
    square = photos[2]
    assert np.array_equal(decode_tensor(square, _read_bytes(square), 64).permute(1, 2, 0).numpy(),
                          load_image(square, 64))
    for path in photos:
        pil = load_image(path, 32).astype(int)
        tv = decode_tensor(path, _read_bytes(path), 32).permute(1, 2, 0).numpy().astype(int)
        assert tv.shape == pil.shape == (32, 32, 3)
        # Shrunk: the same centred square, but PIL decodes files ≥ 2× the target at a reduced DCT scale
        # (draft mode) and resizes with its own filter: close, not equal (measured: mean 0.1-1.7 levels).
        assert np.abs(tv - pil).mean() < 3 and np.abs(tv - pil).max() <= 16, path


def test_decoders_give_the_same_batches_in_the_same_order(photos):
    ids = np.array([4, 0, 3, 1, 2])
    by_decoder = {}
    for decoder in ("pil", "torchvision"):
        source = PathImages(photos, torch.device("cpu"), size=24, num_workers=0, decoder=decoder)
        batches = list(source.batches(ids, 2, shuffle=False))
        assert [b[1].tolist() for b in batches] == [[4, 0], [3, 1], [2]]
        by_decoder[decoder] = torch.cat([b[0] for b in batches])
    a, b = by_decoder["pil"].int(), by_decoder["torchvision"].int()
    assert a.shape == b.shape == (5, 3, 24, 24)
    assert (a - b).abs().float().mean() < 3


def test_batched_device_decoder_on_cpu(photos):
    """decode_batch_on_device is the 'cuda' decoder's main-process step; torchvision's batched
    decode_jpeg also runs on the CPU, so the path (JPEG bytes and a PNG decoded in the worker, mixed in
    one batch) is exercised here and matches the worker-side decode exactly."""
    items = [_read_bytes(p) for p in photos[:4]] + [decode_tensor(photos[4], _read_bytes(photos[4]), 24)]
    batch = decode_batch_on_device(items, photos, 24, torch.device("cpu"))
    assert batch.shape == (5, 3, 24, 24) and batch.dtype == torch.uint8
    for k, path in enumerate(photos):
        assert torch.equal(batch[k], decode_tensor(path, _read_bytes(path), 24)), path


def test_decoder_choice_and_errors(photos, tmp_path):
    assert default_decoder("cpu") == "pil" and default_decoder(torch.device("cuda")) == "cuda"
    assert set(DECODERS) == {"pil", "torchvision", "cuda"}
    assert PathImages(photos, torch.device("cpu")).decoder == "pil"
    with pytest.raises(ConfigError, match="decoder 'nvdec'; expected one of: pil, torchvision, cuda"):
        PathImages(photos, torch.device("cpu"), decoder="nvdec")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        PathImages(photos, torch.device("cpu"), decoder="cuda")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ConfigError, match="broken.jpg"):
        decode_tensor(str(broken), _read_bytes(str(broken)), 8)
    with pytest.raises(ConfigError, match="absent.jpg"):
        _read_bytes(str(tmp_path / "absent.jpg"))
