"""CIFAR-10 and CIFAR-100 from torchvision's on-disk format (the python pickle batches).

``root`` is the folder holding ``cifar-10-batches-py/`` / ``cifar-100-python/`` (what
``torchvision.datasets.CIFAR10(root, download=True)`` creates) or that folder itself; without it,
``$NLBENCH_DATA/cifar10`` / ``$NLBENCH_DATA/cifar100``. The 50k training images are split into 47.5k
train / 2.5k validation, stratified, with a fixed seed, as the paper does ("# train 47.5K, # valid
2.5K"); the 10k test images are the test split.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset, Split, check_size, holdout, stratified_subsample
from nlbench.datasets.files import Finding, arrays_digest, check_md5, missing, ok, resolve_root
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

# Fine label → coarse (super-class) label of CIFAR-100, as stored in the dataset's own 'coarse_labels'
# field (fine labels in alphabetical order: apple, aquarium_fish, baby, bear, beaver, …; coarse labels:
# aquatic_mammals, fish, flowers, food_containers, fruit_and_vegetables, …). The loader checks it
# against every training image's 'coarse_labels' entry.
CIFAR100_COARSE: tuple[int, ...] = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)
# The 20 super-classes as groups of 5 fine labels, each group in increasing index order; e.g. group 0
# (aquatic mammals) = beaver 4, dolphin 30, otter 55, seal 72, whale 95.
CIFAR100_SUPERCLASSES: tuple[tuple[int, ...], ...] = tuple(
    tuple(f for f in range(100) if CIFAR100_COARSE[f] == c) for c in range(20)
)

# torchvision's published md5 of each file (torchvision/datasets/cifar.py).
_FILES = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                  ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                  ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                  ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                  ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")],
        "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
        "meta": ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", "label_names"),
        "label_key": "labels",
        "classes": 10,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
        "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
        "meta": ("meta", "7973b15100ade9c7d40fb424638fde48", "fine_label_names"),
        "label_key": "fine_labels",
        "classes": 100,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    },
}
COUNTS = {"train": 50_000, "test": 10_000}


def cifar_folder(name: str, root: str | Path | None) -> Path:
    """The ``cifar-10-batches-py`` / ``cifar-100-python`` folder under ``root`` (or ``root`` itself)."""
    base = resolve_root(name, root)
    folder = _FILES[name]["folder"]
    if base.name == folder:
        return base
    if (base / folder).is_dir():
        return base / folder
    raise ConfigError(f"dataset {name!r}: no {folder}/ folder in {base} (the torchvision layout: "
                      f"extract {_FILES[name]['url']} there, or run `nlbench prepare {name} --root {base} --download`)")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"missing file {path}")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot read CIFAR batch {path} (truncated or not a CIFAR pickle): {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"CIFAR batch {path} holds a {type(obj).__name__}, not a dict")
    # The original batches were pickled by Python 2: keys may be bytes.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batches(folder: Path, files: list[tuple[str, str]], label_key: str, num_classes: int,
                  extra_key: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images (N, 32, 32, 3) uint8, labels (N,) int64, extra labels or None) of the listed batch files."""
    images, labels, extra = [], [], []
    for name, _ in files:
        path = folder / name
        batch = _unpickle(path)
        for key in ("data", label_key):
            if key not in batch:
                raise ConfigError(f"CIFAR batch {path} has no {key!r} entry (keys: {', '.join(map(str, batch))})")
        data = np.asarray(batch["data"])
        y = np.asarray(batch[label_key], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ConfigError(f"CIFAR batch {path}: 'data' must be uint8 (N, 3072); got {data.dtype} {data.shape}")
        if len(y) != len(data):
            raise ConfigError(f"CIFAR batch {path}: {len(data)} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ConfigError(f"CIFAR batch {path}: labels outside [0, {num_classes}): [{y.min()}, {y.max()}]")
        # Rows hold the red, green and blue planes of a 32×32 image one after another.
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
        if extra_key is not None and extra_key in batch:
            extra.append(np.asarray(batch[extra_key], dtype=np.int64))
    ex = np.concatenate(extra) if extra and len(extra) == len(files) else None
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels), ex


def read_cifar(name: str, root: str | Path | None) -> dict:
    """The raw arrays of CIFAR ``name``: train/test images and labels, class names."""
    spec = _FILES[name]
    folder = cifar_folder(name, root)
    meta_file, _, names_key = spec["meta"]
    meta = _unpickle(folder / meta_file)
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])]
    if len(class_names) != spec["classes"]:
        raise ConfigError(f"{folder / meta_file}: {names_key!r} lists {len(class_names)} classes; "
                          f"{name} has {spec['classes']}")
    coarse_key = "coarse_labels" if name == "cifar100" else None
    train_x, train_y, coarse = _read_batches(folder, spec["train"], spec["label_key"], spec["classes"], coarse_key)
    test_x, test_y, _ = _read_batches(folder, spec["test"], spec["label_key"], spec["classes"])
    if coarse is not None:
        wrong = np.flatnonzero(np.asarray(CIFAR100_COARSE)[train_y] != coarse)
        if len(wrong):
            raise ConfigError(f"{folder}: 'coarse_labels' disagree with the CIFAR-100 super-class table at "
                              f"{len(wrong)} images (first: index {wrong[0]}); the files are not CIFAR-100's")
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "classes": class_names}


def cifar_dataset(
    name: str, raw: dict, *, split_seed: int, val_size: int, train_size: int | None, test_size: int | None,
    train_noisy: np.ndarray | None = None, identity_extra: dict | None = None,
) -> Dataset:
    """Split the raw CIFAR arrays into train / val (stratified hold-out of ``val_size``) / test, with
    optional seeded, stratified subsamples of train and test. ``train_noisy`` (50k,): human labels of
    the whole training set (CIFAR-N), split the same way."""
    train_x, train_y = raw["train_x"], raw["train_y"]
    n = len(train_y)
    if isinstance(val_size, bool) or not isinstance(val_size, int):
        raise ConfigError(f"dataset {name!r}: val_size must be an integer; got {val_size!r}")
    keep, val_idx = holdout(train_y, val_size, split_seed)
    train_size = check_size(name, "train_size", train_size, len(keep))
    test_size = check_size(name, "test_size", test_size, len(raw["test_y"]))
    keep = keep[stratified_subsample(train_y[keep], train_size, split_seed)]
    test_idx = stratified_subsample(raw["test_y"], test_size, split_seed)

    def split(x: np.ndarray, y: np.ndarray, idx: np.ndarray, noisy: np.ndarray | None = None) -> Split:
        return Split(labels=y[idx], images=x[idx], noisy_labels=None if noisy is None else noisy[idx])

    identity = {
        "dataset": name, "content": arrays_digest(train_x, train_y, raw["test_x"], raw["test_y"]), "train_items": n,
        "split_seed": split_seed, "val_size": val_size, "train_size": train_size, "test_size": test_size,
        **(identity_extra or {}),
    }
    return Dataset(
        name=name, num_classes=len(raw["classes"]),
        train=split(train_x, train_y, keep, train_noisy), val=split(train_x, train_y, val_idx, train_noisy),
        test=split(raw["test_x"], raw["test_y"], test_idx),
        class_names=raw["classes"], hflip=True, real_noise=train_noisy is not None, identity=identity,
    )


def prepare_cifar(name: str, root: Path | None, download: bool) -> list[Finding]:
    """Check the CIFAR files (names and torchvision's md5s); download through torchvision when asked."""
    spec = _FILES[name]
    if download:
        if root is None:
            raise ConfigError(f"--download needs --root DIR for {name}")
        import torchvision  # torchvision: only to download

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(root), train=True, download=True)
    try:
        folder = cifar_folder(name, root)
    except ConfigError as exc:
        return [missing(spec["folder"], f"{exc}. Get it from {spec['url']} (or add --download)")]
    findings = [ok(spec["folder"], f"found at {folder}")]
    for fname, md5 in [*spec["train"], *spec["test"], spec["meta"][:2]]:
        findings.append(check_md5(folder / fname, md5, fname))
    return findings


def _register(name: str, classes: int) -> None:
    def loader(*, root: str | None = None, split_seed: int = 0, val_size: int = 2500,
               train_size: int | None = None, test_size: int | None = None) -> Dataset:
        return cifar_dataset(name, read_cifar(name, root), split_seed=split_seed, val_size=val_size,
                             train_size=train_size, test_size=test_size)

    loader.__doc__ = (f"{'CIFAR-10' if classes == 10 else 'CIFAR-100'}: 50k 32×32 training images (47.5k train / "
                      f"2.5k val), 10k test, {classes} classes; torchvision's pickle batches.")
    register_dataset(name, source=_FILES[name]["url"], classes=classes, licence="no licence stated (Krizhevsky 2009)",
                     prepare=lambda root, download, n=name: prepare_cifar(n, root, download),
                     # 50k training images − the 2.5k held out for validation (the paper's CIFAR split), 10k test.
                     sizes=(47_500, 2_500, 10_000), in_memory=True)(loader)


_register("cifar10", 10)
_register("cifar100", 100)
