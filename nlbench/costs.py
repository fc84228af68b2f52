"""GPU-hour estimates of a grid's cells, from a per-backbone cost table measured on an H100.

The table (``COSTS``) holds the reference figures of ``shared/spec/performance.md``: one NVIDIA H100 80GB
HBM3, torch 2.11 + CUDA 13, timm 1.0.29, random weights, 224 px, bf16 autocast, channels_last for conv
nets, fused AdamW; batch 128 for training, 512 for features. MAE and MSN ViT-B/16 have the ViT-B/16 cost
(same architecture). ``benchmarks/throughput.py`` measures the same quantities on any machine.

What a grid costs (``estimate_gpu_hours``):

* FFT cell (mode 'fft'): ``fft_epochs`` × train images at the FFT train rate (the method's own
  ``fft_epochs`` where it has one, else the grid's ``[train] fft_epochs``), plus one evaluation pass over
  val + test per epoch at the feature rate. That evaluation count is an upper bound: test runs only on
  epochs that improve validation accuracy and on the last.
* TURN's FFT phase (mode 'lp-fft'): the method's ``fft_epochs`` (5) × the selected class-balanced subset
  at the FFT train rate, plus val + test per epoch. The subset size is not known before the run; we
  assume the expected clean share of the training labels, ``1 − rate`` for synthetic noise, and
  ``1 − REAL_NOISE_RATE[dataset]`` for real noise (noise 'none'). It is an upper bound of the class-balanced set (the
  balanced draw keeps n = min_c |clean_c| per class) as long as the selection is precise.
* LP and LP-FFT cells share features: one pass per (backbone, tag, weights, dataset, split, view) over
  the whole grid, at the feature rate: train, val and test at view 0, plus train views 1..K for methods
  with K cached augmented views (DivideMix and UNICON's ``views``). Training a linear head on cached
  features takes seconds and is not counted.
* Inputs at another size than 224 px (``[train] input_size``) scale the cost by the pixel ratio
  (size/224)², a rough rule (small inputs use the GPU less well than that).

Fixed costs are not counted: process start, model build, dataset decoding from disk (the CIFAR pipeline
runs on the GPU at ≈ 374k img/s, performance.md), feature-cache reads.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from nlbench.grids import CellSpec


@dataclass(frozen=True)
class BackboneCost:
    """H100 figures of one architecture at 224 px (performance.md)."""

    arch: str
    gflop_fwd: float  # forward GFLOP per image
    features_img_s: float  # inference, batch 512, bf16
    train_img_s: float  # FFT training step, batch 128, bf16, eager
    train_img_s_compiled: float | None = None  # with torch.compile, where measured
    peak_train_gib: float | None = None

    def train_rate(self, compiled: bool) -> float:
        return self.train_img_s_compiled if compiled and self.train_img_s_compiled else self.train_img_s


_VIT = BackboneCost("vit_base_patch16_224", 35.1, 8835, 2448, 3142, 9.5)
COSTS: dict[str, BackboneCost] = {
    "vit_b16": _VIT,
    "mae_vit_b16": _VIT,  # same architecture as ViT-B/16
    "msn_vit_b16": _VIT,
    "clip_vit_b16": BackboneCost("vit_base_patch16_clip_224", 35.1, 8796, 2425, None, 9.6),
    "convnext_t": BackboneCost("convnext_tiny", 8.9, 7788, 2533, None, 8.0),
    "resnet50": BackboneCost("resnet50", 8.2, 13152, 3706, None, 5.7),
    "efficientnet_lite0": BackboneCost("tf_efficientnet_lite0", 0.8, 20605, 4898, None, 5.0),
}
REFERENCE_SIZE = 224
HARDWARE = "NVIDIA H100 80GB HBM3 (shared/spec/performance.md)"

# (train, val, test) images at each loader's default options; a cell's dataset_options train_size /
# val_size / test_size win. Sources: the loaders in nlbench/datasets/ and the datasets' papers.
SPLIT_SIZES: dict[str, tuple[int, int, int]] = {
    "cifar10": (47_500, 2_500, 10_000),  # 50k training images − 2.5k held out (the paper's CIFAR split)
    "cifar100": (47_500, 2_500, 10_000),
    "cifar10n": (47_500, 2_500, 10_000),
    "cifar100n": (47_500, 2_500, 10_000),
    "clothing1m": (1_000_000, 14_313, 10_526),  # Xiao et al. 2015 key lists
    "webvision": (2_400_000 - 2_500, 2_500, 50_000),  # ≈ 2.4M Google + Flickr; 2.5k held out; WebVision val
    "webvision/mini": (66_000 - 2_500, 2_500, 2_500),  # ≈ 66k Google images of 50 classes (Jiang et al. 2018)
    "digits": (1_257, 180, 360),  # scikit-learn digits, nlbench's 70/10/20 split
}
# Estimated noise rates of the real-noise datasets, for the size of TURN's clean subset.
REAL_NOISE_RATE = {
    "clothing1m": 0.385,  # Xiao et al. 2015: 61.54 % of the noisy labels are correct
    "webvision": 0.20,  # Li et al. 2017: about 20 % label noise
    "cifar10n": 0.40,  # CIFAR-10N "worst" labels, 40.21 % noise (Wei et al. 2022)
    "cifar100n": 0.40,  # CIFAR-100N fine labels, 40.20 % noise (Wei et al. 2022)
}


@dataclass
class BackboneHours:
    """One backbone's share of a grid: images per kind and the hours they take."""

    backbone: str
    fft_cells: int = 0
    turn_cells: int = 0
    lp_cells: int = 0
    train_images: float = 0.0  # FFT training images (baselines and TURN), 224-px equivalents
    eval_images: float = 0.0  # FFT per-epoch evaluation images
    feature_images: float = 0.0  # feature-cache fills
    feature_passes: int = 0  # distinct (dataset, split, view, …) passes
    hours: float = 0.0


@dataclass
class CostEstimate:
    """Result of ``estimate_gpu_hours``: ``rows`` per backbone, ``total_hours``, and backbones or datasets
    the tables lack (not counted)."""

    rows: list[BackboneHours]
    total_hours: float
    missing_backbones: list[str] = field(default_factory=list)
    missing_datasets: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Lines per backbone and a total, with the assumptions in one line."""
        lines = [f"estimated GPU time on one {HARDWARE}:"]
        width = max([len(r.backbone) for r in self.rows] + [8])
        for r in self.rows:
            lines.append(
                f"  {r.backbone:<{width}}  {r.hours:7.2f} h  ({r.fft_cells} FFT + {r.turn_cells} TURN cells: "
                f"{_count(r.train_images)} train img, {_count(r.eval_images)} eval img; "
                f"{r.lp_cells} LP cells: {r.feature_passes} feature passes, {_count(r.feature_images)} img)")
        lines.append(f"  {'total':<{width}}  {self.total_hours:7.2f} h")
        lines.append("  (bf16 eager figures, compiled where [train] compile is set; TURN subset = expected clean "
                     "share; evaluation of val+test every FFT epoch; fixed costs not counted; see nlbench/costs.py)")
        if self.missing_backbones:
            lines.append(f"  not counted, no cost figures: {', '.join(self.missing_backbones)}")
        if self.missing_datasets:
            lines.append(f"  not counted, unknown dataset size (pass train_size): {', '.join(self.missing_datasets)}")
        return "\n".join(lines)


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def split_sizes(cell: CellSpec, train_size: dict[str, int] | None = None) -> tuple[int, int, int] | None:
    """(train, val, test) images of the cell's dataset: dataset_options, then ``train_size``, then the table."""
    opts = cell.dataset_options or {}
    key = f"{cell.dataset}/{opts['variant']}" if opts.get("variant") not in (None, "full") else cell.dataset
    table = SPLIT_SIZES.get(key)
    train = opts.get("train_size") or (train_size or {}).get(cell.dataset) or (table[0] if table else None)
    if train is None:
        return None
    val = opts.get("val_size", table[1] if table else 0)
    test = opts.get("test_size") or (table[2] if table else 0)
    return int(train), int(val), int(test)


def clean_fraction(cell: CellSpec) -> float:
    """Expected share of correct training labels: 1 − rate for synthetic noise; for noise 'none' (the
    labels as given) 1 − REAL_NOISE_RATE of a real-noise dataset, 1 for any other."""
    if cell.noise == "none":
        return 1.0 - REAL_NOISE_RATE.get(cell.dataset, 0.0)
    return 1.0 - cell.rate


def estimate_gpu_hours(cells: list[CellSpec], train_size: dict[str, int] | None = None) -> CostEstimate:
    """GPU-hours of ``cells`` on one H100 (module docstring: what is counted and how).

    train_size: training images per dataset name, for datasets the size table lacks or to override it
    (a cell's ``dataset_options['train_size']`` wins over both).
    """
    rows: dict[str, BackboneHours] = {}
    missing_b: set[str] = set()
    missing_d: set[str] = set()
    passes: dict[str, set] = defaultdict(set)
    for cell in cells:
        cost = COSTS.get(cell.backbone)
        sizes = split_sizes(cell, train_size)
        if cost is None:
            missing_b.add(cell.backbone)
            continue
        if sizes is None:
            missing_d.add(cell.dataset)
            continue
        n_train, n_val, n_test = sizes
        row = rows.setdefault(cell.backbone, BackboneHours(cell.backbone))
        input_size = cell.train.get("input_size") or REFERENCE_SIZE
        scale = (input_size / REFERENCE_SIZE) ** 2
        train_rate = cost.train_rate(bool(cell.train.get("compile")))
        seconds = 0.0
        if cell.mode in ("fft", "lp-fft"):
            epochs = int(cell.method_params.get("fft_epochs", cell.train.get("fft_epochs", 10)))
            share = clean_fraction(cell) if cell.mode == "lp-fft" else 1.0
            train_img = epochs * n_train * share * scale
            eval_img = epochs * (n_val + n_test) * scale
            row.train_images += train_img
            row.eval_images += eval_img
            seconds += train_img / train_rate + eval_img / cost.features_img_s
            if cell.mode == "fft":
                row.fft_cells += 1
            else:
                row.turn_cells += 1
        if cell.mode in ("lp", "lp-fft"):
            if cell.mode == "lp":
                row.lp_cells += 1
            views = int(cell.method_params.get("views", 0) or 0) if cell.mode == "lp" else 0
            ident = (cell.backbone_tag, cell.backbone_weights, cell.dataset,
                     json.dumps(cell.dataset_options, sort_keys=True, default=str), input_size)
            wanted = [("train", v) for v in range(views + 1)] + [("val", 0), ("test", 0)]
            for split, view in wanted:
                key = (*ident, split, view)
                if key in passes[cell.backbone]:
                    continue
                passes[cell.backbone].add(key)
                n = {"train": n_train, "val": n_val, "test": n_test}[split] * scale
                row.feature_passes += 1
                row.feature_images += n
                seconds += n / cost.features_img_s
        row.hours += seconds / 3600.0
    ordered = [rows[b] for b in dict.fromkeys(c.backbone for c in cells) if b in rows]
    return CostEstimate(rows=ordered, total_hours=sum(r.hours for r in ordered),
                        missing_backbones=sorted(missing_b), missing_datasets=sorted(missing_d))
