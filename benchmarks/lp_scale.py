"""Linear-probe methods at the scale of Clothing1M and WebVision: seconds per epoch and peak memory.

Synthetic cached features (N samples × D dims, float32 ``.npy`` files in a feature cache, written in
chunks so the writer never holds them whole) stand in for a backbone pass: class means plus Gaussian
noise, labels with symmetric noise. Each method then runs as a grid cell would — the engine's Trainer
reading the cache (memory-mapped on the CPU, in device memory on a GPU) — in a fresh process, so the
peak memory is its own: peak resident set (``VmHWM``, which counts the pages of the memory-mapped
files read) and peak anonymous memory (``RssAnon`` sampled every 20 ms: what the process allocated
itself, the part that must stay bounded as N grows).

Methods: CE, GCE, ELR (one head), DivideMix and UNICON (two heads, K = 2 cached augmented views), CL
(5 out-of-fold probes, cleanlab, a final probe) and TURN's probe and selection (GCE probe, per-class
GMM, class-balanced draw; its FFT phase needs images and is measured by throughput.py). "epochs" is
the number of LP epochs the method ran (CL: 6 × E); s/epoch = wall / epochs.

    python benchmarks/lp_scale.py --sizes 10000 100000 --classes 14 100
    python benchmarks/lp_scale.py --sizes 1000000 --classes 100 --methods ce dividemix cl turn --epochs 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from nlbench.engine.features import FeatureCache, FeatureKey, array_digest

METHODS = ("ce", "gce", "elr", "dividemix", "unicon", "cl", "turn")
VIEWS = 2  # DivideMix's and UNICON's default K of cached augmented views
SPLITS = {"val": 2_500, "test": 10_000}
SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}
CHUNK = 65_536


def synthetic_labels(n: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, labels with 40 % symmetric noise)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, num_classes, n)
    flip = rng.random(n) < 0.4
    noisy = np.where(flip, rng.integers(0, num_classes, n), true)
    return true, noisy


def feature_key(n: int, num_classes: int, dim: int, split: str, view: int) -> FeatureKey:
    return FeatureKey(backbone="synthetic", weights="random",
                      dataset={"dataset": f"synthetic-n{n}-c{num_classes}-d{dim}"},
                      split=split, view=view, transform={})


def split_size(n: int, split: str) -> int:
    return n if split == "train" else SPLITS[split]


def write_features(cache: FeatureCache, n: int, num_classes: int, dim: int, seed: int = 0) -> float:
    """Write every (split, view) the methods read, chunk by chunk; MiB written (0 when all present)."""
    written = 0.0
    means = np.random.default_rng(seed).normal(0, 1, (num_classes, dim)).astype(np.float32)
    for split in ("train", "val", "test"):
        size = split_size(n, split)
        true, _ = synthetic_labels(size, num_classes, seed + SPLIT_SEEDS[split])
        for view in range(VIEWS + 1 if split == "train" else 1):
            key = feature_key(n, num_classes, dim, split, view)
            if cache.load(key, size) is not None:
                continue
            data, meta = cache.paths(key)
            data.parent.mkdir(parents=True, exist_ok=True)
            tmp = data.with_suffix(".tmp.npy")
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(size, dim))
            rng = np.random.default_rng(seed * 1000 + view)
            for start in range(0, size, CHUNK):
                stop = min(size, start + CHUNK)
                noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
                out[start:stop] = means[true[start:stop]] + 2.0 * noise
            out.flush()
            del out
            os.replace(tmp, data)
            # The cache verifies entries by the sha256 of their bytes, hashed here over the memory map.
            digest = array_digest(np.load(data, mmap_mode="r"))
            meta.write_text(json.dumps({"key": key.as_dict(), "shape": [size, dim], "seconds": 0.0, "sha256": digest}))
            written += size * dim * 4 / 2**20
    return written


class _NoImages:
    """The image source of a split whose features are all cached: only its length is ever asked."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class _MemorySampler(threading.Thread):
    """Peak RssAnon (KiB) of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon_kib = 0
        self.stop = threading.Event()

    @staticmethod
    def status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_anon_kib = max(self.peak_anon_kib, self.status("RssAnon"))
            time.sleep(0.02)


def run_method(method: str, *, cache_root: str, n: int, num_classes: int, dim: int, epochs: int, device: str,
               threads: int | None, seed: int = 0) -> dict:
    """One LP method on cached synthetic features, timed; run in a fresh process by ``measure``."""
    if threads:
        torch.set_num_threads(threads)
    # A spawned child inherits the 'spawn' start method; cleanlab's worker pool shares its per-class
    # arrays through module globals, which only 'fork' (the default of the nlbench CLI on Linux) carries.
    if sys.platform == "linux":
        multiprocessing.set_start_method("fork", force=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    from nlbench.engine.losses import GCELoss
    from nlbench.engine.train import TrainConfig, Trainer
    from nlbench.methods import CellContext, build_method

    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak of this measurement only
    except OSError:
        pass
    sampler = _MemorySampler()
    sampler.start()
    _, noisy = synthetic_labels(n, num_classes, seed + SPLIT_SEEDS["train"])
    true_val, _ = synthetic_labels(SPLITS["val"], num_classes, seed + SPLIT_SEEDS["val"])
    true_test, _ = synthetic_labels(SPLITS["test"], num_classes, seed + SPLIT_SEEDS["test"])

    def no_backbone():
        raise RuntimeError("lp_scale: every feature must come from the cache")

    trainer = Trainer(
        config=TrainConfig(lp_epochs=epochs, device=device), num_classes=num_classes, labels=noisy,
        val_labels=true_val, test_labels=true_test, images=lambda split, dev: _NoImages(split_size(n, split)),
        backbone_factory=no_backbone, feature_cache=FeatureCache(cache_root),
        feature_key=lambda split, view: feature_key(n, num_classes, dim, split, view),
        transform=lambda backbone, augment: None, seed=seed, log=lambda line: None)
    started, cpu_started = time.perf_counter(), time.process_time()
    selection_s = None
    if method == "turn":  # probe and selection; the FFT phase needs images (throughput.py measures it)
        turn = build_method("turn", "lp-fft", {"lp_epochs": epochs})
        probe = trainer.linear_probe(GCELoss(turn.q), epochs=epochs, desc="TURN LP")
        t0 = time.perf_counter()
        from nlbench.engine.selection import balanced_subset

        clean, losses, _gmm_fits = turn.select(trainer, probe.model)
        balanced_subset(clean, trainer.labels, num_classes, rng=np.random.default_rng(seed), losses=losses)
        selection_s = time.perf_counter() - t0
        lp_epochs = epochs
    else:
        build_method(method, "lp", {}).run(CellContext.of(trainer, "lp", dataset="synthetic", noise=("sym", 0.4)))
        lp_epochs = epochs * 6 if method == "cl" else epochs
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    sampler.stop.set()
    sampler.join()
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if trainer.device.type == "cuda" else None
    return {
        "method": method, "n": n, "classes": num_classes, "dim": dim, "device": str(trainer.device),
        "epochs": lp_epochs, "wall_s": round(wall, 2), "s_per_epoch": round(wall / lp_epochs, 3),
        # CPU seconds of this process: on a shared machine, the time one dedicated core would take
        # (with --threads 1); wall time there includes waiting for a core.
        "cpu_s": round(cpu, 2), "cpu_s_per_epoch": round(cpu / lp_epochs, 3),
        "selection_s": None if selection_s is None else round(selection_s, 2),
        "peak_rss_mib": round(_MemorySampler.status("VmHWM") / 1024, 1),
        "peak_anon_mib": round(max(sampler.peak_anon_kib, _MemorySampler.status("RssAnon")) / 1024, 1),
        "peak_gpu_mib": None if peak_gpu is None else round(peak_gpu, 1),
        "features_mib": round(n * dim * 4 / 2**20 * (1 + (VIEWS if method in ("dividemix", "unicon") else 0)), 1),
        "backbones_built": trainer.counters["backbones_built"],
    }


def measure(method: str, **kwargs) -> dict:
    """``run_method`` in a fresh process (spawn): each peak is the method's own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_method, method, **kwargs).result()


def markdown(rows: list[dict]) -> str:
    from tabulate import tabulate

    header = ["method", "N", "C", "device", "epochs", "wall s", "s/epoch", "CPU s/epoch", "CPU s/epoch per 100k",
              "selection s",
              "peak RSS MiB", "peak anon MiB", "peak GPU MiB", "features MiB"]
    table = [[r["method"], f"{r['n']:,}", r["classes"], r["device"], r["epochs"], r["wall_s"], r["s_per_epoch"],
              r.get("cpu_s_per_epoch", "—"),
              round(r["cpu_s_per_epoch"] * 1e5 / r["n"], 3) if "cpu_s_per_epoch" in r else "—",
              r["selection_s"] if r["selection_s"] is not None else "—",
              f"{r['peak_rss_mib']:,.0f}", f"{r['peak_anon_mib']:,.0f}",
              "—" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:,.0f}", f"{r['features_mib']:,.0f}"]
             for r in rows]
    return tabulate(table, headers=header, tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--classes", type=int, nargs="+", default=[14, 100])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--epochs", type=int, default=2, help="LP epochs per method (the grid's lp_epochs)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, help="CPU threads per run (torch.set_num_threads)")
    parser.add_argument("--cache-dir", default="/tmp/nlbench-lp-scale", help="where the synthetic features go")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic features afterwards")
    parser.add_argument("--in-process", action="store_true",
                        help="run the methods in this process (faster start; the CPU peaks are then the run's, "
                             "not each method's; GPU peaks stay per method)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    for value, name in ((min(args.sizes), "--sizes"), (args.dim, "--dim"), (min(args.classes), "--classes"),
                        (args.epochs, "--epochs")):
        if value < 1 or (name == "--classes" and value < 2):
            print(f"lp_scale: error: {name} {value}, must be ≥ {2 if name == '--classes' else 1}", file=sys.stderr)
            return 2
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else (
        "cpu" if args.device == "auto" else args.device)
    cache = FeatureCache(args.cache_dir)
    rows = []
    for n in args.sizes:
        for c in args.classes:
            t0 = time.perf_counter()
            mib = write_features(cache, n, c, args.dim)
            if mib:
                print(f"wrote {mib:,.0f} MiB of synthetic features (N={n:,}, C={c}) in "
                      f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            for method in args.methods:
                kwargs = dict(cache_root=args.cache_dir, n=n, num_classes=c, dim=args.dim, epochs=args.epochs,
                              device=device, threads=args.threads)
                row = run_method(method, **kwargs) if args.in_process else measure(method, **kwargs)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            if not args.keep:
                import shutil

                shutil.rmtree(cache.root / "synthetic" / f"synthetic-n{n}-c{c}-d{args.dim}", ignore_errors=True)
    print(f"device: {device}; torch {torch.__version__}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; D={args.dim}; E={args.epochs} LP epochs; one process per row")
    print(markdown(rows))
    if args.json:
        from nlbench.atomic import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps({"rows": rows}, indent=1) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
