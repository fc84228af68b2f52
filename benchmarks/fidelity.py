"""Measured effect of each fidelity choice in docs/fidelity.md (CPU, about a minute).

    python benchmarks/fidelity.py [--fmnist-root DIR]

1. UNICON selection on simulated predictions: N = 50,000, C = 100, a model 70 % accurate on the clean
   labels, sym noise (reference convention) at 0.6 and 0.9; the code's reading (JSD in nats, cutoff = mean,
   reference weights) against the paper's (bits, adaptive cutoff d_u 0.7 τ 5, w = 1 − d).
2. Xia et al. instance-dependent noise on a Fashion-MNIST subsample at r = 0.4, raw 0-255 pixels (the
   reference) against standardised pixels: realized rate, effective wrong classes per class (exp of the
   entropy of the realized transition row without its diagonal, averaged over classes), and how much of a
   sample's flip mass its largest wrong class takes.
3. TURN's GMM on the per-sample CE of a GCE linear probe (q 0.7, 20 epochs) on raw pixels, exclusive sym
   0.6: precision / recall of the kept set with DivideMix's EM settings against a fit run to convergence.
4. With ``--turn-cell DIR``: the same comparison in two real TURN cells (Fashion-MNIST 5,000 train images,
   EfficientNet-Lite0 at 32 px, exclusive sym 0.6, 1 FFT epoch), run by ``nlbench run`` under DIR (grid,
   records, feature cache); about 15 minutes on 2 busy CPU cores.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import truncnorm

from nlbench.datasets import load_dataset
from nlbench.engine.losses import GCELoss
from nlbench.engine.selection import (
    JSD_BASES,
    gmm_select,
    jsd_to_labels,
    refinement_weights,
    unicon_selection_ratio,
    uniform_selection,
)
from nlbench.noise import apply_noise, flip_distribution, instance_inputs
from nlbench.run.records import read_record

READINGS = {  # (jsd_base, cutoff, weight_rule)
    "code (default)": ("e", "mean", "reference"),
    "paper": ("2", "adaptive", "paper"),
}


def simulated_predictions(clean: np.ndarray, num_classes: int, accuracy: float, rng: np.random.Generator,
                          margin: float = 3.0) -> np.ndarray:
    """(N, C) softmax of N(0, 1) logits with ``margin`` added to the predicted class; the predicted class is
    the clean one with probability ``accuracy``, else a uniformly drawn other class."""
    n = len(clean)
    correct = rng.random(n) < accuracy
    pred = np.where(correct, clean, (clean + rng.integers(1, num_classes, n)) % num_classes)
    z = rng.standard_normal((n, num_classes))
    z[np.arange(n), pred] += margin
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def unicon_selection() -> None:
    n, c = 50_000, 100
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(c), n // c)
    print("\n### 1. UNICON selection (simulated 70 %-accurate model, N = 50,000, C = 100)\n")
    print("| sym rate | reading | selection ratio | labelled | precision of labelled | mean weight w |")
    print("|---|---|---|---|---|---|")
    for rate in (0.6, 0.9):
        noisy = apply_noise("sym", clean, rate=rate, seed=0, num_classes=c).labels
        probs = simulated_predictions(clean, c, 0.7, rng)
        for name, (base, cutoff, rule) in READINGS.items():
            d = jsd_to_labels(probs, noisy, base=JSD_BASES[base])
            _, ratio = unicon_selection_ratio(d, d_u=0.7, tau=5.0, cutoff=cutoff)
            chosen = uniform_selection(d, noisy, c, ratio)
            precision = float((noisy[chosen] == clean[chosen]).mean()) if len(chosen) else float("nan")
            w = refinement_weights(d[chosen], rule).mean()
            print(f"| {rate} | {name} | {ratio:.3f} | {len(chosen):,} | {precision:.3f} | {w:.3f} |")


def effective_classes(rows: np.ndarray) -> np.ndarray:
    """exp(entropy) of each row's distribution (rows normalised; an all-zero row gives 0)."""
    totals = rows.sum(1, keepdims=True)
    p = np.divide(rows, totals, out=np.zeros_like(rows), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    return np.where(totals[:, 0] > 0, np.exp(h), 0.0)


def xia_noise(root: str | None) -> None:
    data = load_dataset("fashion_mnist", root=root, train_size=3000, val_size=500, test_size=1000)
    images = np.concatenate([data.train.images, data.val.images])
    clean = np.concatenate([data.train.labels, data.val.labels])
    c, rate, seed = data.num_classes, 0.4, 0
    print(f"\n### 2. Xia et al. noise, Fashion-MNIST subsample ({len(clean):,} images), r = {rate}\n")
    print("| pixel scale | realized rate | effective wrong classes per class (realized) "
          "| samples whose largest wrong class takes > ½ / > 0.9 of their flip mass | mean share of it |")
    print("|---|---|---|---|---|")
    for scale in ("raw", "standardised"):
        out = apply_noise("inst", clean, rate=rate, seed=seed, num_classes=c, inputs=images, pixel_scale=scale)
        # The generator's per-sample distributions, drawn as noise.instance_dependent draws them.
        rng = np.random.default_rng(seed)
        q = truncnorm.rvs(-rate / 0.1, (1 - rate) / 0.1, loc=rate, scale=0.1, size=len(clean), random_state=rng)
        x = instance_inputs(images, scale)
        w = rng.standard_normal((c, x.shape[1], c), dtype=np.float32)
        probs = flip_distribution(x, clean, q, w)
        class_means = np.stack([probs[clean == k].mean(0) for k in range(c)])
        assert np.allclose(class_means, out.expected_transition)  # the same draws as apply_noise's
        flip_mass = probs.copy()
        flip_mass[np.arange(len(clean)), clean] = 0.0
        share = flip_mass.max(1) / flip_mass.sum(1)
        off = out.transition.copy()
        np.fill_diagonal(off, 0.0)
        eff = effective_classes(off).mean()
        print(f"| {scale} | {out.realized_rate:.3f} | {eff:.2f} | {100 * (share > 0.5).mean():.1f} % / "
              f"{100 * (share > 0.9).mean():.1f} % | {share.mean():.3f} |")


def gce_probe_losses(x: np.ndarray, labels: np.ndarray, num_classes: int, *, epochs: int = 20,
                     seed: int = 0) -> np.ndarray:
    """Per-sample CE of a linear probe trained with GCE (q 0.7; AdamW 1e-3, batch 128) on standardised x."""
    torch.manual_seed(seed)
    xt = torch.as_tensor((x - x.mean(0)) / (x.std(0) + 1e-8), dtype=torch.float32)
    yt = torch.as_tensor(labels)
    head = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.0)
    loss_fn = GCELoss(0.7)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(128):
            opt.zero_grad()
            loss_fn(head(xt[idx]), yt[idx]).backward()
            opt.step()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(head(xt), yt, reduction="none").numpy()


def turn_gmm(root: str | None) -> None:
    print("\n### 3. TURN's GMM on GCE-probe losses (linear probe on raw pixels, exclusive sym 0.6)\n")
    print("| data | EM settings | kept | precision | recall | EM iterations (mean, max) | converged fits |")
    print("|---|---|---|---|---|---|---|")
    cases = {"digits (1,257 train)": load_dataset("digits"),
             "Fashion-MNIST (5,000 train)": load_dataset("fashion_mnist", root=root, train_size=5000,
                                                           val_size=500, test_size=1000)}
    settings = {"DivideMix (max_iter 10, tol 1e-2)": {"max_iter": 10, "tol": 1e-2},
                "converged (TURN default: max_iter 1000, tol 1e-3)": {"max_iter": 1000, "tol": 1e-3}}
    for name, data in cases.items():
        clean = data.train.labels
        c = data.num_classes
        noisy = apply_noise("sym", clean, rate=0.6, seed=0, num_classes=c, convention="exclusive").labels
        x = data.train.images.reshape(len(clean), -1).astype(np.float32)
        losses = gce_probe_losses(x, noisy, c)
        truly_clean = noisy == clean
        for label, em in settings.items():
            kept, fits = gmm_select(losses, noisy, c, tau=0.5, scope="per_class", seed=0, **em)
            precision = (kept & truly_clean).sum() / max(1, kept.sum())
            recall = (kept & truly_clean).sum() / truly_clean.sum()
            iters = [f.n_iter for f in fits]
            print(f"| {name} | {label} | {kept.sum():,} | {precision:.3f} | {recall:.3f} | "
                  f"{np.mean(iters):.1f}, {max(iters)} | {sum(f.converged for f in fits)}/{len(fits)} |")


TURN_GRID = """description = "TURN's GMM: EM to convergence against DivideMix's early stop (benchmarks/fidelity.py)"
datasets = ["fashion_mnist"]
backbones = ["efficientnet_lite0"]
seeds = [0]
noise = [{ model = "sym", rate = 0.6, convention = "exclusive" }]

[[methods]]
method = "turn"
mode = "lp-fft"
params = { fft_epochs = 1 }

[[methods]]
method = "turn"
mode = "lp-fft"
tag = "dmixem"
params = { fft_epochs = 1, gmm_max_iter = 10, gmm_tol = 0.01 }

[dataset_options.fashion_mnist]
split_seed = 0
val_size = 500
train_size = 5000
test_size = 1000

[train]
input_size = 32
"""


def turn_cells(folder: Path) -> None:
    """Run the two TURN cells of ``TURN_GRID`` under ``folder`` and tabulate their records."""
    folder.mkdir(parents=True, exist_ok=True)
    grid = folder / "turn_gmm.toml"
    grid.write_text(TURN_GRID)
    subprocess.run([sys.executable, "-m", "nlbench", "run", "--grid", str(grid), "--results",
                    str(folder / "runs"), "--cache", str(folder / "cache"), "--no-progress"], check=True)
    tabulate_turn_cells(folder / "runs")


def tabulate_turn_cells(runs: Path) -> None:
    """The TURN records under ``runs``: EM iterations, candidates, D_clean size, precision, recall, accuracy."""
    print("\n### 4. TURN cells (Fashion-MNIST 5,000, lite0 at 32 px, exclusive sym 0.6, 1 FFT epoch)\n")
    print("| cell | EM iterations per class | clean candidates | D_clean | precision | recall | test acc. |")
    print("|---|---|---|---|---|---|---|")
    for path in sorted(runs.rglob("records/*.json")):
        record = read_record(path).to_dict()  # through the record schema (older records migrated)
        extra, (sel,) = record["extra"], record["selection"]
        iters = ", ".join(str(f["n_iter"]) for f in extra["gmm_fits"])
        print(f"| {path.stem} | {iters} | {extra['clean_candidates']:,} | {sel['size']:,} | {sel['precision']:.1f} % "
              f"| {sel['recall']:.1f} % | {record['test_acc_best']:.1f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fmnist-root", default=None, help="Fashion-MNIST folder (default: the loader's)")
    parser.add_argument("--turn-cell", type=Path, default=None, metavar="DIR",
                        help="also run the two TURN cells (about 15 min on CPU); grid, records and cache go in DIR")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.time()
    print(f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
          f"torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    unicon_selection()
    xia_noise(args.fmnist_root)
    turn_gmm(args.fmnist_root)
    if args.turn_cell is not None:
        turn_cells(args.turn_cell)
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
