"""What verifying a feature-cache entry costs, next to the LP cell that reads it.

Writes one entry of CIFAR-100's size (50,000 × 768 float32 train features, a ViT-B/16's width; 146 MiB) into
a scratch feature cache and times, in a fresh process each (so the per-process memo is empty):
- ``load`` without verification (np.load memory-mapped, as before checksums),
- the first verified ``FeatureCache.load`` (sha256 of the whole file), page cache warm and cold
  (``posix_fadvise(DONTNEED)`` drops the file's pages first),
- a second verified load in the same process (memoized per file version),
and one epoch of the LP training loop the entry feeds (AdamW, batch 128, 768 → 100 linear head, torch on
the CPU), times 20 epochs = the paper's E_LP.

    python benchmarks/checksum_cost.py [--folder /tmp/checksum-bench] [--rows 50000] [--dim 768]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
import numpy as np
from nlbench.engine.features import FeatureCache, FeatureKey
root, rows, dim, cold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "cold"
cache = FeatureCache(root)
key = FeatureKey("bench", "random", {"dataset": "bench"}, "train", 0, {})
data, _ = cache.paths(key)
if cold:
    fd = os.open(data, os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
t = time.perf_counter(); plain = np.load(data, mmap_mode="r"); unverified = time.perf_counter() - t
if cold:
    fd = os.open(data, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
t = time.perf_counter(); array = cache.load(key, rows); first = time.perf_counter() - t
t = time.perf_counter(); cache.load(key, rows); second = time.perf_counter() - t
assert array is not None and array.shape == (rows, dim)
print(json.dumps({"unverified_s": unverified, "first_verified_s": first, "second_verified_s": second}))
"""


def lp_epoch_seconds(rows: int, dim: int, classes: int = 100, batch: int = 128) -> float:
    import torch

    torch.manual_seed(0)
    x, y = torch.randn(rows, dim), torch.randint(0, classes, (rows,))
    head = torch.nn.Linear(dim, classes)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    start = time.perf_counter()
    for idx in torch.randperm(rows).split(batch):
        loss = torch.nn.functional.cross_entropy(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/checksum-bench")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=768)
    args = parser.parse_args()

    import numpy as np
    import torch

    from nlbench.engine.features import FeatureCache, FeatureKey

    cache = FeatureCache(args.folder)
    key = FeatureKey("bench", "random", {"dataset": "bench"}, "train", 0, {})
    array = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float32)
    start = time.perf_counter()
    cache.store(key, array, seconds=0.0)
    store_s = time.perf_counter() - start
    size_mib = cache.paths(key)[0].stat().st_size / 2**20
    runs = {}
    for mode in ("warm", "cold"):
        out = subprocess.run([sys.executable, "-c", CHILD, args.folder, str(args.rows), str(args.dim), mode],
                             capture_output=True, text=True, check=True)
        runs[mode] = json.loads(out.stdout)
    epoch = lp_epoch_seconds(args.rows, args.dim)
    print(f"entry: {args.rows} x {args.dim} float32, {size_mib:.1f} MiB; store (write + sha256): {store_s:.2f} s")
    for mode, r in runs.items():
        print(f"{mode} page cache: np.load unverified {r['unverified_s'] * 1e3:.1f} ms; first verified load "
              f"{r['first_verified_s']:.3f} s ({size_mib / r['first_verified_s']:.0f} MiB/s); second load in the "
              f"same process {r['second_verified_s'] * 1e3:.2f} ms")
    print(f"LP epoch (AdamW, batch 128, {args.dim} -> 100, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {epoch:.2f} s; 20 epochs: {20 * epoch:.1f} s")
    worst = max(r["first_verified_s"] for r in runs.values())
    print(f"verification / 20-epoch LP cell: {100 * worst / (20 * epoch):.1f} % (worst of warm and cold)")
    for path in cache.paths(key):  # only what this script wrote
        path.unlink()


if __name__ == "__main__":
    main()
