"""Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) from its raw idx files, gzipped or not.

Looked for, in order: the ``root`` option (the folder of the four files, or torchvision's
``<root>/FashionMNIST/raw``), then Debian's ``dataset-fashion-mnist`` package
(``apt-get install dataset-fashion-mnist`` puts the four ``.gz`` files in /usr/share/datasets/fashion-mnist),
then ``$NLBENCH_DATA/fashion_mnist``. 60k training images (a stratified hold-out of ``val_size`` becomes
the validation split), 10k test; 28×28 grey, kept as (N, 28, 28, 1) uint8 (the batch transform repeats
the channel for RGB backbones).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset, Split, check_size, holdout, stratified_subsample
from nlbench.datasets.files import Finding, arrays_digest, bad, md5_file, missing, ok
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SOURCE = "https://github.com/zalandoresearch/fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
COUNTS = {"train": 60_000, "test": 10_000}
# Published md5 of the upstream .gz files (torchvision/datasets/mnist.py, FashionMNIST.resources).
GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
# sha256 of the decompressed idx files. Debian recompresses the archives (other .gz md5s), so the content
# is what both copies share; computed from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1.
CONTENT_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
APT_HINT = "apt-get install dataset-fashion-mnist"


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _folders(root: str | Path | None) -> list[Path]:
    if root is not None:
        base = Path(root).expanduser()
        return [base, base / "FashionMNIST" / "raw", base / "raw"]
    out = [DEBIAN_DIR]
    if os.environ.get("NLBENCH_DATA"):
        out.append(Path(os.environ["NLBENCH_DATA"]) / "fashion_mnist")
    return out


def find_files(root: str | Path | None) -> dict[str, Path]:
    """The four idx files (plain or .gz) from the first folder that holds all of them."""
    folders = _folders(root)
    for folder in folders:
        found = {k: _file_in(folder, stem) for k, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
    looked = ", ".join(str(f) for f in folders)
    hint = f"pass root=DIR with the four idx files of {SOURCE}" if root is not None else \
        f"`{APT_HINT}` installs them in {DEBIAN_DIR}, or pass root=DIR"
    raise ConfigError(f"dataset 'fashion_mnist': idx files {', '.join(FILES.values())} (.gz or not) not found in "
                      f"{looked}; {hint}")


def _open(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise ConfigError(f"cannot read {path} (truncated or not gzip): {exc}") from None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format: 2 zero bytes, a type byte 0x08 = uint8, a dimension count,
    big-endian int32 sizes, then the data) as a uint8 array."""
    data = _open(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ConfigError(f"{path} is not an idx file (bad magic number)")
    if data[2] != 0x08:
        raise ConfigError(f"{path}: idx type 0x{data[2]:02x}; expected 0x08 (unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError(f"{path}: truncated idx header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise ConfigError(f"{path}: header says {shape} ({expected:,} bytes) but the file holds "
                          f"{len(data) - header:,} bytes (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion_mnist(root: str | Path | None) -> dict:
    files = find_files(root)
    arrays = {k: read_idx(p) for k, p in files.items()}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if x.ndim != 3 or y.ndim != 1:
            raise ConfigError(f"{files[part + '_images']}: expected images (N, H, W) and labels (N,); "
                              f"got {x.shape} and {y.shape}")
        if len(x) != len(y):
            raise ConfigError(f"{files[part + '_images'].parent}: {len(x)} {part} images but {len(y)} labels")
        if len(y) and y.max() >= len(CLASSES):
            raise ConfigError(f"{files[part + '_labels']}: label {y.max()} outside [0, {len(CLASSES)})")
    return {**arrays, "files": files}


@register_dataset("fashion_mnist", source=SOURCE, classes=10, licence="MIT (Zalando Research)",
                  prepare=lambda root, download: prepare_fashion_mnist(root, download),
                  sizes=(57_000, 3_000, 10_000), in_memory=True)  # 60k training images − 3k held out, 10k test
def fashion_mnist(*, root: str | None = None, split_seed: int = 0, val_size: int = 3000,
                  train_size: int | None = None, test_size: int | None = None) -> Dataset:
    """Fashion-MNIST: 60k 28×28 grey training images (57k train / 3k val), 10k test, 10 classes; idx files."""
    raw = read_fashion_mnist(root)
    train_x, train_y = raw["train_images"][..., None], raw["train_labels"].astype(np.int64)
    test_x, test_y = raw["test_images"][..., None], raw["test_labels"].astype(np.int64)
    if isinstance(val_size, bool) or not isinstance(val_size, int):
        raise ConfigError(f"dataset 'fashion_mnist': val_size must be an integer; got {val_size!r}")
    keep, val_idx = holdout(train_y, val_size, split_seed)
    train_size = check_size("fashion_mnist", "train_size", train_size, len(keep))
    test_size = check_size("fashion_mnist", "test_size", test_size, len(test_y))
    keep = keep[stratified_subsample(train_y[keep], train_size, split_seed)]
    test_idx = stratified_subsample(test_y, test_size, split_seed)
    return Dataset(
        name="fashion_mnist", num_classes=10,
        train=Split(labels=train_y[keep], images=train_x[keep]),
        val=Split(labels=train_y[val_idx], images=train_x[val_idx]),
        test=Split(labels=test_y[test_idx], images=test_x[test_idx]),
        class_names=list(CLASSES), hflip=True,
        identity={"dataset": "fashion_mnist", "content": arrays_digest(train_x, train_y, test_x, test_y),
                  "split_seed": split_seed, "val_size": val_size, "train_size": train_size, "test_size": test_size},
    )


def prepare_fashion_mnist(root: Path | None, download: bool) -> list[Finding]:
    """Check the four files: where they are, the published .gz md5 or the known content sha256, counts."""
    if download:
        if root is None:
            raise ConfigError("--download needs --root DIR for fashion_mnist")
        import torchvision  # torchvision: only to download

        for train in (True, False):
            torchvision.datasets.FashionMNIST(str(root), train=train, download=True)
    try:
        files = find_files(root)
    except ConfigError as exc:
        return [missing("fashion_mnist files", str(exc))]
    findings = [ok("folder", str(next(iter(files.values())).parent))]
    for key, path in files.items():
        stem = FILES[key]
        if path.suffix == ".gz" and md5_file(path) == GZ_MD5[stem]:
            findings.append(ok(path.name, f"md5 {GZ_MD5[stem]} as published (torchvision)"))
            continue
        try:
            digest = hashlib.sha256(_open(path)).hexdigest()
        except ConfigError as exc:
            findings.append(bad(path.name, str(exc)))
            continue
        if digest == CONTENT_SHA256[stem]:
            findings.append(ok(path.name, "content sha256 matches the known data (as in Debian's recompressed copy)"))
        else:
            findings.append(bad(path.name, f"content sha256 {digest[:16]}… matches neither the upstream archive nor "
                                           "its known content (truncated or altered)"))
    try:
        raw = read_fashion_mnist(root)
        for part in ("train", "test"):
            n = len(raw[f"{part}_labels"])
            expected = COUNTS[part]
            findings.append(ok(f"{part} count", f"{n:,} images") if n == expected else
                            bad(f"{part} count", f"{n:,} images; the published set has {expected:,}"))
    except ConfigError as exc:
        findings.append(bad("format", str(exc)))
    return findings
