"""Clothing1M (Xiao et al., CVPR 2015): 1M clothing images with labels from their surrounding text.

The standard annotation files (https://github.com/Cysu/noisy_label), in ``root`` or ``root/annotations``:
``noisy_label_kv.txt`` and ``clean_label_kv.txt`` ("images/0/00/x.jpg 4" per line),
``noisy_train_key_list.txt`` (1,000,000 keys), ``clean_val_key_list.txt`` (14,313) and
``clean_test_key_list.txt`` (10,526); ``category_names_eng.txt`` names the 14 classes. Keys are image
paths relative to ``root``. Train: the noisy training keys with their noisy labels (no clean labels:
``labels`` is None); val and test: clean labels.

Protocol (as the paper's "a / b" cells): pick the epoch by accuracy on the clean validation set (grid
``val_labels = "clean"``), report test accuracy at that epoch and at the last one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset, Split, check_size, stratified_subsample
from nlbench.datasets.files import (
    LOAD_SIZE,
    Finding,
    bad,
    check_count,
    check_paths_exist,
    files_digest,
    missing,
    ok,
    read_lines,
    read_pairs,
    resolve_root,
)
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

NUM_CLASSES = 14
CLASSES = ["T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker", "Jacket", "Down Coat",
           "Suit", "Shawl", "Dress", "Vest", "Underwear"]
SOURCE = "https://github.com/Cysu/noisy_label (request access from the authors)"
FILES = {
    "noisy_kv": "noisy_label_kv.txt",
    "clean_kv": "clean_label_kv.txt",
    "train": "noisy_train_key_list.txt",
    "val": "clean_val_key_list.txt",
    "test": "clean_test_key_list.txt",
}
# Entries of the published files (Xiao et al. 2015; the dataset's README).
COUNTS = {"train": 1_000_000, "val": 14_313, "test": 10_526}


def annotation_dir(root: Path) -> Path:
    """``root`` or ``root/annotations``, whichever holds the key lists."""
    for folder in (root, root / "annotations"):
        if (folder / FILES["train"]).is_file() or (folder / FILES["noisy_kv"]).is_file():
            return folder
    return root


def _labelled(keys: list[str], table: dict[str, int], list_file: Path, kv_file: Path) -> np.ndarray:
    try:
        return np.fromiter((table[k] for k in keys), dtype=np.int64, count=len(keys))
    except KeyError as exc:
        raise ConfigError(f"{list_file}: key {exc.args[0]!r} has no label in {kv_file}") from None


@register_dataset("clothing1m", source=SOURCE, classes=NUM_CLASSES, licence="research use (by request)",
                  prepare=lambda root, download: prepare_clothing1m(root, download),
                  sizes=(1_000_000, 14_313, 10_526),  # the key lists of Xiao et al., CVPR 2015
                  real_noise_rate=0.385)  # Xiao et al. 2015: 61.54 % of the noisy labels are correct
def clothing1m(*, root: str | None = None, train_size: int | None = None, split_seed: int = 0) -> Dataset:
    """Clothing1M: 1M noisy-labelled train, 14,313 clean val, 10,526 clean test images, 14 classes; by path."""
    base = resolve_root("clothing1m", root)
    ann = annotation_dir(base)
    paths = {k: ann / f for k, f in FILES.items()}
    noisy = dict(read_pairs(paths["noisy_kv"], NUM_CLASSES))
    clean = dict(read_pairs(paths["clean_kv"], NUM_CLASSES))
    keys = {part: read_lines(paths[part]) for part in ("train", "val", "test")}
    train_y = _labelled(keys["train"], noisy, paths["train"], paths["noisy_kv"])
    train_size = check_size("clothing1m", "train_size", train_size, len(train_y))
    keep = stratified_subsample(train_y, train_size, split_seed)

    def split(part: str, idx: np.ndarray | None = None) -> Split:
        k = keys[part] if idx is None else [keys[part][i] for i in idx]
        files = [str(base / key) for key in k]
        if part == "train":
            return Split(labels=None, paths=files, noisy_labels=train_y[idx])
        return Split(labels=_labelled(k, clean, paths[part], paths["clean_kv"]), paths=files)

    names_file = ann / "category_names_eng.txt"
    names = read_lines(names_file) if names_file.is_file() else list(CLASSES)
    if len(names) != NUM_CLASSES:
        raise ConfigError(f"{names_file}: {len(names)} class names; Clothing1M has {NUM_CLASSES}")
    return Dataset(
        name="clothing1m", num_classes=NUM_CLASSES, train=split("train", keep), val=split("val"), test=split("test"),
        class_names=names, hflip=True, real_noise=True,
        # Images are identified by their keys (the list files); the image files are taken as published.
        identity={"dataset": "clothing1m", "annotations": files_digest(paths.values()), "load_size": LOAD_SIZE,
                  "train_size": train_size, "split_seed": split_seed if train_size else None},
    )


def prepare_clothing1m(root: Path | None, download: bool) -> list[Finding]:
    """Check the annotation files (names, counts, labels in range, every key labelled) and a sample of images."""
    if download:
        raise ConfigError(f"clothing1m cannot be downloaded by nlbench; request it at {SOURCE}")
    try:
        base = resolve_root("clothing1m", root)
    except ConfigError as exc:
        return [missing("root", str(exc))]
    ann = annotation_dir(base)
    findings: list[Finding] = []
    tables: dict[str, dict[str, int]] = {}
    for kv in ("noisy_kv", "clean_kv"):
        path = ann / FILES[kv]
        if not path.is_file():
            findings.append(missing(FILES[kv], f"missing in {ann}; get the annotations from {SOURCE}"))
            continue
        try:
            tables[kv] = dict(read_pairs(path, NUM_CLASSES))
            findings.append(ok(FILES[kv], f"{len(tables[kv]):,} labelled keys, labels in [0, {NUM_CLASSES})"))
        except ConfigError as exc:
            findings.append(bad(FILES[kv], str(exc)))
    for part, kv in (("train", "noisy_kv"), ("val", "clean_kv"), ("test", "clean_kv")):
        path = ann / FILES[part]
        if not path.is_file():
            findings.append(missing(FILES[part], f"missing in {ann}; get the annotations from {SOURCE}"))
            continue
        keys = read_lines(path)
        findings.append(check_count(FILES[part], len(keys), COUNTS[part]))
        if kv in tables:
            unlabelled = [k for k in keys if k not in tables[kv]]
            if unlabelled:
                findings.append(bad(FILES[part], f"{len(unlabelled):,} keys have no label in {FILES[kv]}, e.g. "
                                                 f"{unlabelled[0]}"))
        findings.append(check_paths_exist(base, keys, f"{part} images"))
    return findings
