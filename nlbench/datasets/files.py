"""Files on disk: image sources read by path, list-file readers, root resolution, checksums and the
findings that ``nlbench prepare`` prints.

``PathImages`` is the ``ImageSource`` of datasets that list image paths (Clothing1M, WebVision, a
user's folder or CSV): a torch DataLoader with worker processes reads each image, fits it to a fixed
square (shorter side resized to ``size``, centre crop), and yields uint8 (B, C, H, W) batches on the
device, the same interface as ``nlbench.engine.images.TensorImages``. Three decoders (``DECODERS``):

* ``pil`` (the default on CPU): PIL in the workers, with JPEG draft mode (DCT-domain downscaling of
  large files);
* ``torchvision``: ``torchvision.io.decode_image`` (libjpeg-turbo) and an antialiased resize in the workers;
* ``cuda`` (the default on CUDA): the workers only read the file bytes; the main process decodes a whole
  batch of JPEGs at once with ``torchvision.io.decode_jpeg(device='cuda')`` (nvJPEG) and resizes on the
  GPU, so the CPU cores no longer bound the images/s (benchmarks/loader.py measures all three).

The decoders give slightly different pixels (different IDCTs and resize filters), so the decoder is part
of every feature-cache key (``decoder_identity``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlbench.atomic import hash_file
from nlbench.errors import ConfigError, DataNotFound

# Images read by path are fitted to LOAD_SIZE × LOAD_SIZE before the batch transform resizes them to the
# backbone's input (the usual Resize(256) + CenterCrop(224) pipeline's first step). Loaders record it in
# their identity, so it is part of every feature-cache key.
LOAD_SIZE = 256


def load_image(path: str, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the image at ``path`` in RGB, shorter side resized to ``size`` (bilinear),
    centre-cropped. Raises ConfigError naming the file when it cannot be read."""
    from PIL import Image, ImageOps  # PIL and torchvision: only when files are decoded

    try:
        with Image.open(path) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when the file is much larger
            rgb = im.convert("RGB")
            fitted = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
            return np.array(fitted, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None


DECODERS = ("pil", "torchvision", "cuda")


def default_decoder(device: torch.device | str) -> str:
    """'cuda' (batched nvJPEG) on a CUDA device, 'pil' elsewhere."""
    return "cuda" if torch.device(device).type == "cuda" else "pil"


def decoder_identity(device: torch.device | str, decoder: str | None = None) -> str:
    """What enters the feature-cache key of images read by path: the decoder used on ``device``."""
    return decoder or default_decoder(device)


def fit_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) → (3, size, size): the centred square of side min(H, W), resized to ``size``
    (bilinear, antialiased); on the tensor's device. Cropping first, as PIL's ``ImageOps.fit`` in
    ``load_image`` does, keeps the two paths on the same pixel grid."""
    from torchvision.transforms.v2 import functional as TF  # torchvision: only when files are decoded

    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[:, top : top + side, left : left + side]
    if side != size:
        image = TF.resize(image, [size, size], antialias=True)
    return image.contiguous()


def _read_bytes(path: str) -> torch.Tensor:
    try:
        with open(path, "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
    except OSError as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None


def decode_tensor(path: str, data: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, size, size) on the CPU from an encoded file's bytes, with torchvision (libjpeg-turbo,
    libpng, ...). Raises ConfigError naming the file when the bytes are not an image."""
    from torchvision.io import ImageReadMode, decode_image  # torchvision: only when files are decoded

    try:
        image = decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None
    return fit_square(image, size)


def _is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 3 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


class _Images(torch.utils.data.Dataset):
    """Item k: (uint8 (3, size, size) image, or the raw file bytes for decoder 'cuda'; sample id)."""

    def __init__(self, paths: Sequence[str], ids: np.ndarray, size: int, decoder: str = "pil") -> None:
        self.paths, self.ids, self.size, self.decoder = paths, ids, size, decoder

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        i = int(self.ids[k])
        path = self.paths[i]
        if self.decoder == "pil":
            return torch.from_numpy(load_image(path, self.size)).permute(2, 0, 1), i
        data = _read_bytes(path)
        if self.decoder == "torchvision" or not _is_jpeg(data):  # nvJPEG reads JPEG only
            return decode_tensor(path, data, self.size), i
        return data, i


def _collate_encoded(items: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [image for image, _ in items], torch.tensor([i for _, i in items], dtype=torch.long)


def decode_batch_on_device(items: list[torch.Tensor], paths: list[str], size: int,
                           device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, size, size) on ``device`` from a mix of encoded JPEG bytes (1-D) and images decoded
    already (3-D): the JPEGs in one batched ``decode_jpeg`` call on the device, then fitted there. A file
    the device decoder refuses (CMYK, progressive corner cases) is decoded on the CPU instead."""
    from torchvision.io import ImageReadMode, decode_jpeg  # torchvision: only when files are decoded

    out: list[torch.Tensor | None] = [None] * len(items)
    encoded = [k for k, item in enumerate(items) if item.dim() == 1]
    for k, item in enumerate(items):
        if item.dim() == 3:
            out[k] = item.to(device, non_blocking=True)
    if encoded:
        try:
            decoded = decode_jpeg([items[k] for k in encoded], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            decoded = [None] * len(encoded)
        for k, image in zip(encoded, decoded, strict=True):
            if image is None:
                image = decode_tensor(paths[k], items[k], size).to(device)
            out[k] = fit_square(image, size)
    return torch.stack(out)


def default_workers() -> int:
    """Decoding workers: all CPUs but one for the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class PathImages:
    """Images of a split read from their paths: ``batches`` yields (uint8 (B, 3, size, size) on ``device``,
    sample ids (B,)), read by ``num_workers`` DataLoader workers (default: CPUs − 1, at most 8) and decoded
    by ``decoder`` (one of ``DECODERS``; default ``default_decoder(device)``)."""

    def __init__(self, paths: Sequence[str], device: torch.device, *, size: int = LOAD_SIZE,
                 num_workers: int | None = None, decoder: str | None = None) -> None:
        self.paths = list(paths)
        self.device = torch.device(device)
        self.size = size
        self.num_workers = default_workers() if num_workers is None else num_workers
        self.decoder = decoder or default_decoder(self.device)
        if self.decoder not in DECODERS:
            raise ConfigError(f"decoder {self.decoder!r}; expected one of: {', '.join(DECODERS)}")
        if self.decoder == "cuda" and self.device.type != "cuda":
            raise ConfigError(f"decoder 'cuda' needs a CUDA device; got {self.device}")

    def __len__(self) -> int:
        return len(self.paths)

    def batches(
        self, index: np.ndarray, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ids = torch.as_tensor(np.asarray(index), dtype=torch.long)
        if shuffle:
            # The order comes from the caller's generator, as in TensorImages, so runs are reproducible.
            ids = ids[torch.randperm(len(ids), generator=generator)]
        on_device = self.decoder == "cuda"
        loader = torch.utils.data.DataLoader(
            _Images(self.paths, ids.numpy(), self.size, self.decoder), batch_size=batch_size, shuffle=False,
            num_workers=self.num_workers, pin_memory=self.device.type == "cuda" and not on_device,
            persistent_workers=False, prefetch_factor=4 if self.num_workers else None,
            collate_fn=_collate_encoded if on_device else None,
        )
        for images, batch_ids in loader:
            if on_device:
                paths = [self.paths[int(i)] for i in batch_ids]
                yield decode_batch_on_device(images, paths, self.size, self.device), batch_ids
            else:
                yield images.to(self.device, non_blocking=True), batch_ids


# --------------------------------------------------------------------------- roots and list files
def resolve_root(name: str, root: str | os.PathLike | None, *, where: str = "") -> Path:
    """The folder of dataset ``name``: ``root`` when given, else ``$NLBENCH_DATA/<name>``.

    Raises ConfigError saying how to point nlbench at the files."""
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataNotFound(f"dataset {name!r}: root {str(root)!r} is not a folder"
                              f" (`nlbench prepare {name} --root DIR` checks a folder){where}")
        return path
    env = os.environ.get("NLBENCH_DATA")
    if env and (Path(env) / name).is_dir():
        return Path(env) / name
    raise DataNotFound(
        f"dataset {name!r} needs its files: pass the dataset option root=DIR (in a grid: "
        f"[dataset_options.{name}] root = \"DIR\") or put them in $NLBENCH_DATA/{name}"
        f" (NLBENCH_DATA is {'unset' if not env else repr(env)}); `nlbench prepare {name} --root DIR`"
        f" says what is missing{where}"
    )


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file; ConfigError naming the file when it is missing."""
    if not path.is_file():
        raise ConfigError(f"missing file {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_pairs(path: Path, num_classes: int | None = None) -> list[tuple[str, int]]:
    """``key label`` lines of a list file as (key, label) pairs; labels checked against [0, num_classes)."""
    pairs = []
    for n, line in enumerate(read_lines(path), 1):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ConfigError(f"{path}:{n}: expected 'KEY LABEL', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise ConfigError(f"{path}:{n}: label {parts[1]!r} is not an integer") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise ConfigError(f"{path}:{n}: label {label} is outside [0, {num_classes})")
        pairs.append((parts[0], label))
    return pairs


# --------------------------------------------------------------------------- checksums
def md5_file(path: Path) -> str:
    """A file's md5, to compare with a published checksum (not for security)."""
    return hash_file(path, hashlib.md5(usedforsecurity=False)).hexdigest()


def files_digest(paths: Iterable[Path]) -> str:
    """sha256 over the names and contents of ``paths`` (annotation and list files), 16 hex digits."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        hash_file(p, h)
    return h.hexdigest()[:16]


def arrays_digest(*arrays: np.ndarray) -> str:
    """blake2b over the shapes, dtypes and bytes of ``arrays``, 16 hex digits: the content of an
    in-memory dataset, independent of where its files lie."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def strings_digest(items: Iterable[str]) -> str:
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode() + b"\n")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- prepare findings
@dataclass(frozen=True)
class Finding:
    """One line of ``nlbench prepare``. status: 'ok', 'missing' (a file or folder is absent) or 'bad'
    (present but wrong: checksum, count, format)."""

    status: str
    item: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        return f"[{self.status}] {self.item}: {self.detail}"


def ok(item: str, detail: str) -> Finding:
    return Finding("ok", item, detail)


def missing(item: str, detail: str = "missing") -> Finding:
    return Finding("missing", item, detail)


def bad(item: str, detail: str) -> Finding:
    return Finding("bad", item, detail)


def check_md5(path: Path, expected: str | Sequence[str], item: str | None = None) -> Finding:
    """Finding for a file against its published md5 (any of several accepted)."""
    item = item or str(path)
    if not path.is_file():
        return missing(item, f"missing ({path})")
    got = md5_file(path)
    accepted = [expected] if isinstance(expected, str) else list(expected)
    if got in accepted:
        return ok(item, f"md5 {got} as published")
    return bad(item, f"md5 {got} differs from the published {accepted[0]} (truncated or altered file)")


def check_count(item: str, got: int, expected: int) -> Finding:
    if got == expected:
        return ok(item, f"{got:,} entries as published")
    return bad(item, f"{got:,} entries; the published dataset has {expected:,}")


def check_paths_exist(root: Path, keys: Sequence[str], item: str, *, sample: int = 1000, seed: int = 0) -> Finding:
    """Whether the image files of ``keys`` exist under ``root`` (a seeded sample of ``sample`` of them:
    a stat of every file of a million-image set takes minutes on network storage)."""
    if not keys:
        return bad(item, "no entries")
    rng = np.random.default_rng(seed)
    picked = keys if len(keys) <= sample else [keys[i] for i in rng.choice(len(keys), sample, replace=False)]
    absent = [k for k in picked if not (root / k).is_file()]
    what = f"all {len(picked):,}" if len(picked) == len(keys) else f"a sample of {len(picked):,}"
    if absent:
        return missing(item, f"{len(absent)} of {what} image files missing under {root}, e.g. "
                             f"{', '.join(absent[:3])}")
    return ok(item, f"{what} image files present")
