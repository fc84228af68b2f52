"""GPU-hour estimates of a grid's cells, from each backbone's cost figures measured on an H100.

Each backbone declares its figures where it registers (``cost=BackboneCost(...)`` in its file in
``backbones/``): the reference figures of ``docs/performance.md``: one NVIDIA H100 80GB HBM3,
2026-11-26, torch 2.11 + CUDA 13, timm 1.0.29, random weights, 224 px, bf16 autocast, channels_last for
conv nets, fused AdamW; batch 128 for training, 512 for features. MAE and MSN ViT-B/16 have the ViT-B/16
cost (same architecture). ``benchmarks/throughput.py`` and ``benchmarks/gpu_check.py`` measure the same
quantities on any machine. A backbone without measured figures gets an estimate (``backbone_cost``): its
forward GFLOPs (declared, or counted once, ``nlbench.backbones.forward_gflops``) scale the rates of the
measured architecture nearest in GFLOPs; the estimate says so.

What a grid costs (``estimate_gpu_hours``; ``CostEstimate.format`` prints each assumption):

* FFT cell (mode 'fft'): ``fft_epochs`` × train images at the FFT train rate (the method's own
  ``fft_epochs`` where it has one, else the grid's ``[train] fft_epochs``), plus one evaluation pass over
  val + test per epoch at the feature rate. That evaluation count is an upper bound: test runs only on
  epochs that improve validation accuracy and on the last.
* Compilation: a cell runs compiled where ``[train] compile`` is true, or where it is 'auto' (the
  default) and ``compile_pays``: the backbone has a measured compiled rate and the images the cell
  trains on save more time at that rate than one compilation costs (``compile_s``, the reference's
  slowest, 31 s, counted once per compiled fine-tuning run: an upper bound, since torch reuses compiled
  code across runs of one architecture in a process). The engine (``Trainer.fine_tune``) makes the same
  decision with the same function.
* Dataset sizes: each dataset declares its (train, val, test) images at its default options where it
  registers (``register_dataset(..., sizes=..., variant_sizes=...)``, read through
  ``nlbench.registry.dataset_facts``); a cell's dataset options ``train_size``/``val_size``/``test_size``
  win, then ``estimate_gpu_hours``'s ``train_size`` argument, then the declared sizes. A dataset without
  declared sizes (a user's folder or CSV) is reported, not counted.
* Input pipeline: datasets held on the device as one uint8 tensor (those registered ``in_memory=True``: CIFAR,
  digits, Fashion-MNIST) cost 0.34 ms per batch of 128 for crop, flip, resize and normalise (reference
  figure). Datasets read by path are assumed decoded as fast as the GPU trains (``benchmarks/loader.py``
  prints the workers that takes); their decoding is not counted.
* What a method's fine-tuning costs travels with its registration (``register_method``): ``fft_passes``,
  backbone training passes per image and epoch relative to CE (two networks: 2; DivideMix/UNICON's MixMatch
  steps: about 6 and 7), and ``fft_subset``. For TURN ('clean') the epochs run over the selected
  class-balanced subset, whose size is not known before the run; we assume the expected clean share of the
  training labels, ``1 − rate`` for synthetic noise, and 1 − the dataset's registered ``real_noise_rate`` for
  real noise (noise 'none'). It is an upper bound of the class-balanced set (the balanced draw keeps
  n = min_c |clean_c| per class) as long as the selection is precise. LP-FT cells of the losses (mode 'lp-fft',
  subset 'all') fine-tune on every sample.
* LP and LP-FFT cells share features: one pass per feature set (``nlbench.engine.identity.feature_group``:
  backbone, resolved weights, dataset, preprocessing), split and view over the whole grid, at the feature
  rate: train, val and test at view 0, plus train views 1..K for methods with K cached augmented views
  (DivideMix and UNICON's ``views``). Training a linear head on cached features takes seconds and is not
  counted.
* Inputs at another size than 224 px (``[train] input_size``) scale the cost by the pixel ratio
  (size/224)², a rough rule (small inputs use the GPU less well than that).
* The train rates are the reference's at batch 128 with AdamW; a cell at another ``fft_batch_size`` is
  flagged in the assumptions (its rate is not measured; SGD's update costs less than AdamW's).

Fixed costs not counted: process start, model build, checkpoint writes, feature-cache reads.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from nlbench.backbones import BackboneCost, forward_gflops
from nlbench.engine.compile import REFERENCE_SIZE, compile_pays, measured_cost
from nlbench.engine.identity import feature_group
from nlbench.errors import ConfigError
from nlbench.registry import BACKBONES, METHODS, dataset_facts
from nlbench.run.spec import CellSpec

__all__ = ["BackboneCost", "backbone_cost", "measured_cost", "estimate_gpu_hours", "compile_pays"]


@dataclass(frozen=True)
class CostSource:
    """Where a backbone's figures come from: measured, or estimated from its GFLOPs (``note`` says how)."""

    cost: BackboneCost
    estimated: bool = False
    note: str = ""


def backbone_cost(backbone: str) -> CostSource | None:
    """``backbone``'s cost figures: the measured ones it declares, else an estimate from its forward
    GFLOPs: every rate of the measured architecture nearest in GFLOPs (log scale) times
    reference GFLOPs / its GFLOPs (time per image ∝ FLOPs); no compiled rate, so it never compiles.
    None for a name that is not registered."""
    if backbone not in BACKBONES:
        return None
    measured = measured_cost(backbone)
    if measured is not None:
        return CostSource(measured)
    gflops, how = forward_gflops(backbone)
    references = {name: cost for name in BACKBONES.names() if (cost := measured_cost(name)) is not None}
    if not references:
        raise ConfigError(f"backbone {backbone!r} has no cost figures and no registered backbone has measured ones")
    ref_name, ref = min(references.items(), key=lambda kv: (abs(math.log(kv[1].gflop_fwd / gflops)), kv[0]))
    ratio = ref.gflop_fwd / gflops
    cost = BackboneCost(f"estimate from {ref.arch}", gflops, ref.features_img_s * ratio, ref.train_img_s * ratio)
    note = (f"{backbone}: estimated from {gflops:.2f} GFLOP ({how}, no measured rate): {ref_name}'s measured rates "
            f"× {ref.gflop_fwd:g}/{gflops:.2f} GFLOP")
    return CostSource(cost, estimated=True, note=note)


REFERENCE_TRAIN_BATCH = 128
HARDWARE = "NVIDIA H100 80GB HBM3 (reference figures of docs/performance.md, 2026-11-26)"
# Crop, flip, resize to 224 and normalise of a batch of 128 uint8 CIFAR images held on the GPU: 0.34 ms
# (docs/performance.md), per training image.
DEVICE_PIPELINE_S_PER_IMG = 0.34e-3 / 128


def compiled_for(cell: CellSpec, backbone: str, train_images: float, scale: float) -> bool:
    """The compile decision of a cell's fine-tuning run: [train] compile true/false, or 'auto'."""
    setting = cell.train_config.compile
    if setting == "auto":
        return compile_pays(backbone, train_images, scale=scale)
    return bool(setting)


@dataclass
class BackboneHours:
    """One backbone's share of a grid: images per kind and the hours they take."""

    backbone: str
    fft_cells: int = 0
    lp_fft_cells: int = 0  # TURN and LP-FT
    lp_cells: int = 0
    train_images: float = 0.0  # FFT training images (baselines and TURN), 224-px equivalents
    eval_images: float = 0.0  # FFT per-epoch evaluation images
    feature_images: float = 0.0  # feature-cache fills
    feature_passes: int = 0  # distinct (dataset, split, view, …) passes
    compiled_runs: int = 0  # fine-tuning runs that compile (each pays compile_s)
    hours: float = 0.0
    # seconds by kind: 'train', 'eval', 'features', 'compile', 'input pipeline'
    seconds: dict = field(default_factory=lambda: defaultdict(float))


@dataclass
class CostEstimate:
    """Result of ``estimate_gpu_hours``: ``rows`` per backbone, ``total_hours``, and backbones or datasets
    the tables lack (not counted)."""

    rows: list[BackboneHours]
    total_hours: float
    missing_backbones: list[str] = field(default_factory=list)
    missing_datasets: list[str] = field(default_factory=list)
    other_batch_sizes: list[int] = field(default_factory=list)  # fft_batch_size values ≠ the reference's
    estimated: list[str] = field(default_factory=list)  # backbones without measured figures: how each is estimated

    def seconds_by_kind(self) -> dict[str, float]:
        total: dict[str, float] = defaultdict(float)
        for r in self.rows:
            for kind, sec in r.seconds.items():
                total[kind] += sec
        return dict(total)

    def format(self) -> str:
        """Lines per backbone, a total, where the time goes, and every assumption."""
        lines = [f"estimated GPU time on one {HARDWARE}:"]
        width = max([len(r.backbone) for r in self.rows] + [8])
        for r in self.rows:
            lines.append(
                f"  {r.backbone:<{width}}  {r.hours:7.2f} h  ({r.fft_cells} FFT + {r.lp_fft_cells} LP-FFT cells: "
                f"{_count(r.train_images)} train img, {_count(r.eval_images)} eval img, {r.compiled_runs} compiled; "
                f"{r.lp_cells} LP cells: {r.feature_passes} feature passes, {_count(r.feature_images)} img)")
        lines.append(f"  {'total':<{width}}  {self.total_hours:7.2f} h")
        kinds = self.seconds_by_kind()
        if kinds:
            lines.append("  where it goes: " + ", ".join(f"{kind} {sec / 3600:.2f} h" for kind, sec in kinds.items()))
        lines.append("  assumptions:")
        lines.extend("    - " + a for a in ASSUMPTIONS)
        if self.other_batch_sizes:
            lines.append(f"    - cells at fft_batch_size {', '.join(map(str, self.other_batch_sizes))}: rate not "
                         f"measured, the batch-{REFERENCE_TRAIN_BATCH} figure is used (smaller batches run slower)")
        lines.extend(f"    - {note}" for note in self.estimated)
        if self.missing_backbones:
            lines.append(f"  not counted, no cost figures: {', '.join(self.missing_backbones)}")
        if self.missing_datasets:
            lines.append(f"  not counted, unknown dataset size (pass train_size): {', '.join(self.missing_datasets)}")
        return "\n".join(lines)


ASSUMPTIONS = (
    f"rates: the H100 reference figures (bf16, 224 px; train at batch {REFERENCE_TRAIN_BATCH} with fused AdamW, "
    "features at batch 512), docs/performance.md; MAE/MSN ViT-B/16 = ViT-B/16",
    "compile: [train] compile 'auto' compiles where a measured compiled rate saves more than one compilation "
    "(only ViT-B/16 and its MAE/MSN variants have one: 3,142 vs 2,448 img/s) and counts 31 s per compiled run",
    "FFT evaluation: val + test every epoch at the feature rate (an upper bound: test runs on improving epochs "
    "and the last)",
    "fine-tuning passes per image and epoch: each method's registered fft_passes (two networks: 2; DivideMix 6, "
    "UNICON 7); TURN's FFT subset: the expected clean share of the training set (1 - noise rate)",
    "input pipeline: 0.34 ms per 128 images for in-memory datasets (GPU-resident crop/flip/resize); datasets "
    "read by path assumed decoded as fast as the GPU trains (benchmarks/loader.py)",
    "LP: one feature pass per (backbone, dataset, split, view) for the whole grid; linear heads not counted",
    "not counted: process start, model build, checkpoint writes, feature-cache reads",
)


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else f"{n:.0f}"


def split_sizes(cell: CellSpec, train_size: dict[str, int] | None = None) -> tuple[int, int, int] | None:
    """(train, val, test) images of the cell's dataset: dataset_options, then ``train_size``, then the sizes
    the dataset declares (of the cell's variant); None where none of them gives the training images."""
    opts = cell.dataset_options or {}
    facts = dataset_facts(cell.dataset)
    table = facts.sizes_for(opts.get("variant")) if facts is not None else None
    train = opts.get("train_size") or (train_size or {}).get(cell.dataset) or (table[0] if table else None)
    if train is None:
        return None
    val = opts.get("val_size", table[1] if table else 0)
    test = opts.get("test_size") or (table[2] if table else 0)
    return int(train), int(val), int(test)


def in_memory(dataset: str) -> bool:
    """Whether ``dataset`` is registered as held in memory (its images cross to the device once)."""
    facts = dataset_facts(dataset)
    return facts is not None and facts.in_memory


def clean_fraction(cell: CellSpec) -> float:
    """Expected share of correct training labels: 1 − rate for synthetic noise; for noise 'none' (the
    labels as given) 1 − the registered real_noise_rate of a real-noise dataset, 1 for any other."""
    if cell.noise == "none":
        facts = dataset_facts(cell.dataset)
        rate = facts.real_noise_rate if facts is not None else None
        return 1.0 - (rate or 0.0)
    return 1.0 - cell.rate


def estimate_gpu_hours(cells: list[CellSpec], train_size: dict[str, int] | None = None) -> CostEstimate:
    """GPU-hours of ``cells`` on one H100 (module docstring: what is counted and how).

    train_size: training images per dataset name, for datasets the size table lacks or to override it
    (a cell's ``dataset_options['train_size']`` wins over both).
    """
    rows: dict[str, BackboneHours] = {}
    missing_b: set[str] = set()
    missing_d: set[str] = set()
    batch_sizes: set[int] = set()
    passes: dict[str, set] = defaultdict(set)
    sources: dict[str, CostSource | None] = {}
    for cell in cells:
        if cell.backbone not in sources:
            sources[cell.backbone] = backbone_cost(cell.backbone)
        cost = sources[cell.backbone].cost if sources[cell.backbone] is not None else None
        sizes = split_sizes(cell, train_size)
        if cost is None:
            missing_b.add(cell.backbone)
            continue
        if sizes is None:
            missing_d.add(cell.dataset)
            continue
        n_train, n_val, n_test = sizes
        row = rows.setdefault(cell.backbone, BackboneHours(cell.backbone))
        input_size = cell.train_config.input_size or REFERENCE_SIZE
        scale = (input_size / REFERENCE_SIZE) ** 2
        seconds = 0.0
        if cell.mode in ("fft", "lp-fft"):
            epochs = int(cell.method_params.get("fft_epochs", cell.train_config.fft_epochs))
            method = METHODS.entry(cell.method).meta
            share = clean_fraction(cell) if method["fft_subset"] == "clean" else 1.0
            share *= method["fft_passes"]
            compiled = compiled_for(cell, cell.backbone, epochs * n_train * share, scale)
            train_img = epochs * n_train * share * scale
            eval_img = epochs * (n_val + n_test) * scale
            row.train_images += train_img
            row.eval_images += eval_img
            parts = {"train": train_img / cost.train_rate(compiled), "eval": eval_img / cost.features_img_s}
            if compiled and cost.compile_s is not None:
                parts["compile"] = cost.compile_s
                row.compiled_runs += 1
            if in_memory(cell.dataset):
                parts["input pipeline"] = epochs * n_train * share * DEVICE_PIPELINE_S_PER_IMG
            for kind, sec in parts.items():
                row.seconds[kind] += sec
                seconds += sec
            batch = cell.train_config.fft_batch_size
            if batch != REFERENCE_TRAIN_BATCH:
                batch_sizes.add(batch)
            if cell.mode == "fft":
                row.fft_cells += 1
            else:
                row.lp_fft_cells += 1
        if cell.mode in ("lp", "lp-fft"):
            if cell.mode == "lp":
                row.lp_cells += 1
            views = int(cell.method_params.get("views", 0) or 0) if cell.mode == "lp" else 0
            ident = feature_group(cell)  # the feature cache's own identity, minus the loaded dataset
            wanted = [("train", v) for v in range(views + 1)] + [("val", 0), ("test", 0)]
            for split, view in wanted:
                key = (ident, split, view)
                if key in passes[cell.backbone]:
                    continue
                passes[cell.backbone].add(key)
                n = {"train": n_train, "val": n_val, "test": n_test}[split] * scale
                row.feature_passes += 1
                row.feature_images += n
                row.seconds["features"] += n / cost.features_img_s
                seconds += n / cost.features_img_s
        row.hours += seconds / 3600.0
    ordered = [rows[b] for b in dict.fromkeys(c.backbone for c in cells) if b in rows]
    return CostEstimate(rows=ordered, total_hours=sum(r.hours for r in ordered),
                        missing_backbones=sorted(missing_b), missing_datasets=sorted(missing_d),
                        estimated=[src.note for b, src in sources.items() if src is not None and src.estimated
                                   and b in rows],
                        other_batch_sizes=sorted(batch_sizes))
