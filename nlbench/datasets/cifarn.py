"""CIFAR-10N and CIFAR-100N: CIFAR training images with human labels (Wei et al., ICLR 2022).

The label files ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt`` (https://github.com/UCSC-REAL/cifar-10-100n,
also http://www.noisylabels.com) are ``torch.save`` dicts of 50,000-long label arrays in torchvision's
training-set order: CIFAR-10N ``clean_label``, ``aggre_label``, ``worse_label``, ``random_label1..3``;
CIFAR-100N ``clean_label``, ``noisy_label`` (and coarse variants). The loader checks the order through
``clean_label`` against the CIFAR batches and fails loudly on any mismatch.

Licence: the CIFAR-N labels are released under CC BY-NC 4.0 (non-commercial use only); the loader warns
once per process when it loads them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from nlbench.datasets.base import Dataset
from nlbench.datasets.cifar import cifar_dataset, prepare_cifar, read_cifar
from nlbench.datasets.files import Finding, bad, files_digest, missing, ok, resolve_root
from nlbench.errors import ConfigError
from nlbench.registry import register_dataset

LICENCE = "CC BY-NC 4.0 (CIFAR-N labels, non-commercial use only)"
SOURCE = "https://github.com/UCSC-REAL/cifar-10-100n"
LABEL_FILES = {"cifar10n": "CIFAR-10_human.pt", "cifar100n": "CIFAR-100_human.pt"}
LABEL_SETS = {
    "cifar10n": ("aggre_label", "random_label1", "random_label2", "random_label3", "worse_label"),
    "cifar100n": ("noisy_label",),
}
_warned: set[str] = set()


def find_label_file(name: str, root: Path | None, labels_file: str | None) -> Path:
    """The CIFAR-N label file: ``labels_file`` when given, else ``<root>/<file>`` or ``<root>/data/<file>``."""
    if labels_file is not None:
        path = Path(labels_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset {name!r}: labels_file {labels_file!r} does not exist (get {LABEL_FILES[name]}"
                              f" from {SOURCE})")
        return path
    candidates = [] if root is None else [root / LABEL_FILES[name], root / "data" / LABEL_FILES[name]]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"dataset {name!r}: no {LABEL_FILES[name]} in {', '.join(map(str, candidates)) or 'root'};"
                      f" pass labels_file=PATH (get it from {SOURCE})")


def read_label_file(name: str, path: Path) -> dict[str, np.ndarray]:
    """The label arrays of a CIFAR-N file (a ``torch.save`` dict), each (50000,) int64."""
    import torch  # torch: the data layer loads without it (`nlbench prepare`)

    try:
        # The published files hold numpy arrays, which the safe weights_only loader refuses.
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a torn or foreign file
        raise ConfigError(f"cannot read CIFAR-N label file {path}: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"CIFAR-N label file {path} holds a {type(obj).__name__}, not a dict of label arrays")
    out = {}
    for key, value in obj.items():
        arr = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            out[str(key)] = arr.astype(np.int64)
    return out


def load_cifarn(name: str, *, root: str | None, labels_file: str | None, label_set: str, split_seed: int,
                val_size: int, train_size: int | None, test_size: int | None) -> Dataset:
    base = "cifar10" if name == "cifar10n" else "cifar100"
    if label_set not in LABEL_SETS[name]:
        raise ConfigError(f"dataset {name!r}: unknown label_set {label_set!r}; expected one of: "
                          f"{', '.join(LABEL_SETS[name])}")
    raw = read_cifar(base, root)
    root_path = resolve_root(base, root) if labels_file is None else None
    path = find_label_file(name, root_path, labels_file)
    labels = read_label_file(name, path)
    for key in ("clean_label", label_set):
        if key not in labels:
            raise ConfigError(f"CIFAR-N label file {path} has no {key!r} array (has: {', '.join(sorted(labels))})")
    clean, noisy = labels["clean_label"], labels[label_set]
    n = len(raw["train_y"])
    if len(clean) != n or len(noisy) != n:
        raise ConfigError(f"CIFAR-N label file {path}: {len(clean)} clean / {len(noisy)} {label_set} labels for "
                          f"{n} CIFAR training images")
    wrong = np.flatnonzero(clean != raw["train_y"])
    if len(wrong):
        raise ConfigError(
            f"CIFAR-N label file {path}: 'clean_label' disagrees with the CIFAR training labels at {len(wrong)} of {n}"
            f" images (first: index {wrong[0]}); the file must follow torchvision's training-set order"
        )
    num_classes = len(raw["classes"])
    if noisy.min() < 0 or noisy.max() >= num_classes:
        raise ConfigError(f"CIFAR-N label file {path}: {label_set} labels outside [0, {num_classes})")
    if name not in _warned:
        _warned.add(name)
        warnings.warn(f"{name}: the CIFAR-N labels are licensed {LICENCE}", UserWarning, stacklevel=3)
    return cifar_dataset(name, raw, split_seed=split_seed, val_size=val_size, train_size=train_size,
                         test_size=test_size, train_noisy=noisy,
                         identity_extra={"label_set": label_set, "labels_file": files_digest([path])})


def prepare_cifarn(name: str, root: Path | None, download: bool) -> list[Finding]:
    base = "cifar10" if name == "cifar10n" else "cifar100"
    findings = prepare_cifar(base, root, download)
    try:
        path = find_label_file(name, root, None)
    except ConfigError as exc:
        return [*findings, missing(LABEL_FILES[name], str(exc))]
    labels = read_label_file(name, path)
    wanted = ("clean_label", *LABEL_SETS[name])
    absent = [k for k in wanted if k not in labels]
    if absent:
        findings.append(bad(LABEL_FILES[name], f"{path} lacks {', '.join(absent)}"))
    elif any(len(labels[k]) != 50_000 for k in wanted):
        findings.append(bad(LABEL_FILES[name], f"{path}: arrays must hold 50,000 labels each"))
    else:
        findings.append(ok(LABEL_FILES[name], f"{path}: {', '.join(wanted)} ({LICENCE})"))
        if all(f.ok for f in findings):
            try:
                load_cifarn(name, root=str(root), labels_file=str(path), label_set=LABEL_SETS[name][0],
                            split_seed=0, val_size=2500, train_size=None, test_size=None)
                findings.append(ok("training order", "clean_label matches the CIFAR training labels"))
            except ConfigError as exc:
                findings.append(bad("training order", str(exc)))
    return findings


def _register(name: str, default_set: str, noise_rate: float) -> None:
    def loader(*, root: str | None = None, labels_file: str | None = None, label_set: str = default_set,
               split_seed: int = 0, val_size: int = 2500, train_size: int | None = None,
               test_size: int | None = None) -> Dataset:
        return load_cifarn(name, root=root, labels_file=labels_file, label_set=label_set, split_seed=split_seed,
                           val_size=val_size, train_size=train_size, test_size=test_size)

    loader.__doc__ = (f"{'CIFAR-10N' if name == 'cifar10n' else 'CIFAR-100N'}: CIFAR images with human labels "
                      f"(label_set {', '.join(LABEL_SETS[name])}; default {default_set}); {LICENCE}.")
    register_dataset(name, source=SOURCE, classes=10 if name == "cifar10n" else 100, licence=LICENCE,
                     prepare=lambda root, download, n=name: prepare_cifarn(n, root, download),
                     sizes=(47_500, 2_500, 10_000), in_memory=True,  # CIFAR's images and split
                     real_noise_rate=noise_rate)(loader)


# CIFAR-10N's hardest set is the field's headline number (worse_label, 40.2 % noise).
# Noise rates of the default label sets (Wei et al., ICLR 2022): worse_label 40.21 %, CIFAR-100N's fine
# noisy_label 40.20 %.
_register("cifar10n", "worse_label", 0.40)
_register("cifar100n", "noisy_label", 0.40)
