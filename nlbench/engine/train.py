"""Training loops: linear probing on cached features and full fine-tuning on images.

The engine owns data, device, optimiser, schedule, evaluation and bookkeeping; a method (in
``methods/``) hands it a criterion, or drives several of its phases (TURN: probe, select, fine-tune).
Every fit evaluates on the validation split each epoch and reports test accuracy at the best
validation epoch and at the last one (the paper's "best / last").
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nlbench.backbones import Backbone
from nlbench.engine.checkpoint import criterion_state, set_criterion_state
from nlbench.engine.compile import REFERENCE_SIZE, compile_pays
from nlbench.engine.config import TrainConfig
from nlbench.engine.distortion import SavedTestFeatures, save_test_features
from nlbench.engine.features import (
    FeatureCache,
    FeatureKey,
    bf16_autocast,
    cached_features,
    extract_features,
    features_tensor,
    frozen_backbone,
    resolve_device,
)
from nlbench.engine.images import ImageSource
from nlbench.engine.training_state import CellProgress, EpochCheckpoint, Fit, Network  # noqa: F401 (Fit: re-exported)
from nlbench.engine.transforms import BatchTransform
from nlbench.errors import ConfigError


@contextlib.contextmanager
def determinism(config: TrainConfig, device: torch.device) -> Iterator[dict]:
    """Apply a cell's determinism settings for the duration of the block and restore the process's own after.

    Yields what the record states: the thread count the cell ran with (and whether the grid pinned it),
    the deterministic flag, the device and the CPU kernel level ATen picked (AVX2/AVX512: the same thread
    count on another CPU family can still round differently)."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    warn_only_before = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if config.deterministic and device.type == "cuda":
        # cuBLAS reads it when its handle is made: a cell is the first CUDA work of a CLI or SLURM process.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only CUDA has run-to-run nondeterministic kernels (atomics in scatter/index backward, cuDNN autotuning).
    # CPU kernels already repeat bit for bit at a fixed thread count, and torch's deterministic fallbacks
    # made a CPU fine-tuning cell 9x slower (quickstart FFT CE, 1 epoch: 339 s against 37 s, same record).
    deterministic_kernels = config.deterministic and device.type == "cuda"
    # warn_only: an op without a deterministic kernel warns (naming itself) instead of stopping the cell.
    torch.use_deterministic_algorithms(deterministic_kernels, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic_kernels
    torch.backends.cudnn.benchmark = not deterministic_kernels and cudnn_before[1]
    try:
        yield {"threads": torch.get_num_threads(), "threads_pinned": config.threads is not None,
               "deterministic": config.deterministic, "deterministic_kernels": deterministic_kernels,
               "device": str(device),
               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before, warn_only=warn_only_before)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn_before


def num_train_batches(n: int, batch_size: int) -> int:
    """Training steps of an epoch over ``n`` samples: a last batch of one sample is folded into the one
    before it (see ``training_batches``)."""
    batches = math.ceil(n / batch_size)
    return batches - 1 if batch_size > 1 and n > batch_size and n % batch_size == 1 else batches


def training_batches(source: ImageSource, index: np.ndarray, batch_size: int,
                     generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch over ``index`` in batches of ``batch_size``, except that a last batch of one
    sample joins the batch before it (batch_size + 1 samples): BatchNorm in training mode cannot
    normalise a single sample ("Expected more than 1 value per channel"), and folding, unlike dropping,
    keeps every sample in every epoch. The shuffle draws from ``generator`` exactly as
    ``source.batches(shuffle=True)`` does, so every other epoch is unchanged."""
    ids = torch.as_tensor(np.asarray(index), dtype=torch.long)
    ids = ids[torch.randperm(len(ids), generator=generator)].numpy()
    if num_train_batches(len(ids), batch_size) == math.ceil(len(ids) / batch_size):
        yield from source.batches(ids, batch_size, shuffle=False)
        return
    head = len(ids) - batch_size - 1
    yield from source.batches(ids[:head], batch_size, shuffle=False)
    yield from source.batches(ids[head:], batch_size + 1, shuffle=False)


class Criterion(Protocol):
    def __call__(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Scalar loss of a batch; ``index`` (B,) are the samples' positions in the training set."""
        ...


def criterion_lr_factor(criterion: Criterion) -> Callable[[int], float] | None:
    """A criterion's learning-rate multiplier per epoch, ``lr_factor(epoch) -> float``, or None where it has
    none: CORES² divides the learning rate by 1 + β(epoch) (reference phase1.py ``adjust_learning_rate``)."""
    return getattr(criterion, "lr_factor", None)


def scale_learning_rate(optimizer: torch.optim.Optimizer, scheduler, factor: float) -> None:
    """Set every parameter group's learning rate to the scheduler's value times ``factor``. LambdaLR computes
    each step's rate from the base rate, so the next ``scheduler.step()`` starts from the unscaled value again:
    call this after every step of an epoch whose factor is not 1."""
    for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
        group["lr"] = lr * factor


def criterion_after_step(criterion: Criterion) -> None:
    """Let a criterion that owns trainable per-sample parameters (SOP's u, v) step its own optimiser: called
    once after every optimiser step of the model, with the gradients of the same backward pass."""
    after_step = getattr(criterion, "after_step", None)
    if after_step is not None:
        after_step()


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, criterion: Criterion, *,
                   lr_factor: float | None) -> None:
    """One step of the model on ``loss``: backward, the optimiser, the criterion's own step, the scheduler, and
    the epoch's learning-rate factor re-applied (``scale_learning_rate``) when the criterion sets one."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    criterion_after_step(criterion)
    scheduler.step()
    if lr_factor is not None:
        scale_learning_rate(optimizer, scheduler, lr_factor)


class Classifier(nn.Module):
    """Backbone features followed by a linear head: the model of full fine-tuning."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def make_optimizer(name: str, params, *, lr: float, weight_decay: float, momentum: float, device: torch.device):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=False)
    # Fused AdamW runs one kernel per step on CUDA.
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def make_scheduler(name: str, optimizer, total_steps: int):
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
    )


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean().item() * 100.0)


class Trainer:
    """Runs the phases of one cell on one device.

    labels: the training labels the method may use (noisy); val_labels: the validation labels
    (noisy by default, clean when the grid asks); test_labels: clean; extra_test_labels: further clean
    test sets by split name, scored wherever the test set is. ``images`` gives an image
    source per split; ``backbone_factory`` builds a fresh pre-trained backbone (only when a phase
    needs one: a feature-cache hit builds none); ``feature_key`` gives the cache key of (split, view);
    ``transform`` gives a backbone's preprocessing, with or without augmentation.
    """

    def __init__(
        self,
        *,
        config: TrainConfig,
        num_classes: int,
        labels: np.ndarray,
        val_labels: np.ndarray,
        test_labels: np.ndarray,
        extra_test_labels: dict[str, np.ndarray] | None = None,
        images: Callable[[str, torch.device], ImageSource],
        backbone_factory: Callable[[], Backbone],
        feature_cache: FeatureCache,
        feature_key: Callable[[str, int], FeatureKey],
        transform: Callable[[Backbone, bool], BatchTransform],
        seed: int,
        log: Callable[[str], None] = print,
        progress: bool = False,
        checkpoint_dir: Path | None = None,
        finetuned_features_path: Path | None = None,
        config_hash: str = "",
    ) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.num_classes = num_classes
        self.labels = np.asarray(labels, dtype=np.int64)
        self.val_labels = np.asarray(val_labels, dtype=np.int64)
        self.test_labels = np.asarray(test_labels, dtype=np.int64)
        self.extra_test_labels = {name: np.asarray(v, dtype=np.int64) for name, v in (extra_test_labels or {}).items()}
        self._images = images
        self._image_cache: dict[str, ImageSource] = {}
        self._backbone_factory = backbone_factory
        self._feature_cache = feature_cache
        self._feature_key = feature_key
        self._transform = transform
        self.seed = seed
        self.log = log
        self.progress = progress
        self.amp = bf16_autocast(config, self.device)
        self._features: dict[tuple[str, int], torch.Tensor] = {}
        # One frozen backbone serves every split and view the cache misses (built on the first miss).
        self._frozen_backbone = frozen_backbone(self.build_backbone, config, self.device)
        self.cache_events: dict[str, str] = {}
        # Selections, cost counters, fine-tuning epoch seconds and resumes of the cell's phases (the record's
        # selection and cost fields); every training loop, the engine's and a method's, adds to it.
        self.cell_progress = CellProgress()
        # Where fine_tune checkpoints each epoch (the cell's checkpoint folder); None: no checkpoints. Each
        # fine_tune call of a cell gets its own file, numbered in call order, which is the same on every
        # attempt because everything before it is seeded.
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        # Where fine_tune saves the test features before/after fine-tuning (TrainConfig.save_finetuned_features),
        # stamped with the cell's config hash.
        self.finetuned_features_path = finetuned_features_path
        self.config_hash = config_hash
        self._fine_tune_calls = 0

    @property
    def num_train(self) -> int:
        return len(self.labels)

    # Read views of ``cell_progress`` (``nlbench.run.cell.run_cell`` builds the record from them).
    @property
    def counters(self) -> dict[str, int]:
        return self.cell_progress.counters

    @property
    def selections(self) -> list[dict]:
        return self.cell_progress.selections

    @property
    def fft_epoch_seconds(self) -> list[float] | None:
        """Seconds of each fine-tuning epoch (the SLURM executor's time-limit estimate reads them from records)."""
        return self.cell_progress.epoch_seconds

    @property
    def resumed_from(self) -> list[dict] | None:
        """The (call, epoch) each resumed phase restarted from."""
        return self.cell_progress.resumed_from

    def transform(self, backbone: Backbone, augment: bool) -> BatchTransform:
        """The backbone's preprocessing, with the training augmentation (random crop, flip) or without."""
        return self._transform(backbone, augment)

    # ----------------------------------------------------------------- data
    def images(self, split: str) -> ImageSource:
        if split not in self._image_cache:
            self._image_cache[split] = self._images(split, self.device)
        return self._image_cache[split]

    def build_backbone(self) -> Backbone:
        self.counters["backbones_built"] += 1
        return self._backbone_factory()

    def _count_forward(self, n: int) -> None:
        self.counters["backbone_forward_images"] += n

    def features(self, split: str, view: int = 0) -> torch.Tensor:
        """(N, D) float32 features of ``split`` on the device; view 0 is un-augmented, view k ≥ 1 is
        the k-th seeded augmented view. Read from the feature cache, computed once on a miss."""
        if (split, view) in self._features:
            return self._features[(split, view)]
        array, hit = cached_features(
            self._feature_cache, self._feature_key(split, view), self.images(split), self._frozen_backbone,
            self._transform, self.config, self.device, counter=self._count_forward, log=self.log,
        )
        self.cache_events[f"{split}/view{view}"] = "hit" if hit else "fill"
        tensor = features_tensor(array, self.device)  # memory-mapped on CPU: never copied whole
        self._features[(split, view)] = tensor
        return tensor

    def compile_fine_tune(self, backbone: Backbone, train_images: int) -> bool:
        """Whether fine_tune compiles: [train] compile true/false, or 'auto': on CUDA where the cost table's
        measured rates say the run saves more than one compilation (the dry run's rule)."""
        if self.config.compile != "auto":
            return bool(self.config.compile)
        size = self.config.input_size or backbone.input_size[0]
        return self.device.type == "cuda" and compile_pays(backbone.name, train_images,
                                                           scale=(size / REFERENCE_SIZE) ** 2)

    def channels_last_for(self, backbone: Backbone) -> bool:
        # Conv nets run channels_last: tensor cores on CUDA, and oneDNN kernels on CPU (4-5× faster
        # training of EfficientNet-Lite0 on 2 cores, benchmarks/README.md).
        return self.config.channels_last and backbone.channels_last

    def log_selection(self, selected: np.ndarray, *, epoch: int, phase: str) -> None:
        """Record a selected clean set (indices or boolean mask over the training set); ``nlbench.run.cell`` scores
        it against the true noise mask, which methods never see."""
        self.cell_progress.log_selection(selected, self.num_train, epoch=epoch, phase=phase)

    # ----------------------------------------------------------- evaluation
    @torch.no_grad()
    def probe_logits(self, head: nn.Module, split: str, view: int = 0) -> torch.Tensor:
        head.eval()
        return head(self.features(split, view)).float()

    @torch.no_grad()
    def model_logits(self, model: nn.Module, split: str, backbone: Backbone) -> torch.Tensor:
        """Logits of a fine-tuned model on every image of ``split`` (un-augmented)."""
        model.eval()
        transform = self._transform(backbone, False)
        out = []
        for batch, _ in self.images(split).batches(
            np.arange(len(self.images(split))), self.config.eval_batch_size, shuffle=False
        ):
            x = transform(batch)
            if self.channels_last_for(backbone):
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out.append(model(x).float())
            self._count_forward(len(batch))
        return torch.cat(out)

    def record_epoch(self, fit: Fit, epoch: int, train_loss: float, logits_of: Callable[[str], torch.Tensor],
                    last: bool) -> None:
        """Validation every epoch; test only where it is reported (a new best validation epoch, the last)."""
        val_acc = accuracy(logits_of("val"), torch.as_tensor(self.val_labels, device=self.device))
        improved = val_acc > fit.val_acc_best or fit.best_epoch < 0
        test_acc = None
        if improved or last:
            test_acc = accuracy(logits_of("test"), torch.as_tensor(self.test_labels, device=self.device))
        extra = {}
        if improved or last:
            extra = {name: accuracy(logits_of(name), torch.as_tensor(labels, device=self.device))
                     for name, labels in self.extra_test_labels.items()}
        if improved:
            fit.best_epoch, fit.val_acc_best, fit.test_acc_best = epoch, val_acc, test_acc
            fit.extra_test_acc_best = extra
        if last:
            fit.test_acc_last = test_acc
            fit.extra_test_acc_last = extra
        fit.history.append({"epoch": epoch, "train_loss": round(train_loss, 6), "val_acc": round(val_acc, 4),
                            "test_acc": None if test_acc is None else round(test_acc, 4)})

    # -------------------------------------------------------------- phases
    def linear_probe(
        self,
        criterion: Criterion,
        *,
        epochs: int | None = None,
        index: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        desc: str = "LP",
        on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    ) -> Fit:
        """Train a linear head on frozen view-0 features of the training samples ``index`` (all by default)
        with ``labels`` (the noisy training labels by default). ``on_epoch_end(epoch, head)`` is called after
        each epoch's evaluation (Forward-T keeps the head of lowest validation loss). A criterion with
        ``lr_factor(epoch)`` has the scheduled learning rate multiplied by it during that epoch."""
        cfg = self.config
        epochs = cfg.lp_epochs if epochs is None else epochs
        feats = self.features("train")
        for split in ("val", "test", *self.extra_test_labels):
            self.features(split)
        y = torch.as_tensor(self.labels if labels is None else labels, device=self.device)
        index = np.arange(self.num_train) if index is None else np.asarray(index)
        torch.manual_seed(self.seed)
        head = nn.Linear(feats.shape[1], self.num_classes).to(self.device)
        opt = make_optimizer(cfg.lp_optimizer, head.parameters(), lr=cfg.lp_lr,
                             weight_decay=cfg.lp_weight_decay, momentum=cfg.momentum, device=self.device)
        steps = epochs * math.ceil(len(index) / cfg.lp_batch_size)
        sched = make_scheduler(cfg.scheduler, opt, steps)
        generator = torch.Generator().manual_seed(self.seed)
        fit = Fit(model=head)
        lr_factor = criterion_lr_factor(criterion)
        for epoch in tqdm(range(epochs), desc=desc, disable=not self.progress, leave=False):
            head.train()
            factor = None if lr_factor is None else float(lr_factor(epoch))
            if factor is not None:
                scale_learning_rate(opt, sched, factor)
            ids = torch.as_tensor(index)[torch.randperm(len(index), generator=generator)].to(self.device)
            total, count = 0.0, 0
            for start in range(0, len(ids), cfg.lp_batch_size):
                batch = ids[start : start + cfg.lp_batch_size]
                loss = criterion(head(feats[batch]), y[batch], batch)
                optimizer_step(loss, opt, sched, criterion, lr_factor=factor)
                # On the device (as in fine_tune): no wait for the GPU each step.
                total, count = total + loss.detach().double() * len(batch), count + len(batch)
            self.record_epoch(fit, epoch, float(total) / max(1, count), lambda s: self.probe_logits(head, s),
                             last=epoch == epochs - 1)
            if on_epoch_end is not None:
                on_epoch_end(epoch, head)
        return fit

    def fine_tune(
        self,
        criterion: Criterion,
        *,
        epochs: int | None = None,
        index: np.ndarray | Callable[[int], np.ndarray] | None = None,
        head: nn.Linear | None = None,
        lr: float | None = None,
        freeze_bn: bool = False,
        desc: str = "FFT",
    ) -> Fit:
        """Fine-tune a fresh pre-trained backbone and a linear head (initialised from ``head`` when given)
        on the training samples ``index`` (an array, or a function of the epoch for re-drawn subsets).

        lr: overrides ``config.fft_lr``. freeze_bn: keep BatchNorm layers in eval mode (their running
        statistics fixed, their affine weights trained), so features stay those a probed ``head`` was
        trained on.

        With ``checkpoint_dir`` set, the state after every epoch is saved (nlbench.engine.checkpoint), and a
        call that finds its checkpoint resumes after the saved epoch: the model, optimiser, scheduler,
        random states, criterion state, history, subsets and selections are restored, so the fit ends as
        it would have without the interruption. A criterion with ``lr_factor(epoch)`` has the scheduled
        learning rate multiplied by it during that epoch (as in ``linear_probe``)."""
        cfg = self.config
        epochs = cfg.fft_epochs if epochs is None else epochs
        call = self._fine_tune_calls
        self._fine_tune_calls = call + 1
        self.cell_progress.start_timing()
        backbone = self.build_backbone()
        torch.manual_seed(self.seed)
        new_head = nn.Linear(backbone.feature_dim, self.num_classes)
        if head is not None:
            new_head.load_state_dict({k: v.detach().cpu() for k, v in head.state_dict().items()})
        model = Classifier(backbone.model, new_head).to(self.device)
        if self.channels_last_for(backbone):
            model = model.to(memory_format=torch.channels_last)
        # The training subset of each epoch, drawn once in epoch order (a callable may re-draw per epoch).
        if callable(index):
            subsets = [np.asarray(index(e)) for e in range(epochs)]
        else:
            subsets = [np.arange(self.num_train) if index is None else np.asarray(index)] * epochs
        if (not freeze_bn and any(len(s) == 1 for s in subsets)
                and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())):
            # training_batches folds a last batch of one into the one before; a set of one has no batch before.
            raise ConfigError(f"{desc}: the training set of an epoch is one image, which BatchNorm in training mode "
                              "cannot normalise; the method selected one image: loosen its selection or give more "
                              "training images")
        steps = sum(num_train_batches(len(s), cfg.fft_batch_size) for s in subsets)
        forward = torch.compile(model) if self.compile_fine_tune(backbone, sum(len(s) for s in subsets)) else model
        opt = make_optimizer(cfg.fft_optimizer, model.parameters(), lr=cfg.fft_lr if lr is None else lr,
                             weight_decay=cfg.fft_weight_decay, momentum=cfg.momentum, device=self.device)
        sched = make_scheduler(cfg.scheduler, opt, steps)
        train_tf = self._transform(backbone, cfg.augment)
        y = torch.as_tensor(self.labels, device=self.device)
        generator = torch.Generator().manual_seed(self.seed)
        fit = Fit(model=model)
        source = self.images("train")

        path = None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / f"fine_tune-{call}.pt"
        checkpoint = EpochCheckpoint(path, {
            "call": call, "epochs": epochs, "steps": steps, "num_train": self.num_train, "desc": desc,
            "subset_sizes": [len(s) for s in subsets], "lr": lr, "freeze_bn": freeze_bn,
        }, label=desc, call=call, epochs=epochs, log=self.log, device=self.device)
        networks = [Network(model, opt, sched)]
        first_epoch, loop = checkpoint.resume(networks=networks, generator=generator, progress=self.cell_progress,
                                              fit=fit)
        if loop:
            set_criterion_state(criterion, loop["criterion"])
            subsets = [s.cpu().numpy() for s in loop["subsets"]]
            if len(subsets) == 1:
                subsets = subsets * epochs

        lr_factor = criterion_lr_factor(criterion)
        for epoch in tqdm(range(first_epoch, epochs), desc=desc, disable=not self.progress, leave=False):
            started = time.perf_counter()
            factor = None if lr_factor is None else float(lr_factor(epoch))
            if factor is not None:  # also after a resume: the saved optimiser holds the last epoch's rate
                scale_learning_rate(opt, sched, factor)
            model.train()
            if freeze_bn:
                for module in model.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        module.eval()
            total, count = 0.0, 0
            for batch, ids in training_batches(source, subsets[epoch], cfg.fft_batch_size, generator):
                x = train_tf(batch, generator)
                if self.channels_last_for(backbone):
                    x = x.contiguous(memory_format=torch.channels_last)
                ids = ids.to(self.device)
                with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    logits = forward(x)
                loss = criterion(logits.float(), y[ids], ids)
                optimizer_step(loss, opt, sched, criterion, lr_factor=factor)
                self.counters["backbone_forward_images"] += len(ids)
                self.counters["backbone_backward_images"] += len(ids)
                # Summed on the device and read once per epoch: a float() here would wait for the GPU
                # every step, and the host could not queue the next step's kernels meanwhile.
                total, count = total + loss.detach().double() * len(ids), count + len(ids)
            self.record_epoch(fit, epoch, float(total) / max(1, count),
                             lambda s: self.model_logits(model, s, backbone), last=epoch == epochs - 1)
            self.cell_progress.note_epoch_seconds(time.perf_counter() - started)
            if checkpoint.active:
                checkpoint.save(epoch, networks=networks, generator=generator, progress=self.cell_progress,
                                fit=fit, loop={"criterion": criterion_state(criterion),
                                               "subsets": [torch.from_numpy(np.asarray(s)) for s in
                                                           (subsets if callable(index) else subsets[:1])]})
        if cfg.save_finetuned_features and self.finetuned_features_path is not None:
            self.save_finetuned_features(model, backbone)
        return fit

    def save_finetuned_features(self, model: Classifier, backbone: Backbone) -> None:
        """One pass of the fine-tuned backbone over the test split; saved with the pre-trained features
        of the same images (from the feature cache) and the clean test labels, atomically."""
        after = extract_features(
            model.backbone, self.images("test"), self._transform(backbone, False),
            batch_size=self.config.eval_batch_size, device=self.device, amp=self.amp,
            channels_last=self.channels_last_for(backbone), counter=self._count_forward,
        )
        before = self.features("test").cpu().numpy()
        save_test_features(self.finetuned_features_path, SavedTestFeatures(
            before=before, after=after, labels=self.test_labels, config_hash=self.config_hash))


def per_sample_ce(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N,) cross-entropy of each sample: the loss that sample selection ranks."""
    y = torch.as_tensor(labels, device=logits.device)
    return F.cross_entropy(logits, y, reduction="none").cpu().numpy()
