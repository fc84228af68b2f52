"""Throughput of the backbones: feature extraction and full fine-tuning, images/s and peak memory.

Runs on whatever device it finds (or ``--device``). On CUDA: bf16 autocast, channels_last for the conv
nets, PyTorch's fused attention (timm's and open_clip's default), fused AdamW, the checkpoint's input
size, batch 128 for training and 512 for features (the settings of docs/performance.md's reference), and MFU
from torch's FlopCounterMode (training = 3 × forward FLOPs) against the GPU's dense bf16 peak. On CPU:
fp32, small inputs (64 px) and a few iterations, so that all seven backbones finish in minutes on 2 cores.

Weights are random unless ``--pretrained`` or ``--weights`` (the cost does not depend on them). Inputs are
random normalised tensors already on the device: the input pipeline is measured separately
(performance.md: the GPU-resident CIFAR pipeline costs 0.34 ms per batch of 128).

    python benchmarks/throughput.py                      # all backbones, device defaults
    python benchmarks/throughput.py --backbones vit_b16 resnet50 --batch-sizes 64 128 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nlbench.backbones import create_backbone
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES

# Dense bf16 tensor-core peak (vendor data sheets), for MFU.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_FLOPS.items():
        if key in name:
            return value
    return None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Linux: writing 5 to clear_refs resets the process's peak resident set (VmHWM).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: peak allocated by torch; CPU: the process's peak resident set since the last reset."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_gflop(model: nn.Module, size: int, device: torch.device, channels_last: bool) -> float:
    """Forward GFLOP per image (torch's FlopCounterMode: matmuls, convolutions, attention).

    Counted in training mode with autograd on: in inference, ``nn.MultiheadAttention`` (open_clip) takes a
    fused fast path whose projections the counter does not see. (BatchNorm statistics move by one batch;
    the weights are a benchmark's.)
    """
    from torch.utils.flop_counter import FlopCounterMode

    # Two images: one would stop BatchNorm in training mode where a conv net's last map is 1×1 (small inputs).
    x = torch.randn(2, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.train()
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def time_loop(step, iters: int, warmup: int, device: torch.device) -> list[float]:
    """Seconds of each of ``iters`` calls of ``step``, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def measure(name: str, *, device: torch.device, size: int | None, batch: int, mode: str, iters: int, warmup: int,
            amp: bool, channels_last: bool, compile_model: bool, pretrained: bool, weights: str | None,
            tag: str | None, num_classes: int = 100, optimizer: str = "adamw",
            compile_backend: str = "inductor") -> dict:
    """One measurement: ``mode`` 'features' (inference) or 'train' (a full fine-tuning step)."""
    backbone = create_backbone(name, pretrained=pretrained, weights=weights, tag=tag)
    size = size or backbone.input_size[0]
    cl = channels_last and backbone.channels_last
    model: nn.Module = backbone.model
    if mode == "train":
        model = nn.Sequential(model, nn.Linear(backbone.feature_dim, num_classes))
    model = model.to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    gflop = forward_gflop(backbone.model, size, device, cl)
    run = torch.compile(model, backend=compile_backend) if compile_model else model
    x = torch.randn(batch, 3, size, size, device=device)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=device)
    use_amp = amp and device.type == "cuda"
    reset_peak_memory(device)
    if mode == "features":
        model.eval()

        def step() -> None:
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                run(x)
    else:
        model.train()
        # AdamW: the reference figures' step; SGD with momentum: the engine's FFT default (nlbench/engine/train.py).
        opt = (torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda") if optimizer == "adamw"
               else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, weight_decay=5e-4))

        def step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = run(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    sync(device)
    started = time.perf_counter()
    step()  # the first step: compilation when compiled, cuDNN autotuning otherwise
    sync(device)
    first_step_s = time.perf_counter() - started
    times = sorted(time_loop(step, iters, max(0, warmup - 1), device))
    seconds = times[len(times) // 2]  # median step: robust to other processes sharing the machine
    img_s = batch / seconds
    peak = peak_flops(device)
    flops_per_img = gflop * 1e9 * (3 if mode == "train" else 1)
    row = {
        "backbone": name, "mode": mode, "device": device_name(device), "input": size, "batch": batch,
        "img_s": round(img_s, 2), "img_s_best": round(batch / times[0], 2), "ms_per_step": round(seconds * 1e3, 2),
        "peak_mib": round(peak_memory_mib(device), 1), "gflop_fwd_per_img": round(gflop, 3),
        "mfu_percent": round(100 * img_s * flops_per_img / peak, 1) if peak else None,
        "amp": "bf16" if use_amp else "fp32", "channels_last": cl, "compiled": compile_model,
        "first_step_s": round(first_step_s, 2), "optimizer": optimizer if mode == "train" else None,
    }
    return row


def _measure_in_child(name: str, kwargs: dict, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    return measure(name, **kwargs)


def in_fresh_process(name: str, kwargs: dict, threads: int | None) -> dict:
    """``measure`` in a new process: memory freed by earlier models stays in a process's resident set."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_in_child, name, kwargs, threads).result()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--backbones", nargs="+", help="default: every registered backbone")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--input-size", type=int, help="square input side (default: checkpoint's on CUDA, 64 on CPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="training batches (default: 128 CUDA, 8 CPU)")
    parser.add_argument("--feature-batch-sizes", type=int, nargs="+", help="feature batches (default: 512 CUDA, 8 CPU)")
    parser.add_argument("--modes", nargs="+", default=["features", "train"], choices=["features", "train"])
    parser.add_argument("--iters", type=int, help="timed iterations (default: 20 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (default: 5 CUDA, 1 CPU)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels_last for conv nets")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on GPUs)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend ('eager' checks the compile path quickly on CPU)")
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"],
                        help="training step's optimiser: adamw (the reference figures) or sgd (the engine's FFT)")
    parser.add_argument("--pretrained", action="store_true", help="load published weights (needs them cached)")
    parser.add_argument("--weights", help="local checkpoint file (with one backbone)")
    parser.add_argument("--tag", help="checkpoint tag (with one backbone)")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each measurement in a fresh process, so peak memory is its own "
                             "(default: on for CPU, where the process's peak resident set is measured)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    names = args.backbones or BACKBONES.names()
    try:
        for name in names:
            BACKBONES.entry(name)
        if (args.weights or args.tag) and len(names) != 1:
            raise ConfigError("--weights and --tag need exactly one backbone in --backbones")
    except ConfigError as exc:
        print(f"throughput: error: {exc}", file=sys.stderr)
        return 2
    size = args.input_size or (None if cuda else 64)
    train_batches = args.batch_sizes or ([128] if cuda else [8])
    feature_batches = args.feature_batch_sizes or ([512] if cuda else [8])
    iters = args.iters or (20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    isolate = (not cuda) if args.isolate is None else args.isolate
    if cuda:
        torch.backends.cudnn.benchmark = True

    rows = []
    for name in names:
        for mode in args.modes:
            for batch in feature_batches if mode == "features" else train_batches:
                kwargs = dict(device=device, size=size, batch=batch, mode=mode, iters=iters, warmup=warmup,
                              amp=args.amp, channels_last=args.channels_last, compile_model=args.compile,
                              pretrained=args.pretrained, weights=args.weights, tag=args.tag,
                              optimizer=args.optimizer, compile_backend=args.compile_backend)
                try:
                    row = in_fresh_process(name, kwargs, args.threads) if isolate else measure(name, **kwargs)
                except torch.cuda.OutOfMemoryError:
                    row = {"backbone": name, "mode": mode, "batch": batch, "img_s": None, "error": "out of memory"}
                    torch.cuda.empty_cache()
                except ConfigError as exc:
                    print(f"throughput: error: {exc}", file=sys.stderr)
                    return 2
                rows.append(row)
                if cuda:
                    torch.cuda.empty_cache()
                print(json.dumps(row), file=sys.stderr, flush=True)

    from tabulate import tabulate

    header = ["backbone", "mode", "input", "batch", "img/s", "best img/s", "ms/step", "peak MiB", "GFLOP fwd/img",
              "MFU %"]
    table = [[r["backbone"], r["mode"], r.get("input"), r["batch"], r["img_s"], r.get("img_s_best"),
              r.get("ms_per_step"), r.get("peak_mib"), r.get("gflop_fwd_per_img"), r.get("mfu_percent")] for r in rows]
    print(f"device: {device_name(device)}; torch {torch.__version__}; median of {iters} steps after {warmup} "
          f"warm-up; {'bf16 autocast' if cuda and args.amp else 'fp32'}{'; one process per row' if isolate else ''}")
    print(tabulate(table, headers=header, tablefmt="github"))
    if args.json:
        meta = {"device": device_name(device), "torch": torch.__version__, "iters": iters, "warmup": warmup,
                "host": platform.node(), "cpu_count": os.cpu_count(), "argv": sys.argv[1:]}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
