"""One command for a GPU session: everything benchmarks/README.md's GPU columns need, in < 8 minutes.

    python benchmarks/gpu_check.py --out /tmp/gpu_check        # on a CUDA machine
    python benchmarks/gpu_check.py --smoke --out /tmp/smoke     # the same code paths on CPU, ~1 minute

Steps (each timed; a failing step is recorded and the others still run):

1. quickstart: ``nlbench run --grid quickstart`` on CUDA from an empty cache, compared cell by cell with
   a CPU reference — ``results/quickstart.md`` (best-validation table), or with ``--cpu-run`` a CPU run
   of the same grid here. Tolerances: LP rows within ``--lp-tol`` (1.0) points, FFT and TURN rows
   within ``--fft-tol`` (1.0) point: the CUDA run uses bf16 autocast and GPU kernels, so features
   and updates differ in the last bits from the CPU's fp32, and one test image of digits' 360 is 0.28
   points.
2. throughput: ``benchmarks/throughput.py`` for the six paper backbones, features and FFT training
   (eager; AdamW as the reference figures, and SGD as the engine), ViT-B/16 compiled (twice in one
   process: the second compilation shows what torch's caches save), each row with MFU.
3. fft_breakdown: where an FFT step of ViT-B/16 and ResNet-50 goes (input pipeline, forward + backward,
   SGD update, a host sync per step, an evaluation batch, a checkpoint write).
4. loader: ``benchmarks/loader.py`` (PIL, torchvision and nvJPEG decoders; workers needed).
5. lp_scale: ``benchmarks/lp_scale.py`` at N = 1M, D = 768, C = 100, every LP method, 1 epoch.

Weights are random (the cost does not depend on them; the machine has no internet). It writes
``gpu_check.json`` (every row) and ``gpu_check.md`` (markdown rows for benchmarks/README.md) under --out.
--smoke shrinks every step (a 2-cell digits grid at 32 px, compared with its own table read back;
EfficientNet-Lite0 throughput with the 'eager' compile backend; 4 JPEGs per size; N = 2,000) so CI runs
every path on CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stdout
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STEPS = ("quickstart", "throughput", "fft_breakdown", "loader", "lp_scale")
PAPER_BACKBONES = ("vit_b16", "convnext_t", "mae_vit_b16", "msn_vit_b16", "clip_vit_b16", "resnet50")
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}

SMOKE_GRID = """description = "gpu_check --smoke: two quickstart rows on digits at 32 px"
layout = "table1"
datasets = ["digits"]
backbones = ["efficientnet_lite0"]
seeds = [0]
noise = [{{ model = "sym", rate = 0.6 }}]
methods = [{{ method = "ce", mode = "fft" }}, {{ method = "ce", mode = "lp" }}]
[train]
input_size = 32
lp_epochs = 2
fft_epochs = 1
fft_batch_size = 64
device = "{device}"
"""


def mfu_percent(img_s: float, gflop_fwd: float, mode: str, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: img/s × forward GFLOP × (3 for a training step, 1 for features) over the
    card's dense bf16 peak."""
    if not peak_tflops or not img_s or not gflop_fwd:
        return None
    return 100.0 * img_s * gflop_fwd * 1e9 * (3 if mode == "train" else 1) / (peak_tflops * 1e12)


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


# --------------------------------------------------------------------------- quickstart
def parse_markdown_table(text: str) -> dict[tuple[str, str], float]:
    """{(row, column): value} of the first markdown table in ``text`` (bold markers dropped)."""
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    out = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
        for col, cell in zip(header[1:], cells[1:], strict=False):
            try:
                out[(cells[0], col)] = float(cell.split()[0])
            except (ValueError, IndexError):
                pass
    return out


def run_grid(grid: str, results: Path, cache: Path) -> float:
    """``nlbench run`` in a child process; its wall seconds. Raises on failure."""
    env = {**os.environ, "NLBENCH_CACHE": str(cache), "CI": "1"}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", grid, "--results", str(results),
                           "--cache", str(cache), "--no-progress"], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nlbench run --grid {grid} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def table(grid: str, results: Path) -> dict[tuple[str, str], float]:
    proc = subprocess.run([sys.executable, "-m", "nlbench", "table", "--grid", grid, "--results", str(results)],
                          capture_output=True, text=True, check=True)
    return parse_markdown_table(proc.stdout)


def compare(device_table: dict, reference: dict, *, lp_tol: float, fft_tol: float) -> list[dict]:
    """One row per cell present in both: the difference and whether it is within its row's tolerance
    (LP rows ``lp_tol``; FFT and LP-FFT rows ``fft_tol``)."""
    rows = []
    for key in sorted(set(device_table) & set(reference)):
        method, column = key
        tol = lp_tol if method.startswith("LP ") else fft_tol
        diff = device_table[key] - reference[key]
        rows.append({"method": method, "noise": column, "device": device_table[key], "reference": reference[key],
                     "diff": round(diff, 2), "tolerance": tol, "ok": abs(diff) <= tol + 1e-9})
    return rows


def step_quickstart(args, work: Path, device: str) -> dict:
    if args.smoke:
        grid = str(work / "smoke.toml")
        Path(grid).write_text(SMOKE_GRID.format(device=device))
    else:
        grid = "quickstart"
    seconds = run_grid(grid, work / "qs_device", work / "cache_device")
    device_table = table(grid, work / "qs_device")
    if args.smoke:
        # No second device here: the run's own table, written as markdown and read back, is the
        # reference, so the parsing and comparison code runs (every difference must be 0).
        reference_md = work / "smoke_reference.md"
        subprocess.run([sys.executable, "-m", "nlbench", "table", "--grid", grid, "--results",
                        str(work / "qs_device"), "--output", str(reference_md)], check=True, capture_output=True)
        reference, source = parse_markdown_table(reference_md.read_text()), "its own table read back (smoke)"
    elif args.cpu_run:
        # The registered grid leaves the device to 'auto': a copy with device = "cpu" runs on the CPU.
        from importlib import resources

        text = resources.files("nlbench.builtin_grids").joinpath("quickstart.toml").read_text()
        reference_grid = work / "quickstart_cpu.toml"
        reference_grid.write_text(text.replace("[train]\n", '[train]\ndevice = "cpu"\n', 1))
        cpu_seconds = run_grid(str(reference_grid), work / "qs_cpu", work / "cache_cpu")
        reference, source = table(str(reference_grid), work / "qs_cpu"), f"a CPU run here ({cpu_seconds:.1f} s)"
    else:
        reference, source = parse_markdown_table(Path(args.reference).read_text()), args.reference
    rows = compare(device_table, reference, lp_tol=args.lp_tol, fft_tol=args.fft_tol)
    if not rows:
        raise RuntimeError("no cell in common between the device run and the reference")
    return {"seconds": round(seconds, 1), "reference": source, "cells": rows,
            "all_within_tolerance": all(r["ok"] for r in rows)}


# --------------------------------------------------------------------------- the benchmark scripts
def call_script(module: str, argv: list[str]) -> dict:
    """``benchmarks/<module>.py``'s main(argv) in this process; its JSON output and printed text."""
    sys.path.insert(0, str(HERE))
    try:
        mod = __import__(module)
    finally:
        sys.path.remove(str(HERE))
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = mod.main(argv)
    if code != 0:
        raise RuntimeError(f"{module}.py {' '.join(argv)} exited {code}: {buffer.getvalue()[-2000:]}")
    return {"printed": buffer.getvalue()}


def step_throughput(args, work: Path, device: str) -> dict:
    backbones = ["efficientnet_lite0"] if args.smoke else list(PAPER_BACKBONES)
    base = ["--device", device, "--no-isolate"] + (["--iters", "2", "--warmup", "1", "--input-size", "32"]
                                                   if args.smoke else [])
    runs = {
        "eager_adamw": base + ["--backbones", *backbones],
        "eager_sgd_train": base + ["--backbones", *backbones, "--modes", "train", "--optimizer", "sgd"],
        # Compiled ViT-B/16 twice in one process: the first row pays the compilation, the second shows
        # what torch's in-process caches save for the next cell of the same architecture.
        "compiled": base + ["--backbones", *(backbones[:1] * 2), "--modes", "train", "--compile"]
        + (["--compile-backend", "eager"] if args.smoke else []),
    }
    if not args.smoke:
        runs["batch_256_compiled"] = base + ["--backbones", "vit_b16", "--modes", "train", "--compile",
                                             "--batch-sizes", "256"]
        runs["batch_64_sgd"] = base + ["--backbones", "vit_b16", "resnet50", "--modes", "train", "--optimizer",
                                       "sgd", "--batch-sizes", "64"]
    peak = peak_tflops()
    out = {}
    for name, argv in runs.items():
        path = work / f"throughput_{name}.json"
        call_script("throughput", argv + ["--json", str(path)])
        rows = json.loads(path.read_text())["rows"]
        for row in rows:
            row["mfu_percent"] = mfu_percent(row.get("img_s"), row.get("gflop_fwd_per_img"), row["mode"], peak)
        out[name] = rows
    return out


def step_loader(args, work: Path, device: str) -> dict:
    path = work / "loader.json"
    call_script("loader", ["--images", "4" if args.smoke else "200", "--dir", str(work / "jpegs"), "--device",
                           device, "--loader-workers", "1" if args.smoke else "4", "--json", str(path)])
    return json.loads(path.read_text())


def step_lp_scale(args, work: Path, device: str) -> dict:
    path = work / "lp_scale.json"
    n = "2000" if args.smoke else str(args.lp_n)
    call_script("lp_scale", ["--sizes", n, "--classes", "14" if args.smoke else "100", "--epochs", "1",
                             "--device", device, "--in-process", "--cache-dir", str(work / "lp_cache"),
                             "--json", str(path)])
    return json.loads(path.read_text())


def fft_breakdown(name: str, device: torch.device, *, size: int | None, batch: int, steps: int, work: Path,
                  amp: bool = True) -> dict:
    """Where one FFT step of the engine's recipe goes, in ms per batch: the GPU-resident input pipeline
    (CIFAR-sized uint8 images → crop/flip/resize/normalise), forward + backward, the SGD update, the
    per-step host sync the engine used to do (``float(loss)``), an evaluation batch, and one checkpoint
    write of model + optimiser state (per epoch in the engine)."""
    from torch import nn

    from nlbench.backbones import create_backbone
    from nlbench.engine.checkpoint import save_checkpoint
    from nlbench.engine.images import TensorImages
    from nlbench.engine.train import Classifier, make_optimizer
    from nlbench.engine.transforms import BatchTransform

    backbone = create_backbone(name, pretrained=False)  # random weights: the cost does not depend on them
    size = size or backbone.input_size[0]
    model = Classifier(backbone.model, nn.Linear(backbone.feature_dim, 100)).to(device)
    channels_last = backbone.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer("sgd", model.parameters(), lr=0.01, weight_decay=5e-4, momentum=0.9, device=device)
    images = TensorImages(torch.randint(0, 256, (batch * 2, 32, 32, 3), dtype=torch.uint8).numpy(), device)
    transform = BatchTransform(size=(size, size), mean=backbone.mean, std=backbone.std, augment=True)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 100, (batch,), device=device)
    use_amp = amp and device.type == "cuda"

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn, n: int = steps) -> float:
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - start) / n * 1e3

    x_uint8 = next(images.batches(torch.arange(batch).numpy(), batch, shuffle=False))[0]

    def pipeline():
        x = transform(x_uint8, generator)
        return x.contiguous(memory_format=torch.channels_last) if channels_last else x

    x = pipeline()

    def forward_backward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = nn.functional.cross_entropy(model(x).float(), labels)
        loss.backward()
        return loss

    def full_step(read_loss: bool):
        def step():
            xb = pipeline()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = nn.functional.cross_entropy(model(xb).float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if read_loss:
                float(loss.detach())
        return step

    model.train()
    out = {"backbone": name, "device": str(device), "input": size, "batch": batch, "steps": steps,
           "pipeline_ms": timed(pipeline), "forward_backward_ms": timed(forward_backward)}
    out["sgd_update_ms"] = timed(opt.step)
    out["step_no_sync_ms"] = timed(full_step(False))
    out["step_sync_each_ms"] = timed(full_step(True))
    model.eval()
    with torch.no_grad():
        def evaluate():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                model(x)
        out["eval_batch_ms"] = timed(evaluate)
    started = time.perf_counter()
    save_checkpoint(work / "breakdown.pt", {"model": model.state_dict(), "optimizer": opt.state_dict()})
    out["checkpoint_write_s"] = time.perf_counter() - started
    out["checkpoint_mib"] = (work / "breakdown.pt").stat().st_size / 2**20
    (work / "breakdown.pt").unlink()
    out["train_img_s"] = batch / out["step_no_sync_ms"] * 1e3
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def step_fft_breakdown(args, work: Path, device: str) -> list[dict]:
    if args.smoke:
        return [fft_breakdown("efficientnet_lite0", torch.device("cpu"), size=32, batch=8, steps=2, work=work)]
    return [fft_breakdown(name, torch.device(device), size=None, batch=128, steps=20, work=work)
            for name in ("vit_b16", "resnet50")]


# --------------------------------------------------------------------------- report
def markdown(result: dict) -> str:
    """Rows for benchmarks/README.md."""
    meta = result["meta"]
    lines = [f"GPU check: {meta['device']}, torch {meta['torch']}, {meta['date']}, "
             f"`python benchmarks/gpu_check.py{' --smoke' if meta['smoke'] else ''}` ({meta['seconds']:.0f} s)", ""]
    qs = result["steps"].get("quickstart", {})
    if "cells" in qs:
        worst = max(qs["cells"], key=lambda r: abs(r["diff"]))
        verdict = "all within tolerance" if qs["all_within_tolerance"] else "NOT all within tolerance"
        lines.append(f"- quickstart on {meta['device']}: {qs['seconds']} s; {len(qs['cells'])} cells against "
                     f"{qs['reference']}: {verdict} "
                     f"(largest difference {worst['diff']:+.2f} points, {worst['method']} {worst['noise']})")
    tp = result["steps"].get("throughput", {})
    if isinstance(tp, dict) and "eager_adamw" in tp:
        lines += ["", "| backbone | mode | batch | optimizer | compiled | img/s | MFU % | peak MiB | first step s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for rows in tp.values():
            if not isinstance(rows, list):  # step_seconds
                continue
            for r in rows:
                mfu = "—" if r.get("mfu_percent") is None else f"{r['mfu_percent']:.1f}"
                lines.append(f"| `{r['backbone']}` | {r['mode']} | {r['batch']} | {r.get('optimizer') or '—'} | "
                             f"{'yes' if r.get('compiled') else 'no'} | {r.get('img_s')} | {mfu} | "
                             f"{r.get('peak_mib')} | {r.get('first_step_s')} |")
    ld = result["steps"].get("loader", {})
    if "rows" in ld:
        lines += ["", "| images | PIL img/s/worker | torchvision img/s/worker | nvJPEG img/s (GPU) "
                      "| read img/s/worker |", "|---|---|---|---|---|"]
        for r in ld["rows"]:
            lines.append(f"| {r['images']} | {r['pil_img_s_per_worker']} | {r['torchvision_img_s_per_worker']} | "
                         f"{r.get('cuda_decode_img_s', '—')} | {r['read_img_s_per_worker']} |")
    lp = result["steps"].get("lp_scale", {})
    if "rows" in lp:
        lines += ["", "| LP method | N | C | s/epoch | peak GPU MiB | peak RSS MiB |", "|---|---|---|---|---|---|"]
        for r in lp["rows"]:
            lines.append(f"| {r['method']} | {r['n']:,} | {r['classes']} | {r['s_per_epoch']} | "
                         f"{r['peak_gpu_mib'] if r['peak_gpu_mib'] is not None else '—'} | {r['peak_rss_mib']} |")
    fb = result["steps"].get("fft_breakdown", {})
    if "rows" in fb:
        lines += ["", "| FFT step of | batch | input pipeline ms | fwd+bwd ms | SGD update ms | step ms | "
                      "step ms, sync each | eval batch ms | checkpoint s (MiB) |", "|---" * 9 + "|"]
        for r in fb["rows"]:
            lines.append(f"| `{r['backbone']}` | {r['batch']} | {r['pipeline_ms']} | {r['forward_backward_ms']} | "
                         f"{r['sgd_update_ms']} | {r['step_no_sync_ms']} | {r['step_sync_each_ms']} | "
                         f"{r['eval_batch_ms']} | {r['checkpoint_write_s']} ({r['checkpoint_mib']:.0f}) |")
    failed = [name for name, step in result["steps"].items() if isinstance(step, dict) and "error" in step]
    if failed:
        lines += ["", f"failed steps: {', '.join(failed)} (see gpu_check.json)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny versions of every step, on CPU (CI)")
    parser.add_argument("--out", required=True, help="folder for gpu_check.json, gpu_check.md and work files")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--reference", default=str(REPO / "results" / "quickstart.md"),
                        help="CPU reference table of the quickstart (markdown)")
    parser.add_argument("--cpu-run", action="store_true",
                        help="run the quickstart on CPU here as the reference (instead of --reference)")
    parser.add_argument("--lp-tol", type=float, default=1.0, help="allowed |CUDA − CPU| of LP rows, points")
    parser.add_argument("--fft-tol", type=float, default=1.0, help="allowed |CUDA − CPU| of FFT/TURN rows, points")
    parser.add_argument("--lp-n", type=int, default=1_000_000, help="samples of the lp_scale step")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("gpu_check: error: no CUDA device, use --smoke for the CPU check", file=sys.stderr)
        return 2
    device = "cpu" if args.smoke else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from nlbench.atomic import atomic_write_bytes

    started = time.perf_counter()
    result = {"meta": {"device": torch.cuda.get_device_name() if device == "cuda" else "CPU", "smoke": args.smoke,
                       "torch": torch.__version__, "host": platform.node(), "cpus": os.cpu_count(),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "weights": "random (no internet on the GPU machine; cost does not depend on weights)"},
              "steps": {}}
    steps = {"quickstart": step_quickstart, "throughput": step_throughput, "fft_breakdown": step_fft_breakdown,
             "loader": step_loader, "lp_scale": step_lp_scale}
    with tempfile.TemporaryDirectory(prefix="gpu_check-", dir=out) as tmp:
        for name in args.steps:
            t0 = time.perf_counter()
            print(f"gpu_check: {name} …", file=sys.stderr, flush=True)
            try:
                value = steps[name](args, Path(tmp), device)
                result["steps"][name] = {"rows": value} if isinstance(value, list) else value
            except Exception as exc:  # one failing step must not lose the others' figures
                result["steps"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc()[-4000:]}
            result["steps"][name] = {**result["steps"][name], "step_seconds": round(time.perf_counter() - t0, 1)} \
                if isinstance(result["steps"][name], dict) else result["steps"][name]
            # Written after every step: a check stopped by a time limit keeps what it measured.
            atomic_write_bytes(out / "gpu_check.json", (json.dumps(result, indent=1, default=str) + "\n").encode())
            error = result["steps"][name].get("error")
            print(f"gpu_check: {name} done in {time.perf_counter() - t0:.1f} s"
                  f"{' (FAILED: ' + error[:300] + ')' if error else ''}", file=sys.stderr, flush=True)
    result["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_bytes(out / "gpu_check.json", (json.dumps(result, indent=1, default=str) + "\n").encode())
    text = markdown(result)
    atomic_write_bytes(out / "gpu_check.md", text.encode())
    print(text)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    failed = [n for n, s in result["steps"].items() if "error" in s]
    qs_ok = result["steps"].get("quickstart", {}).get("all_within_tolerance", True)
    return 1 if failed or not qs_ok else 0


if __name__ == "__main__":
    sys.exit(main())
