"""The user's images for ``nlbench advise``: every image of a ``folder:`` tree or ``csv:`` table with its given
label, checked before anything runs, and the optional file of trusted (verified) labels.

Every split the source has (train, and val/test where given) is pooled: advise trusts none of the labels, and
needs no clean test set. The loaders are the datasets ``folder`` and ``csv`` (nlbench/datasets/custom.py);
their hold-outs are asked for only so that a tree with a train/ split alone loads, and are pooled back.
"""

from __future__ import annotations

import csv as csv_module
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlbench.datasets import Dataset, Split, load_dataset
from nlbench.datasets.custom import check_images
from nlbench.errors import ConfigError

SOURCES = ("folder", "csv")


@dataclass
class AdviseData:
    """All images with their given labels, and the identity that keys their features."""

    source: str  # "folder:PATH" / "csv:FILE" as given
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    identity: dict

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def dataset(self) -> Dataset:
        """A ``Dataset`` whose every split is all the images (the feature pass reads 'train')."""
        split = Split(labels=self.labels, paths=self.paths)
        return Dataset(name="advise", num_classes=self.num_classes, train=split, val=split, test=split,
                       class_names=self.class_names, hflip=True, real_noise=True, identity=self.identity)


def parse_source(text: str) -> tuple[str, str]:
    kind, sep, where = text.partition(":")
    if not sep or kind not in SOURCES or not where:
        raise ConfigError(f"--data {text!r}; expected folder:PATH (class folders) or csv:FILE (path,label columns)")
    return kind, where


def load_advise_data(text: str, *, folds: int) -> AdviseData:
    """Load and check the images of ``--data``: at least two classes, every class at least ``folds`` images,
    every file present and readable as an image. Raises ConfigError (one line) otherwise."""
    kind, where = parse_source(text)
    if kind == "folder":
        base = Path(where).expanduser()
        if not base.is_dir():
            raise ConfigError(f"--data folder:{where}: no such folder")
        if not (base / "train").is_dir() and any(d.is_dir() for d in base.iterdir()):
            # Class folders directly under PATH: the natural layout of one's own images.
            raise ConfigError(f"--data folder:{where}: expected class folders under {base / 'train'}; "
                              f"move them into train/ (root/train/<class>/*.png)")
        options = {"root": str(base)}
    else:
        options = {"file": where}
    # labels='clean' keeps the given labels in Split.labels; 1-image hold-outs let a train/-only tree load.
    try:
        dataset = load_dataset(kind, labels="clean", val_size=1, test_size=1, **options)
    except ConfigError as exc:
        raise ConfigError(f"--data {text}: {exc}") from None
    paths: list[str] = []
    labels: list[np.ndarray] = []
    for split in (dataset.train, dataset.val, dataset.test):
        paths += list(split.paths or [])
        labels.append(np.asarray(split.labels, dtype=np.int64))
    y = np.concatenate(labels)
    order = np.argsort(np.asarray(paths), kind="stable")  # one order whatever the hold-outs drew
    paths = [paths[i] for i in order]
    y = y[order]
    names = list(dataset.class_names)
    counts = np.bincount(y, minlength=len(names))
    present = int((counts > 0).sum())
    if present < 2:
        raise ConfigError(f"--data {text}: {present} class ({', '.join(names) or 'none'}); advise needs at least 2 "
                          "classes")
    small = [(names[c], int(counts[c])) for c in range(len(names)) if counts[c] < folds]
    if small:
        listing = ", ".join(f"{n} ({k})" for n, k in small)
        raise ConfigError(f"--data {text}: class(es) with fewer images than the {folds} folds: {listing}; add "
                          f"images or use --folds {max(2, int(counts[counts > 0].min()))}")
    check_images(dataset)
    identity = {"dataset": f"advise-{kind}", "content": dataset.identity["content"],
                "num_classes": len(names), "classes": names}
    return AdviseData(source=text, paths=paths, labels=y, class_names=names, identity=identity)


def load_trusted(file: str, data: AdviseData) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``data``, verified labels) of a trusted-label CSV with columns path,label; paths relative
    to the CSV's folder (or absolute), labels as class names or indices. Unknown paths or classes: ConfigError."""
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConfigError(f"--trusted {file!r}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv_module.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
            raise ConfigError(f"--trusted {file}: the header must name columns 'path' and 'label' "
                              f"(got {', '.join(reader.fieldnames or [])})")
        rows = list(reader)
    if not rows:
        raise ConfigError(f"--trusted {file}: no rows")
    where = {str(Path(p).resolve()): i for i, p in enumerate(data.paths)}
    by_name = {n: i for i, n in enumerate(data.class_names)}
    index, labels = [], []
    for line, row in enumerate(rows, start=2):
        p = Path((row["path"] or "").strip())
        full = str((p if p.is_absolute() else path.parent / p).resolve())
        if full not in where:
            raise ConfigError(f"--trusted {file}: row {line}: path {row['path']!r} is not an image of --data "
                              f"{data.source}")
        name = (row["label"] or "").strip()
        if name in by_name:
            label = by_name[name]
        elif name.isdigit() and int(name) < len(data.class_names) and name not in by_name:
            label = int(name)
        else:
            raise ConfigError(f"--trusted {file}: row {line}: label {name!r} is not a class; classes: "
                              f"{', '.join(data.class_names)}")
        index.append(where[full])
        labels.append(label)
    index_arr = np.asarray(index, dtype=np.int64)
    if len(np.unique(index_arr)) != len(index_arr):
        raise ConfigError(f"--trusted {file}: an image is listed twice")
    return index_arr, np.asarray(labels, dtype=np.int64)
