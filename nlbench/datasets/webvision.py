"""WebVision 1.0 (Li et al., 2017): 2.4M Google and Flickr images of the 1,000 ILSVRC-2012 concepts,
labelled by the query that found them.

Files under ``root`` (https://data.vision.ee.ethz.ch/cvl/webvision/dataset2017.html, the resized-256
release): ``info/train_filelist_google.txt`` and ``info/train_filelist_flickr.txt`` ("google/q0001/x.jpg 0",
paths relative to ``root``), ``info/val_filelist.txt`` ("val000001.jpg 0", images in ``val_images_256/``),
``info/synsets.txt`` (the 1,000 WordNet ids in class order, "n01440764 tench, …").

variant='full' (the paper's: 1,000 classes, Google + Flickr) or 'mini' (mini-WebVision, the common
option of Jiang et al. 2018 / DivideMix: the first 50 classes, Google images only). There is no
published validation split: ``val_size`` noisy training images are held out (seeded, stratified) for
epoch selection. Test: the WebVision validation set; with ``imagenet_root``, the ILSVRC-2012 validation
images of the same classes are a second evaluation set (``extra_tests['imagenet']``, or the test split
with ``test_set='imagenet'``), read from ``imagenet_root/val/<wnid>/`` (torchvision's ImageNet layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset, Split, check_size, holdout, stratified_subsample
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
    strings_digest,
)
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

SOURCE = "https://data.vision.ee.ethz.ch/cvl/webvision/dataset2017.html"
VARIANTS = {"full": (1000, ("google", "flickr")), "mini": (50, ("google",))}
TEST_SETS = ("imagenet", "webvision")
VAL_COUNT = 50_000  # WebVision 1.0 validation images, 50 per class
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def _read_synsets(path: Path) -> list[str]:
    wnids = [line.split()[0] for line in read_lines(path)]
    if len(wnids) != 1000:
        raise ConfigError(f"{path}: {len(wnids)} synsets; WebVision 1.0 has 1000")
    return wnids


def imagenet_val(imagenet_root: str | Path, wnids: list[str], num_classes: int) -> Split:
    """ILSVRC-2012 validation images of the first ``num_classes`` synsets, from ``<root>/val/<wnid>/`` (or
    ``<root>/<wnid>/``), labelled by the synset's WebVision class index."""
    base = Path(imagenet_root).expanduser()
    folder = base / "val" if (base / "val").is_dir() else base
    paths, labels = [], []
    for c, wnid in enumerate(wnids[:num_classes]):
        d = folder / wnid
        if not d.is_dir():
            raise ConfigError(f"imagenet_root: no folder {d} for class {c} ({wnid}); expected torchvision's "
                              "ImageNet layout val/<wnid>/*.JPEG")
        files = sorted(p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += [str(d / f) for f in files]
        labels += [c] * len(files)
    if not paths:
        raise ConfigError(f"imagenet_root {base}: no images found")
    return Split(labels=np.asarray(labels, dtype=np.int64), paths=paths)


@register_dataset("webvision", source=SOURCE, classes=1000, licence="research use (Flickr/Google image terms)",
                  prepare=lambda root, download: prepare_webvision(root, download),
                  # ≈ 2.4M Google + Flickr images − 2.5k held out; the 50k WebVision validation images as test.
                  sizes=(2_400_000 - 2_500, 2_500, 50_000),
                  # ≈ 66k Google images of the first 50 classes (Jiang et al., ICML 2018) − 2.5k; 50 × 50 test.
                  variant_sizes={"mini": (66_000 - 2_500, 2_500, 2_500)},
                  real_noise_rate=0.20)  # Li et al. 2017: about 20 % label noise
def webvision(*, root: str | None = None, variant: str = "full", imagenet_root: str | None = None,
              test_set: str = "webvision", val_size: int = 2500, train_size: int | None = None,
              split_seed: int = 0) -> Dataset:
    """WebVision 1.0: 2.4M web images, 1,000 classes (variant 'mini': 50 classes, Google); by path."""
    if variant not in VARIANTS:
        raise ConfigError(f"webvision: unknown variant {variant!r}; expected one of: {', '.join(VARIANTS)}")
    if test_set not in TEST_SETS:
        raise ConfigError(f"webvision: unknown test_set {test_set!r}; expected one of: {', '.join(TEST_SETS)}")
    if test_set == "imagenet" and imagenet_root is None:
        raise ConfigError("webvision: test_set='imagenet' needs imagenet_root=DIR (ILSVRC-2012 val/<wnid>/)")
    num_classes, sources = VARIANTS[variant]
    base = resolve_root("webvision", root)
    info = base / "info"
    lists = [info / f"train_filelist_{s}.txt" for s in sources]
    train = [(k, y) for path in lists for k, y in read_pairs(path, 1000) if y < num_classes]
    val_list = info / "val_filelist.txt"
    test = [(k, y) for k, y in read_pairs(val_list, 1000) if y < num_classes]
    if not train or not test:
        raise ConfigError(f"webvision: no images of the first {num_classes} classes in {', '.join(map(str, lists))}"
                          f" / {val_list}")
    train_keys, train_y = [k for k, _ in train], np.asarray([y for _, y in train], dtype=np.int64)
    keep, val_idx = holdout(train_y, val_size, split_seed)
    train_size = check_size("webvision", "train_size", train_size, len(keep))
    keep = keep[stratified_subsample(train_y[keep], train_size, split_seed)]

    def noisy_split(idx: np.ndarray) -> Split:
        return Split(labels=None, paths=[str(base / train_keys[i]) for i in idx], noisy_labels=train_y[idx])

    web_test = Split(labels=np.asarray([y for _, y in test], dtype=np.int64),
                     paths=[str(base / "val_images_256" / k) for k, _ in test])
    synsets = info / "synsets.txt"
    wnids = _read_synsets(synsets) if synsets.is_file() else None
    extra: dict[str, Split] = {}
    imagenet_id = None
    if imagenet_root is not None:
        if wnids is None:
            raise ConfigError(f"webvision: imagenet_root needs {synsets} to match ImageNet folders to classes")
        inet = imagenet_val(imagenet_root, wnids, num_classes)
        # The ImageNet images are identified by their relative paths (the published validation set).
        imagenet_id = strings_digest(f"{Path(p).parent.name}/{Path(p).name}" for p in inet.paths)
        extra["imagenet"] = inet
    tests = {"webvision": web_test, **extra}
    test_split = tests.pop(test_set)
    class_names = wnids[:num_classes] if wnids else [str(i) for i in range(num_classes)]
    return Dataset(
        name="webvision", num_classes=num_classes, train=noisy_split(keep), val=noisy_split(val_idx),
        test=test_split, extra_tests=tests, class_names=class_names, hflip=True, real_noise=True,
        identity={"dataset": "webvision", "variant": variant, "lists": files_digest([*lists, val_list]),
                  "load_size": LOAD_SIZE, "val_size": val_size, "train_size": train_size, "split_seed": split_seed,
                  "test_set": test_set, "imagenet": imagenet_id},
    )


def prepare_webvision(root: Path | None, download: bool) -> list[Finding]:
    """Check the info files, the validation count and a sample of the images of each list."""
    if download:
        raise ConfigError(f"webvision cannot be downloaded by nlbench; get the resized release at {SOURCE}")
    try:
        base = resolve_root("webvision", root)
    except ConfigError as exc:
        return [missing("root", str(exc))]
    findings: list[Finding] = []
    info = base / "info"
    for name, folder in (("train_filelist_google.txt", base), ("train_filelist_flickr.txt", base),
                         ("val_filelist.txt", base / "val_images_256")):
        path = info / name
        if not path.is_file():
            findings.append(missing(f"info/{name}", f"missing; get the info files from {SOURCE}"))
            continue
        try:
            pairs = read_pairs(path, 1000)
        except ConfigError as exc:
            findings.append(bad(f"info/{name}", str(exc)))
            continue
        if name == "val_filelist.txt":
            findings.append(check_count(f"info/{name}", len(pairs), VAL_COUNT))
        else:
            findings.append(ok(f"info/{name}", f"{len(pairs):,} images, {len({y for _, y in pairs})} classes"))
        findings.append(check_paths_exist(folder, [k for k, _ in pairs], f"{name} images"))
    synsets = info / "synsets.txt"
    if not synsets.is_file():
        findings.append(missing("info/synsets.txt", "missing (needed to match ImageNet validation folders)"))
    else:
        try:
            _read_synsets(synsets)
            findings.append(ok("info/synsets.txt", "1000 synsets"))
        except ConfigError as exc:
            findings.append(bad("info/synsets.txt", str(exc)))
    return findings
