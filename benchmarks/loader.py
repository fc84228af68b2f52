"""Decode + resize + augment throughput of images read by path, per worker, and the workers each
backbone's fine-tuning needs.

Writes real JPEG files (smooth synthetic photographs plus sensor-like noise, quality 90) at sizes like
those of Clothing1M's and WebVision's images, then measures the pipeline of ``nlbench.datasets.files``:
read + decode + fit to the 256-px square (``LOAD_SIZE``) + the training augmentation and resize to
224 (``BatchTransform``), per decoder:

* ``pil`` and ``torchvision`` (libjpeg-turbo) decode in DataLoader workers: measured in one process on
  one thread, that is img/s per worker (≈ per core);
* ``cuda`` (where CUDA is present): the workers only read bytes; batches of 128 are decoded at once by
  nvJPEG on the GPU and fitted there — measured as GPU img/s, plus the workers' read rate.

The augmentation runs on the training device in the main process (a GPU: a fraction of a millisecond
per batch); on the CPU it is timed on one thread and reported separately.

It prints the workers needed to feed each backbone's FFT training rate (the H100 reference figures of
``nlbench/run/costs.py``, eager and compiled): rate ÷ per-worker img/s, rounded up.

    python benchmarks/loader.py                       # 3 sizes × 200 images
    python benchmarks/loader.py --images 50 --json loader.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nlbench.datasets.files import LOAD_SIZE, PathImages, _Images, _read_bytes, decode_batch_on_device
from nlbench.engine.compile import measured_cost
from nlbench.engine.transforms import BatchTransform

# (name, width, height). WebVision's "resized" release scales every image to a shorter side of 256;
# Clothing1M's and WebVision's full-size images are web photographs of a few hundred px a side (we do not
# have their size distribution offline: 500×375 and 800×600 stand for typical and large ones).
SIZES = (("webvision_resized_341x256", 341, 256), ("web_photo_500x375", 500, 375), ("web_photo_800x600", 800, 600))
PAPER_BACKBONES = ("vit_b16", "clip_vit_b16", "mae_vit_b16", "msn_vit_b16", "convnext_t", "resnet50")


def synthetic_photo(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour fields (upsampled low-resolution noise) plus pixel noise: JPEG-compresses like a
    photograph (tens of kB at 500×375), unlike pure noise (incompressible) or flat colour (nothing)."""
    from PIL import Image

    coarse = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, count: int, width: int, height: int, seed: int = 0) -> list[str]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{i:05d}.jpg"
        if not path.exists():
            Image.fromarray(synthetic_photo(width, height, rng)).save(path, quality=90)
        paths.append(str(path))
    return paths


def per_core(fn, count: int, rounds: int) -> tuple[float, float]:
    """(img/s by wall time, img/s per CPU second of this process), best of ``rounds`` calls of ``fn``
    over ``count`` images. With one thread, the second is what one dedicated core gives: on a shared
    machine the wall figure also counts the time spent waiting for a core."""
    wall_best = cpu_best = 0.0
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall_best, cpu_best = max(wall_best, count / wall), max(cpu_best, count / max(cpu, 1e-9))
    return wall_best, cpu_best


def worker_rate(paths: list[str], decoder: str, rounds: int = 2) -> tuple[float, float]:
    """One DataLoader worker's job (read, decode, fit to 256) on one thread: ``per_core`` rates."""
    items = _Images(paths, np.arange(len(paths)), LOAD_SIZE, decoder)
    return per_core(lambda: [items[k] for k in range(len(items))], len(items), rounds)


def read_rate(paths: list[str], rounds: int = 2) -> tuple[float, float]:
    """Reading the files' bytes (a worker's job for the 'cuda' decoder), page cache warm: ``per_core``."""
    return per_core(lambda: [_read_bytes(p) for p in paths], len(paths), rounds)


def augment_rate(device: torch.device, batch: int = 128, rounds: int = 3) -> float:
    """img/s of the training transform (random crop + flip at 256, resize to 224, normalise) on a
    uint8 batch already on ``device``."""
    transform = BatchTransform(size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3, augment=True)
    x = torch.randint(0, 256, (batch, 3, LOAD_SIZE, LOAD_SIZE), dtype=torch.uint8, device=device)
    generator = torch.Generator().manual_seed(0)
    transform(x, generator)
    best = 0.0
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        transform(x, generator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, batch / (time.perf_counter() - start))
    return best


def gpu_decode_rate(paths: list[str], device: torch.device, batch: int = 128, rounds: int = 3) -> float:
    """img/s of nvJPEG batched decode + fit to 256 on ``device`` (bytes already read)."""
    data = [_read_bytes(p) for p in paths]
    chunks = [data[i : i + batch] for i in range(0, len(data), batch)]
    decode_batch_on_device(chunks[0], paths[:batch], LOAD_SIZE, device)  # warm-up: nvJPEG handles
    best = 0.0
    for _ in range(rounds):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        for i, chunk in enumerate(chunks):
            decode_batch_on_device(chunk, paths[i * batch : (i + 1) * batch], LOAD_SIZE, device)
        torch.cuda.synchronize(device)
        best = max(best, len(paths) / (time.perf_counter() - start))
    return best


def loader_rate(paths: list[str], decoder: str, workers: int, device: torch.device, batch: int = 64) -> float:
    """img/s of PathImages end to end with ``workers`` worker processes (a check of the per-worker figures)."""
    source = PathImages(paths, device, num_workers=workers, decoder=decoder)
    start = time.perf_counter()
    n = sum(len(ids) for _, ids in source.batches(np.arange(len(paths)), batch, shuffle=False))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def workers_needed(per_worker: float) -> dict[str, dict[str, int | None]]:
    """Workers to feed each paper backbone's H100 FFT rate (eager; compiled where measured)."""
    out = {}
    for name in PAPER_BACKBONES:
        cost = measured_cost(name)
        compiled = cost.train_img_s_compiled
        out[name] = {"eager": math.ceil(cost.train_img_s / per_worker),
                     "compiled": math.ceil(compiled / per_worker) if compiled else None}
    return out


def run(count: int, folder: Path, *, device: torch.device, loader_workers: int | None = None) -> dict:
    torch.set_num_threads(1)  # per worker = per core: DataLoader workers run one thread each
    rows = []
    for name, width, height in SIZES:
        paths = write_jpegs(folder / name, count, width, height)
        kib = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
        row = {"images": name, "width": width, "height": height, "mean_kib": round(kib, 1), "count": len(paths)}
        for decoder in ("pil", "torchvision"):
            wall, cpu = worker_rate(paths, decoder)
            row[f"{decoder}_img_s_per_worker"] = round(cpu, 1)  # per dedicated core
            row[f"{decoder}_img_s_per_worker_wall"] = round(wall, 1)
            row[f"{decoder}_workers_needed"] = workers_needed(cpu)
        wall, cpu = read_rate(paths)
        row["read_img_s_per_worker"], row["read_img_s_per_worker_wall"] = round(cpu, 1), round(wall, 1)
        if device.type == "cuda":
            row["cuda_decode_img_s"] = round(gpu_decode_rate(paths, device), 1)
            row["cuda_workers_needed"] = workers_needed(row["read_img_s_per_worker"])
        if loader_workers:
            for decoder in ("pil", "torchvision") + (("cuda",) if device.type == "cuda" else ()):
                row[f"{decoder}_loader_img_s_{loader_workers}w"] = round(
                    loader_rate(paths, decoder, loader_workers, device), 1)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {"rows": rows, "augment_img_s": round(augment_rate(device), 1), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def markdown(result: dict) -> str:
    from tabulate import tabulate

    cuda = result["gpu"] is not None
    header = ["images", "mean kB", "PIL img/s/core", "torchvision img/s/core", "read img/s/core"]
    header += ["nvJPEG img/s (GPU)"] if cuda else []
    header += ["workers for ViT-B/16 FFT (eager / compiled)", "workers for ResNet-50 FFT"]
    table = []
    for r in result["rows"]:
        best = "torchvision" if r["torchvision_img_s_per_worker"] >= r["pil_img_s_per_worker"] else "pil"
        vit, rn = r[f"{best}_workers_needed"]["vit_b16"], r[f"{best}_workers_needed"]["resnet50"]
        line = [r["images"], r["mean_kib"], r["pil_img_s_per_worker"], r["torchvision_img_s_per_worker"],
                r["read_img_s_per_worker"]]
        line += [r["cuda_decode_img_s"]] if cuda else []
        line += [f"{vit['eager']} / {vit['compiled']} ({best})", f"{rn['eager']} ({best})"]
        table.append(line)
    return tabulate(table, headers=header, tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--images", type=int, default=200, help="JPEG files per size")
    parser.add_argument("--dir", help="where the JPEGs go (default: a temporary folder)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--loader-workers", type=int, default=0,
                        help="also time PathImages end to end with this many worker processes")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.images < 1:
        print(f"loader: error: --images {args.images}, must be ≥ 1", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    with tempfile.TemporaryDirectory(prefix="nlbench-loader-") as tmp:
        folder = Path(args.dir) if args.dir else Path(tmp)
        result = run(args.images, folder, device=device, loader_workers=args.loader_workers)
    result["host"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    result["torch"] = torch.__version__
    print(f"device: {device}{' (' + result['gpu'] + ')' if result['gpu'] else ''}; {result['host']}; "
          f"1 thread per worker, img/s per CPU second (= per core); {args.images} JPEGs per size; "
          f"augment (crop+flip+resize 224, on {device}): {result['augment_img_s']:,.0f} img/s")
    print(markdown(result))
    print("workers needed = H100 FFT img/s (nlbench/run/costs.py) ÷ img/s per worker, rounded up; full table in --json")
    if args.json:
        from nlbench.atomic import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps(result, indent=1) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
