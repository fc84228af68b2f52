"""A user's own images: ``folder`` (one sub-folder per class) and ``csv`` (a table of paths and labels).

Both treat the training labels as noisy as given (``labels='noisy'``, the default: ``real_noise`` is
set and no synthetic noise is applied; clean labels are unknown, so runs report no realized rate).
``labels='clean'`` declares them clean instead, so a grid can corrupt them with a synthetic noise
model. Validation and test labels are taken as correct (they score the methods). A missing validation
or test part is a seeded, stratified hold-out of the training images (its labels are then noisy too, so
a run refuses a noisy held-out test part: ``nlbench.run.validate.check_held_out_labels``).

``folder``: ``root/train/<class>/*.jpg`` and optional ``root/val/<class>/``, ``root/test/<class>/``; class
indices follow the sorted class-folder names of ``train``.
``csv``: ``file`` with a header row holding ``path`` and ``label`` columns and an optional ``split``
column (train/val/test; rows without one are training rows). Paths are relative to the CSV's folder
(or ``root``). Labels are class indices 0..C−1, or names (indices in sorted order).
"""

from __future__ import annotations

import csv as csv_module
import os
from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset, Split, holdout, load_dataset
from nlbench.datasets.files import LOAD_SIZE, Finding, bad, ok, strings_digest
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
LABEL_MODES = ("clean", "noisy")
SPLITS = ("test", "train", "val")


def _content_id(paths: list[str], labels: np.ndarray) -> str:
    """Digest of every (path relative to nothing but its last two parts, size, label): the dataset's
    contents as far as a listing can tell (a user's images may change between runs; a changed size changes
    the id, hence the feature-cache key)."""
    items = []
    for p, y in zip(paths, labels, strict=True):
        try:
            size = os.stat(p).st_size
        except OSError:
            raise ConfigError(f"image file {p} does not exist") from None
        items.append(f"{Path(p).parent.name}/{Path(p).name}\t{size}\t{int(y)}")
    return strings_digest(items)


def _assemble(name: str, parts: dict[str, tuple[list[str], np.ndarray]], class_names: list[str], *,
              labels: str, val_size: int, test_size: int, split_seed: int, identity: dict) -> Dataset:
    if labels not in LABEL_MODES:
        raise ConfigError(f"dataset {name!r}: unknown labels {labels!r}; expected one of: {', '.join(LABEL_MODES)}")
    if "train" not in parts or not parts["train"][0]:
        raise ConfigError(f"dataset {name!r}: no training images")
    noisy = labels == "noisy"
    train_paths, train_y = parts["train"]
    index = np.arange(len(train_y))
    held: dict[str, np.ndarray] = {}
    for part, size in (("test", test_size), ("val", val_size)):
        if part not in parts:
            if size <= 0:
                raise ConfigError(f"dataset {name!r}: no {part} images; give them or a {part}_size > 0 to hold out")
            keep, out = holdout(train_y[index], size, split_seed)
            held[part], index = index[out], index[keep]

    def split(paths: list[str], y: np.ndarray, given_labels_noisy: bool) -> Split:
        if given_labels_noisy:
            return Split(labels=None, paths=paths, noisy_labels=y)
        return Split(labels=y, paths=paths)

    def part_split(part: str) -> Split:
        if part in parts:
            return split(*parts[part], False)
        idx = held[part]
        return split([train_paths[i] for i in idx], train_y[idx], noisy)

    content = {p: _content_id(*parts[p]) for p in sorted(parts)}
    return Dataset(
        name=name, num_classes=len(class_names),
        train=split([train_paths[i] for i in index], train_y[index], noisy),
        val=part_split("val"), test=part_split("test"), class_names=class_names, hflip=True, real_noise=noisy,
        identity={"dataset": name, **identity, "content": content, "labels": labels, "load_size": LOAD_SIZE,
                  "split_seed": split_seed,
                  "val_size": val_size if "val" not in parts else None,
                  "test_size": test_size if "test" not in parts else None},
    )


@register_dataset("folder", source="your images", classes=None, licence="yours",
                  prepare=lambda root, download: _prepare_by_loading("folder", root=root))
def folder(*, root: str | None = None, labels: str = "noisy", val_size: int = 0, test_size: int = 0,
           split_seed: int = 0) -> Dataset:
    """Your images in class folders: root/train/<class>/, optional root/val/, root/test/."""
    if root is None:
        raise ConfigError("dataset 'folder' needs root=DIR holding train/<class>/ folders")
    base = Path(root).expanduser()
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise ConfigError(f"dataset 'folder': no train/ folder in {base} (expected train/<class>/*.jpg)")
    class_names = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not class_names:
        raise ConfigError(f"dataset 'folder': {train_dir} has no class folders")
    index = {c: i for i, c in enumerate(class_names)}
    parts: dict[str, tuple[list[str], np.ndarray]] = {}
    for part in SPLITS:
        d = base / part
        if not d.is_dir():
            continue
        unknown = sorted(c.name for c in d.iterdir() if c.is_dir() and c.name not in index)
        if unknown:
            raise ConfigError(f"dataset 'folder': {d} has class folders not in train/: {', '.join(unknown)}")
        paths, ys = [], []
        for c in class_names:
            if not (d / c).is_dir():
                continue
            files = sorted(f.name for f in (d / c).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files and part == "train":
                # A class with no training image cannot be learnt; it would still count as a class.
                raise ConfigError(f"dataset 'folder': class folder {d / c} has no images "
                                  f"({', '.join(IMAGE_SUFFIXES)}); remove it or add images")
            paths += [str(d / c / f) for f in files]
            ys += [index[c]] * len(files)
        parts[part] = (paths, np.asarray(ys, dtype=np.int64))
    return _assemble("folder", parts, class_names, labels=labels, val_size=val_size, test_size=test_size,
                     split_seed=split_seed, identity={})


@register_dataset("csv", source="your images", classes=None, licence="yours",
                  prepare=lambda root, download: _prepare_by_loading("csv", file=root))
def csv(*, file: str | None = None, root: str | None = None, labels: str = "noisy", num_classes: int | None = None,
        val_size: int = 0, test_size: int = 0, split_seed: int = 0) -> Dataset:
    """Your images listed in a CSV file: columns path, label and optionally split."""
    if file is None:
        raise ConfigError("dataset 'csv' needs file=PATH of a CSV with columns path,label[,split]")
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset 'csv': file {file!r} does not exist")
    base = Path(root).expanduser() if root is not None else path.parent
    try:
        # utf-8-sig: a byte-order mark would otherwise become part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv_module.DictReader(f)
            columns = reader.fieldnames or []
            if "path" not in columns or "label" not in columns:
                raise ConfigError(f"{path}: the header must name columns 'path' and 'label' (got {', '.join(columns)})")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 4]!r}); "
                          "save the CSV as UTF-8") from None
    if not rows:
        raise ConfigError(f"{path}: no rows")
    raw_labels = [(r["label"] or "").strip() for r in rows]
    empty = [i for i, s in enumerate(raw_labels) if not s]
    if empty:
        raise ConfigError(f"{path}: row {empty[0] + 2}: empty label; expected a class index or name")
    is_train = [((r.get("split") or "train").strip() or "train") == "train" for r in rows]
    if all(s.lstrip("-").isdigit() for s in raw_labels):
        ys = [int(s) for s in raw_labels]
        train_ys = [y for y, t in zip(ys, is_train, strict=True) if t] or ys
        c = num_classes if num_classes is not None else max(train_ys) + 1
        bad_rows = [i for i, y in enumerate(ys) if not 0 <= y < c]
        if bad_rows:
            raise ConfigError(f"{path}: row {bad_rows[0] + 2}: label {ys[bad_rows[0]]} is outside [0, {c})"
                              + ("" if num_classes is not None else " (the training rows' classes)"))
        # As for named labels: a class no training row carries cannot be learnt, yet would count as a class.
        unseen = sorted(set(range(c)) - set(train_ys))
        if unseen:
            rows_of = [i for i, y in enumerate(ys) if y == unseen[0]]
            where = (f" (it appears in row {rows_of[0] + 2}, split {(rows[rows_of[0]].get('split') or '').strip()!r})"
                     if rows_of else "")
            raise ConfigError(f"{path}: class {unseen[0]} has no training row{where}; expected every class 0..{c - 1} "
                              "in training rows" + (f" (num_classes={num_classes})" if num_classes is not None else ""))
        class_names = [str(i) for i in range(c)]
    else:
        # Classes are the training rows' names: a validation or test name never seen in training is an error,
        # not a class of its own.
        class_names = sorted({s for s, t in zip(raw_labels, is_train, strict=True) if t})
        unseen = [i for i, s in enumerate(raw_labels) if s not in class_names]
        if unseen:
            raise ConfigError(f"{path}: row {unseen[0] + 2}: label {raw_labels[unseen[0]]!r} appears in no training "
                              f"row; training classes: {', '.join(class_names)}")
        if num_classes is not None and num_classes != len(class_names):
            raise ConfigError(f"{path}: {len(class_names)} label names but num_classes={num_classes}")
        index = {name: i for i, name in enumerate(class_names)}
        ys = [index[s] for s in raw_labels]
    grouped: dict[str, tuple[list[str], list[int]]] = {}
    for i, (r, y) in enumerate(zip(rows, ys, strict=True)):
        part = (r.get("split") or "train").strip() or "train"
        if part not in SPLITS:
            raise ConfigError(f"{path}: row {i + 2}: split {part!r}; expected one of: {', '.join(SPLITS)}")
        p = Path(r["path"].strip())
        grouped.setdefault(part, ([], []))
        grouped[part][0].append(str(p if p.is_absolute() else base / p))
        grouped[part][1].append(y)
    parts = {k: (v[0], np.asarray(v[1], dtype=np.int64)) for k, v in grouped.items()}
    return _assemble("csv", parts, class_names, labels=labels, val_size=val_size, test_size=test_size,
                     split_seed=split_seed, identity={"num_classes": len(class_names)})


def check_images(dataset: Dataset) -> None:
    """Every image file of a ``folder``/``csv`` dataset opens as an image (its header is read, not its
    pixels): a stray text file named ``.jpg`` fails here, before any run, with its path."""
    if dataset.identity.get("dataset") not in ("folder", "csv"):
        return
    from PIL import Image, UnidentifiedImageError  # PIL: only when a user's images are checked

    for split in (dataset.train, dataset.val, dataset.test):
        for p in split.paths or []:
            try:
                with Image.open(p) as im:
                    im.size  # noqa: B018 - parsing the header is the check
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                raise ConfigError(f"image file {p} is not a readable image ({type(exc).__name__}); remove it "
                                  "or replace it") from None


def _prepare_by_loading(name: str, **options: object) -> list[Finding]:
    if options.get("root" if name == "folder" else "file") is None:
        return [bad(name, f"needs --root ({'the folder with train/' if name == 'folder' else 'the CSV file'})")]
    try:
        d = load_dataset(name, **{k: str(v) for k, v in options.items()})
    except ConfigError as exc:
        return [bad(name, str(exc))]
    return [ok(name, f"{d.num_classes} classes; {len(d.train)} train, {len(d.val)} val, {len(d.test)} test images;"
                     " every listed file exists")]
