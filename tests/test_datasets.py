"""Every dataset loads from tiny files in its real on-disk format, written here, through its real loader."""

from __future__ import annotations

import gzip
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nlbench.datasets import cifarn, load_dataset
from nlbench.datasets.cifar import CIFAR100_COARSE
from nlbench.datasets.fashion_mnist import DEBIAN_DIR
from nlbench.datasets.files import PathImages, load_image
from nlbench.errors import ConfigError
from nlbench.registry import DATASETS, dataset_facts


def assert_facts_describe(d) -> None:
    """The facts the dataset's registration declares (read by the dry run) agree with what its loader gave:
    held in memory exactly when the loader returns image arrays; a real-noise rate only for real noise."""
    facts = dataset_facts(d.name)
    assert facts.in_memory == (d.train.images is not None), d.name
    assert facts.real_noise_rate is None or d.real_noise, d.name


# ------------------------------------------------------------------ CIFAR (python pickle batches)
def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def write_cifar_batch(path: Path, images: np.ndarray, labels, label_key: str, **extra) -> None:
    # The format: a dict with 'data' (N, 3072) uint8 rows = red plane, green plane, blue plane.
    data = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    with open(path, "wb") as f:
        pickle.dump({"data": data, label_key: list(labels), "batch_label": "fixture", **extra}, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 20, test: int = 20) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for b in range(5):
        x, y = cifar_images(per_batch, b), [i % 10 for i in range(per_batch)]
        write_cifar_batch(folder / f"data_batch_{b + 1}", x, y, "labels")
        xs.append(x)
        ys += y
    tx, ty = cifar_images(test, 99), [i % 10 for i in range(test)]
    write_cifar_batch(folder / "test_batch", tx, ty, "labels")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, f, protocol=2)
    return {"x": np.concatenate(xs), "y": np.array(ys), "tx": tx, "ty": np.array(ty)}


def write_cifar100(root: Path, n: int = 200, coarse_ok: bool = True) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    x, y = cifar_images(n, 0), np.arange(n) % 100
    coarse = np.asarray(CIFAR100_COARSE)[y] if coarse_ok else (np.asarray(CIFAR100_COARSE)[y] + 1) % 20
    write_cifar_batch(folder / "train", x, y, "fine_labels", coarse_labels=list(coarse))
    write_cifar_batch(folder / "test", cifar_images(100, 1), range(100), "fine_labels",
                      coarse_labels=list(CIFAR100_COARSE))
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f, protocol=2)
    return {"x": x, "y": y}


def test_cifar10_loads_pickle_batches_with_a_stratified_holdout(tmp_path):
    raw = write_cifar10(tmp_path)
    d = load_dataset("cifar10", root=str(tmp_path), val_size=20)
    assert (d.num_classes, len(d.train), len(d.val), len(d.test)) == (10, 80, 20, 20)
    assert np.bincount(d.val.labels).tolist() == [2] * 10  # stratified: 2 per class
    # Every train/val image is one of the fixture's, with its label, pixel for pixel (HWC, RGB planes).
    lookup = {raw["x"][i].tobytes(): raw["y"][i] for i in range(100)}
    for split in (d.train, d.val):
        for img, y in zip(split.images, split.labels, strict=True):
            assert lookup[img.tobytes()] == y
    assert np.array_equal(d.test.images, raw["tx"]) and d.test.labels.tolist() == raw["ty"].tolist()
    assert d.class_names[9] == "truck" and not d.real_noise
    assert_facts_describe(d)
    # The same files and options give the same identity; another split seed another one.
    assert d.identity == load_dataset("cifar10", root=str(tmp_path / "cifar-10-batches-py"), val_size=20).identity
    assert d.identity != load_dataset("cifar10", root=str(tmp_path), val_size=20, split_seed=1).identity


def test_cifar10_subsample_and_bad_input(tmp_path):
    write_cifar10(tmp_path)
    d = load_dataset("cifar10", root=str(tmp_path), val_size=20, train_size=40, test_size=10)
    assert (len(d.train), len(d.test)) == (40, 10) and np.bincount(d.train.labels).tolist() == [4] * 10
    with pytest.raises(ConfigError, match="train_size"):
        load_dataset("cifar10", root=str(tmp_path), val_size=20, train_size=1000)
    with pytest.raises(ConfigError, match="unexpected keyword"):
        load_dataset("cifar10", root=str(tmp_path), validation=3)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(ConfigError, match="data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path), val_size=20)
    batch.unlink()
    with pytest.raises(ConfigError, match="missing file .*data_batch_3"):
        load_dataset("cifar10", root=str(tmp_path), val_size=20)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no cifar-10-batches-py"):
        load_dataset("cifar10", root=str(tmp_path / "empty"), val_size=20)


def test_cifar10_labels_out_of_range(tmp_path):
    write_cifar10(tmp_path)
    write_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch", cifar_images(2, 0), [0, 10], "labels")
    with pytest.raises(ConfigError, match=r"outside \[0, 10\)"):
        load_dataset("cifar10", root=str(tmp_path), val_size=20)


def test_cifar100_checks_superclasses_against_coarse_labels(tmp_path):
    write_cifar100(tmp_path / "good")
    d = load_dataset("cifar100", root=str(tmp_path / "good"), val_size=100)
    assert (d.num_classes, len(d.train), len(d.val)) == (100, 100, 100)
    write_cifar100(tmp_path / "bad", coarse_ok=False)
    with pytest.raises(ConfigError, match="coarse_labels"):
        load_dataset("cifar100", root=str(tmp_path / "bad"), val_size=100)


# ------------------------------------------------------------------ CIFAR-N (.pt label files)
def test_cifar10n_reads_human_labels_and_checks_the_order(tmp_path):
    raw = write_cifar10(tmp_path)
    rng = np.random.default_rng(0)
    worse = np.where(rng.random(100) < 0.4, (raw["y"] + 3) % 10, raw["y"])
    labels = {"clean_label": raw["y"].copy(), "worse_label": worse, "aggre_label": raw["y"].copy(),
              "random_label1": worse, "random_label2": worse, "random_label3": worse}
    torch.save(labels, tmp_path / "CIFAR-10_human.pt")
    cifarn._warned.discard("cifar10n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = load_dataset("cifar10n", root=str(tmp_path), val_size=20)
    assert d.real_noise and d.identity["label_set"] == "worse_label"
    assert_facts_describe(d)
    # Train holds clean and human labels of the same images: the noisy ones are the file's, reordered alike.
    lookup = {raw["x"][i].tobytes(): i for i in range(100)}
    idx = [lookup[img.tobytes()] for img in d.train.images]
    assert np.array_equal(d.train.noisy_labels, worse[idx]) and np.array_equal(d.train.labels, raw["y"][idx])
    other = load_dataset("cifar10n", root=str(tmp_path), val_size=20, label_set="aggre_label")
    assert not (other.train.noisy_labels != other.train.labels).any()
    assert other.identity != d.identity
    assert any("CC BY-NC 4.0" in str(w.message) for w in caught)  # the licence is said where it is loaded
    shuffled = dict(labels, clean_label=raw["y"][::-1].copy())
    torch.save(shuffled, tmp_path / "CIFAR-10_human.pt")
    with pytest.raises(ConfigError, match="training-set order"):
        load_dataset("cifar10n", root=str(tmp_path), val_size=20)
    with pytest.raises(ConfigError, match="label_set 'noisy_label'"):
        load_dataset("cifar10n", root=str(tmp_path), val_size=20, label_set="noisy_label")


def test_cifar100n_label_file_by_path(tmp_path):
    raw = write_cifar100(tmp_path)
    torch.save({"clean_label": raw["y"], "noisy_label": (raw["y"] + 1) % 100}, tmp_path / "labels.pt")
    with pytest.warns(UserWarning, match="CC BY-NC 4.0"):  # the labels' licence is said on every load
        d = load_dataset("cifar100n", root=str(tmp_path), labels_file=str(tmp_path / "labels.pt"), val_size=100)
    assert np.array_equal(d.train.noisy_labels, (d.train.labels + 1) % 100)
    torch.save({"clean_label": raw["y"][:50], "noisy_label": raw["y"][:50]}, tmp_path / "short.pt")
    with pytest.raises(ConfigError, match="50 clean"):
        load_dataset("cifar100n", root=str(tmp_path), labels_file=str(tmp_path / "short.pt"), val_size=100)


# ------------------------------------------------------------------ Fashion-MNIST (idx files)
def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_fmnist(folder: Path, n: int = 60, t: int = 20) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
    tx, ty = rng.integers(0, 256, (t, 28, 28), dtype=np.uint8), np.arange(t) % 10
    write_idx(folder / "train-images-idx3-ubyte", x, gz=True)
    write_idx(folder / "train-labels-idx1-ubyte", y, gz=False)
    write_idx(folder / "t10k-images-idx3-ubyte", tx, gz=True)
    write_idx(folder / "t10k-labels-idx1-ubyte", ty, gz=True)
    return {"x": x, "y": y, "tx": tx, "ty": ty}


def test_fashion_mnist_reads_idx_files_plain_and_gzipped(tmp_path):
    raw = write_fmnist(tmp_path / "FashionMNIST" / "raw")
    d = load_dataset("fashion_mnist", root=str(tmp_path), val_size=10)
    assert (len(d.train), len(d.val), len(d.test)) == (50, 10, 20)
    assert d.train.images.shape == (50, 28, 28, 1) and d.train.images.dtype == np.uint8
    assert np.array_equal(d.test.images[..., 0], raw["tx"]) and d.test.labels.tolist() == raw["ty"].tolist()
    lookup = {raw["x"][i].tobytes(): raw["y"][i] for i in range(60)}
    assert all(lookup[img[..., 0].tobytes()] == y for img, y in zip(d.train.images, d.train.labels, strict=True))
    assert d.class_names[0] == "T-shirt/top"
    assert_facts_describe(d)


def test_fashion_mnist_truncated_and_mismatched_files(tmp_path):
    write_fmnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-5])
    with pytest.raises(ConfigError, match="train-labels-idx1-ubyte.*truncated"):
        load_dataset("fashion_mnist", root=str(tmp_path), val_size=10)
    write_idx(labels, np.arange(59) % 10, gz=False)
    with pytest.raises(ConfigError, match="60 train images but 59 labels"):
        load_dataset("fashion_mnist", root=str(tmp_path), val_size=10)
    labels.unlink()
    with pytest.raises(ConfigError, match="not found"):
        load_dataset("fashion_mnist", root=str(tmp_path), val_size=10)


@pytest.mark.skipif(not (DEBIAN_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_full_debian_copy():
    d = load_dataset("fashion_mnist")
    assert (len(d.train), len(d.val), len(d.test)) == (57_000, 3_000, 10_000) == dataset_facts(d.name).sizes
    assert np.bincount(d.test.labels).tolist() == [1000] * 10  # the published test set is balanced
    assert np.bincount(d.val.labels).tolist() == [300] * 10
    prepare = DATASETS.entry("fashion_mnist").meta["prepare"]
    findings = prepare(None, False)
    assert all(f.ok for f in findings), [str(f) for f in findings]


# ------------------------------------------------------------------ images by path
def write_image(path: Path, color: tuple[int, int, int], size=(40, 30), fmt="JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def test_path_images_batches_match_tensor_images_interface(tmp_path):
    colors = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (120, 120, 120)]
    paths = []
    for i, c in enumerate(colors):
        p = tmp_path / f"{i}.{'png' if i % 2 else 'jpg'}"
        write_image(p, c, fmt="PNG" if i % 2 else "JPEG")
        paths.append(str(p))
    source = PathImages(paths, torch.device("cpu"), size=16, num_workers=1)
    batches = list(source.batches(np.array([3, 1, 2]), 2, shuffle=False))
    assert [ids.tolist() for _, ids in batches] == [[3, 1], [2]]
    images, ids = batches[0]
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    assert tuple(images[1, :, 8, 8].tolist()) == colors[1]  # PNG: exact
    assert np.abs(images[0, :, 8, 8].numpy().astype(int) - np.array(colors[3])).max() <= 3  # JPEG: near
    shuffled = [i for _, ids in source.batches(np.arange(4), 3, shuffle=True,
                                               generator=torch.Generator().manual_seed(0)) for i in ids.tolist()]
    assert sorted(shuffled) == [0, 1, 2, 3]
    assert load_image(paths[0], 8).shape == (8, 8, 3)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="broken.jpg"):
        load_image(str(tmp_path / "broken.jpg"), 8)


# ------------------------------------------------------------------ Clothing1M (annotation files)
def write_clothing1m(root: Path, *, annotations_dir: bool = False) -> dict:
    ann = root / "annotations" if annotations_dir else root
    ann.mkdir(parents=True, exist_ok=True)
    keys = {part: [f"images/{i % 10}/{i:02d}/{part}{i}.jpg" for i in range(n)]
            for part, n in (("train", 28), ("val", 6), ("test", 5))}
    noisy = {k: i % 14 for i, k in enumerate(keys["train"])}
    clean = {k: (i * 3) % 14 for i, k in enumerate(keys["val"] + keys["test"])}
    (ann / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in noisy.items()))
    (ann / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean.items()))
    for part, name in (("train", "noisy_train"), ("val", "clean_val"), ("test", "clean_test")):
        (ann / f"{name}_key_list.txt").write_text("".join(k + "\n" for k in keys[part]))
    for k in keys["train"][:3] + keys["val"][:2]:
        write_image(root / k, (10, 200, 30))
    return {"keys": keys, "noisy": noisy, "clean": clean}


@pytest.mark.parametrize("annotations_dir", [False, True])
def test_clothing1m_reads_annotation_files(tmp_path, annotations_dir):
    fx = write_clothing1m(tmp_path, annotations_dir=annotations_dir)
    d = load_dataset("clothing1m", root=str(tmp_path))
    assert (d.num_classes, len(d.train), len(d.val), len(d.test)) == (14, 28, 6, 5)
    assert d.real_noise and d.train.labels is None
    assert_facts_describe(d)
    assert d.train.paths[5] == str(tmp_path / fx["keys"]["train"][5])
    assert d.train.noisy_labels.tolist() == [fx["noisy"][k] for k in fx["keys"]["train"]]
    assert d.test.labels.tolist() == [fx["clean"][k] for k in fx["keys"]["test"]]
    images, ids = next(PathImages(d.train.paths, torch.device("cpu"), size=8, num_workers=0)
                       .batches(np.arange(3), 3, shuffle=False))
    assert images.shape == (3, 3, 8, 8) and abs(int(images[0, 1, 4, 4]) - 200) <= 3
    sub = load_dataset("clothing1m", root=str(tmp_path), train_size=14)
    assert np.bincount(sub.train.noisy_labels).tolist() == [1] * 14 and sub.identity != d.identity


def test_clothing1m_bad_annotations(tmp_path):
    write_clothing1m(tmp_path)
    with open(tmp_path / "noisy_train_key_list.txt", "a") as f:
        f.write("images/9/99/unknown.jpg\n")
    with pytest.raises(ConfigError, match="unknown.jpg' has no label in .*noisy_label_kv.txt"):
        load_dataset("clothing1m", root=str(tmp_path))
    (tmp_path / "clean_label_kv.txt").write_text("images/a.jpg 14\n")
    with pytest.raises(ConfigError, match=r"clean_label_kv.txt:1: label 14 is outside \[0, 14\)"):
        load_dataset("clothing1m", root=str(tmp_path))
    (tmp_path / "clean_val_key_list.txt").unlink()
    (tmp_path / "clean_label_kv.txt").write_text("")
    with pytest.raises(ConfigError, match="missing file .*clean_val_key_list.txt"):
        load_dataset("clothing1m", root=str(tmp_path))


# ------------------------------------------------------------------ WebVision (file lists)
def write_webvision(root: Path) -> None:
    info = root / "info"
    info.mkdir(parents=True)
    google = [f"google/q{c + 1:04d}/{i:06d}.jpg {c}" for c in (0, 1, 49, 50, 999) for i in range(4)]
    flickr = [f"flickr/q{c + 1:04d}/{i:06d}.jpg {c}" for c in (0, 50) for i in range(3)]
    val = [f"val{j:06d}.jpg {c}" for j, c in enumerate((0, 1, 49, 50, 999, 0))]
    (info / "train_filelist_google.txt").write_text("\n".join(google) + "\n")
    (info / "train_filelist_flickr.txt").write_text("\n".join(flickr) + "\n")
    (info / "val_filelist.txt").write_text("\n".join(val) + "\n")
    (info / "synsets.txt").write_text("".join(f"n{c:08d} class {c}\n" for c in range(1000)))
    write_image(root / "google" / "q0001" / "000000.jpg", (5, 5, 5))


def test_webvision_full_and_mini_variants(tmp_path):
    write_webvision(tmp_path)
    full = load_dataset("webvision", root=str(tmp_path), val_size=2)
    assert full.num_classes == 1000 and len(full.train) + len(full.val) == 26 and len(full.test) == 6
    assert full.real_noise and full.train.labels is None
    assert_facts_describe(full)
    assert full.test.paths[0] == str(tmp_path / "val_images_256" / "val000000.jpg")
    mini = load_dataset("webvision", root=str(tmp_path), variant="mini", val_size=2)
    # First 50 classes of the Google list: classes 0, 1, 49 (4 images each); Flickr and classes ≥ 50 dropped.
    assert mini.num_classes == 50 and len(mini.train) + len(mini.val) == 12
    assert all("/google/" in p for p in mini.train.paths + mini.val.paths)
    assert sorted(mini.test.labels.tolist()) == [0, 0, 1, 49]
    assert mini.identity != full.identity
    with pytest.raises(ConfigError, match="unknown variant 'tiny'"):
        load_dataset("webvision", root=str(tmp_path), variant="tiny")
    with pytest.raises(ConfigError, match="imagenet_root"):
        load_dataset("webvision", root=str(tmp_path), variant="mini", test_set="imagenet", val_size=2)


def test_webvision_imagenet_validation_classes(tmp_path):
    write_webvision(tmp_path)
    inet = tmp_path / "imagenet"
    for c in range(50):
        write_image(inet / "val" / f"n{c:08d}" / f"ILSVRC2012_val_{c:08d}.JPEG", (c, c, c), size=(8, 8))
    write_image(inet / "val" / "n00000060" / "ILSVRC2012_val_x.JPEG", (0, 0, 0), size=(8, 8))  # class 60: not mini
    d = load_dataset("webvision", root=str(tmp_path), variant="mini", imagenet_root=str(inet), val_size=2)
    assert d.extra_tests["imagenet"].labels.tolist() == list(range(50))
    swapped = load_dataset("webvision", root=str(tmp_path), variant="mini", imagenet_root=str(inet), val_size=2,
                           test_set="imagenet")
    assert len(swapped.test) == 50 and len(swapped.extra_tests["webvision"]) == 4
    (inet / "val" / "n00000007" / "ILSVRC2012_val_00000007.JPEG").unlink()
    (inet / "val" / "n00000007").rmdir()
    with pytest.raises(ConfigError, match="n00000007"):
        load_dataset("webvision", root=str(tmp_path), variant="mini", imagenet_root=str(inet), val_size=2)


# ------------------------------------------------------------------ a user's folder / CSV
def test_folder_dataset_with_noisy_train_labels(tmp_path):
    for part, n in (("train", 4), ("test", 1)):
        for cls in ("cat", "dog"):
            for i in range(n):
                write_image(tmp_path / part / cls / f"{i}.png", (i, 0, 0), size=(6, 6), fmt="PNG")
    d = load_dataset("folder", root=str(tmp_path), val_size=2)
    assert d.class_names == ["cat", "dog"] and d.real_noise
    assert_facts_describe(d)
    assert (len(d.train), len(d.val), len(d.test)) == (6, 2, 2)
    assert d.train.labels is None and d.val.labels is None and d.test.labels.tolist() == [0, 1]
    clean = load_dataset("folder", root=str(tmp_path), val_size=2, labels="clean")
    assert not clean.real_noise and clean.train.labels is not None
    with pytest.raises(ConfigError, match="no val images"):
        load_dataset("folder", root=str(tmp_path))
    (tmp_path / "test" / "bird").mkdir()
    with pytest.raises(ConfigError, match="bird"):
        load_dataset("folder", root=str(tmp_path), val_size=2)


def test_csv_dataset(tmp_path):
    rows = ["path,label,split"]
    for i in range(6):
        write_image(tmp_path / "img" / f"{i}.png", (i, i, i), size=(6, 6), fmt="PNG")
        rows.append(f"img/{i}.png,{'ant' if i % 2 else 'bee'},{'test' if i >= 4 else 'train'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    d = load_dataset("csv", file=str(tmp_path / "labels.csv"), val_size=2)
    assert d.class_names == ["ant", "bee"] and len(d.train) == 2 and len(d.val) == 2
    assert d.test.labels.tolist() == [1, 0] and d.test.paths[0] == str(tmp_path / "img" / "4.png")
    (tmp_path / "bad.csv").write_text("path,label\nimg/0.png,3\nimg/1.png,-1\n")
    with pytest.raises(ConfigError, match=r"row 3: label -1 is outside \[0, 4\)"):
        load_dataset("csv", file=str(tmp_path / "bad.csv"), val_size=1, test_size=1)
    (tmp_path / "gone.csv").write_text("path,label\nimg/none.png,0\nimg/0.png,1\nimg/1.png,0\nimg/2.png,1\n")
    with pytest.raises(ConfigError, match="none.png does not exist"):
        load_dataset("csv", file=str(tmp_path / "gone.csv"), val_size=1, test_size=1, labels="clean")


# ------------------------------------------------------------------ prepare
def test_prepare_reports_missing_and_altered_files(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").unlink()
    findings = {f.item: f for f in DATASETS.entry("cifar10").meta["prepare"](tmp_path, False)}
    assert findings["data_batch_2"].status == "missing"
    assert findings["data_batch_1"].status == "bad" and "c99cafc152244af753f735de768cd75f" in findings[
        "data_batch_1"].detail
    write_clothing1m(tmp_path / "c1m")
    findings = {f.item: f for f in DATASETS.entry("clothing1m").meta["prepare"](tmp_path / "c1m", False)}
    assert findings["clean_val_key_list.txt"].status == "bad" and "14,313" in findings["clean_val_key_list.txt"].detail
    assert findings["val images"].status == "missing" and "4 of all 6" in findings["val images"].detail
    assert findings["noisy_label_kv.txt"].ok
