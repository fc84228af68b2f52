"""``nlbench noise audit`` and ``nlbench prepare`` through the real command line entry point."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from nlbench.cli.main import main
from nlbench.datasets import load_dataset
from nlbench.noise import apply_noise


def test_audit_prints_realized_rate_and_largest_entries(capsys, tmp_path):
    plot = tmp_path / "t.png"
    rc = main(["noise", "audit", "--dataset", "digits", "--noise", "asym", "--rate", "0.4", "--seed", "3",
               "--plot", str(plot)])
    out = capsys.readouterr().out
    assert rc == 0
    d = load_dataset("digits")
    clean = np.concatenate([d.train.labels, d.val.labels])
    expected = apply_noise("asym", clean, rate=0.4, seed=3, num_classes=10, dataset="digits")
    assert f"realized rate: {expected.realized_rate:.4f} (train+val)" in out
    assert "convention dataset" in out and expected.digest in out
    # The printed entries are the matrix's largest off-diagonal ones, largest first: digits pairs 1↔7, 3↔8, ….
    entries = [(int(a), int(b), float(p)) for a, b, p in re.findall(r"^\s+(\d+) \S+\s+→\s+(\d+) \S+\s+([\d.]+)$",
                                                                      out, flags=re.M)]
    assert entries and entries == [(a, b, round(p, 4)) for a, b, p in expected.largest_off_diagonal(10)]
    assert {(a, b) for a, b, _ in entries} <= {(1, 7), (7, 1), (3, 8), (8, 3), (4, 9), (9, 4), (5, 6), (6, 5)}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(plot) as im:
        assert im.size[0] > 300


def test_audit_options_and_errors(capsys, tmp_path):
    rc = main(["noise", "audit", "--dataset", "digits", "--noise", "sym", "--rate", "0.5", "--noise-option",
               "convention=exclusive", "--dataset-option", "split_seed=2", "--top", "3", "--cache", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "convention exclusive" in out
    n = sum(len(load_dataset("digits", split_seed=2).split(s)) for s in ("train", "val"))
    assert f"realized rate: {int(0.5 * n) / n:.4f}" in out  # exclusive: exactly ⌊rN⌋ flipped
    assert len(list((tmp_path / "labels" / "digits").glob("*.npz"))) == 1
    assert main(["noise", "audit", "--dataset", "digits", "--noise", "sym", "--rate", "1.5"]) == 2
    assert "outside [0, 1]" in capsys.readouterr().err


def test_asym_on_a_dataset_without_mapping_is_one_clear_error(capsys, tmp_path):
    for part in ("train", "val"):
        for cls in ("a", "b"):
            for i in range(2):
                (tmp_path / part / cls).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / part / cls / f"{i}.png")
    rc = main(["noise", "audit", "--dataset", "folder", "--dataset-option", f"root='{tmp_path}'",
               "--dataset-option", "labels='clean'", "--dataset-option", "test_size=1",
               "--noise", "asym", "--rate", "0.3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("nlbench: error: asym noise has no class mapping for dataset 'folder'")
    assert "mapping_file=PATH" in err and "convention=next" in err and len(err.strip().splitlines()) == 1


def test_prepare_exit_codes(capsys, tmp_path):
    assert main(["prepare", "clothing1m", "--root", str(tmp_path / "absent")]) == 1
    out = capsys.readouterr().out
    assert "[missing] root" in out and "not a folder" in out and "problem(s)" in out
    assert main(["prepare", "nosuchset"]) == 2
    assert "unknown dataset 'nosuchset'" in capsys.readouterr().err


def test_prepare_fashion_mnist_fixture_reports_checksums_and_counts(capsys, tmp_path):
    def idx(name: str, array: np.ndarray) -> None:
        header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
        (tmp_path / name).write_bytes(header + array.astype(np.uint8).tobytes())

    idx("train-images-idx3-ubyte", np.zeros((20, 28, 28)))
    idx("train-labels-idx1-ubyte", np.arange(20) % 10)
    idx("t10k-images-idx3-ubyte", np.zeros((10, 28, 28)))
    idx("t10k-labels-idx1-ubyte", np.arange(10))
    assert main(["prepare", "fashion_mnist", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^\[bad\]\s+train-images-idx3-ubyte: content sha256 .* neither", out, flags=re.M)
    assert re.search(r"^\[bad\]\s+train count: 20 images; the published set has 60,000$", out, flags=re.M)
    assert re.search(r"^\[ok\]\s+folder: ", out, flags=re.M)
