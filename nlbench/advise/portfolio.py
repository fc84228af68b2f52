"""The candidates of ``nlbench advise`` and their K-fold evaluation on the noisy labels, on the project's engine.

A candidate is a registered method in one mode on one backbone. It is evaluated by K-fold on the given labels:
for each fold, the method runs through a ``Trainer`` whose training split is the other folds and whose test split
is the fold, and the predictions of its final model on the fold (the last epoch of its last phase: no epoch is
picked by the noisy labels of the fold it predicts) are kept. The K folds give every image one held-out
prediction; ``estimators.clean_accuracy`` turns them into a clean-accuracy estimate. A fine-tuning candidate
costs a full fine-tuning per fold, so by default it runs only the first ``FINE_TUNE_FOLDS`` of the K folds
(``--fine-tune-folds``) and its estimate rests on the images of those held-out folds (``CandidateResult.scored``).

Features come from the feature cache once per backbone (a ``Trainer`` over all images, keyed as a run's cells are:
``nlbench.engine.identity``); a fold's trainer reads its rows of them (``FoldFeatures``), so the LP candidates
never run the backbone again. Fine-tuning candidates (TURN, FFT) read the fold's images.

Each candidate's out-of-fold probabilities are saved under the cache (``advise/``, keyed by the features, the
labels, the folds and the candidate), so a killed advise resumes: a rerun reads what finished.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nlbench.advise.data import AdviseData
from nlbench.atomic import atomic_save_npy, atomic_write_bytes
from nlbench.backbones import backbone_facts, create_backbone
from nlbench.datasets import Split
from nlbench.engine.config import TrainConfig
from nlbench.engine.features import FeatureCache
from nlbench.engine.identity import cell_feature_key
from nlbench.engine.images import image_source
from nlbench.engine.train import Trainer, determinism
from nlbench.engine.transforms import BatchTransform
from nlbench.errors import ConfigError
from nlbench.methods import CellContext, build_method, method_params
from nlbench.registry import METHODS

# The LP methods in the order candidates are tried (cheap and strong first); TURN and fine-tuning follow.
LP_ORDER = ("ce", "gce", "elr", "sce", "nce_rce", "forward_t", "sop", "cores", "cl", "dividemix", "unicon",
            "coteaching", "coteaching_plus", "jocor")
FINE_TUNING = (("turn", "lp-fft"), ("ce", "lp-fft"), ("ce", "fft"))
# A fine-tuning candidate is one fine-tuning per fold run; one held-out fold (N/K images) prices it at a K-th of
# the K-fold cost, its interval widening by about √K (docs/advise.md).
FINE_TUNE_FOLDS = 1
TRAIN_PASS_COST = 3.0  # a training step ≈ 3 forward passes (forward + backward); the budget's rough rule
# Linear heads train on one thread: their matrices are tiny, and a second thread only waits for a busy core
# (K-fold LP CE on digits, 2 cores shared with other jobs: 12 s on 1 thread, 211 s on 2).
LP_THREADS = 1


def candidate_config(candidate: Candidate, config: TrainConfig) -> TrainConfig:
    """The engine config a candidate runs with: LP candidates on ``LP_THREADS`` unless threads are set."""
    if candidate.mode == "lp" and config.threads is None:
        return dataclasses.replace(config, threads=LP_THREADS)
    return config


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone as the feature key sees a cell (``nlbench.engine.identity.BackboneCell``)."""

    backbone: str
    backbone_tag: str | None
    backbone_weights: str | None
    dataset: str
    dataset_options: dict
    train_config: TrainConfig

    @property
    def ref(self) -> str:
        return self.backbone if self.backbone_tag is None else f"{self.backbone}@{self.backbone_tag}"


def parse_backbones(text: str | None, input_size: int | None) -> list[BackboneChoice]:
    """``--backbones a,b@tag``: registered names (tags optional); default the offline EfficientNet-Lite0."""
    from nlbench.registry import BACKBONES

    refs = [r.strip() for r in (text or "efficientnet_lite0").split(",") if r.strip()]
    if not refs:
        names = ", ".join(e.name for e in BACKBONES)
        raise ConfigError(f"--backbones {text!r}; expected comma-separated names: {names}")
    out = []
    for ref in refs:
        name, _, tag = ref.partition("@")
        if name not in BACKBONES:
            raise ConfigError(f"--backbones: unknown backbone {name!r}; expected one of: "
                              f"{', '.join(e.name for e in BACKBONES)}")
        backbone_facts(name).preprocessing_for(tag or None)  # an unknown tag fails here, with its choices
        out.append(BackboneChoice(name, tag or None, None, "advise", {}, TrainConfig(input_size=input_size)))
    return out


@dataclass(frozen=True)
class Candidate:
    method: str
    mode: str
    backbone: BackboneChoice

    @property
    def name(self) -> str:
        label = METHODS.entry(self.method).meta["label"]
        mode = {"lp": "LP", "fft": "FFT", "lp-fft": "LP-FT"}[self.mode]
        if (self.method, self.mode) == ("turn", "lp-fft"):
            mode = "LP-FFT"
        return f"{mode} {label} · {self.backbone.ref}"

    @property
    def fine_tunes(self) -> bool:
        return self.mode != "lp"


def candidates(backbones: list[BackboneChoice], *, cleanlab: bool) -> list[Candidate]:
    """Every candidate in the order the budget admits them: LP methods on every backbone, then TURN and
    fine-tuning. Confident learning (method 'cl') only where cleanlab is installed."""
    out = []
    for b in backbones:
        for m in LP_ORDER:
            if m in METHODS and (m != "cl" or cleanlab) and "lp" in METHODS.entry(m).meta["modes"]:
                out.append(Candidate(m, "lp", b))
    for m, mode in FINE_TUNING:
        for b in backbones:
            if m in METHODS and mode in METHODS.entry(m).meta["modes"]:
                out.append(Candidate(m, mode, b))
    return out


def _transform(input_size: int | None, hflip: bool) -> Callable:
    def transform(backbone, augment: bool) -> BatchTransform:
        size = (input_size, input_size) if input_size else tuple(backbone.input_size)
        return BatchTransform(size=size, mean=backbone.mean, std=backbone.std,
                              interpolation=backbone.interpolation, augment=augment, hflip=hflip)

    return transform


class FullFeatures:
    """Every image's features through one backbone, from the feature cache (filled on a miss)."""

    def __init__(self, choice: BackboneChoice, data: AdviseData, cache: str | Path, config: TrainConfig,
                 log: Callable[[str], None]) -> None:
        self.choice = choice
        dataset = data.dataset()
        self.key = cell_feature_key(choice, dataset)
        self.cache = FeatureCache(cache)
        self.trainer = Trainer(
            config=config, num_classes=data.num_classes, labels=data.labels, val_labels=data.labels,
            test_labels=data.labels, images=lambda split, device: image_source(dataset.split(split), device),
            backbone_factory=functools.partial(create_backbone, choice.backbone, pretrained=True,
                                               weights=choice.backbone_weights, tag=choice.backbone_tag),
            feature_cache=self.cache, feature_key=self.key, transform=_transform(config.input_size, dataset.hflip),
            seed=0, log=log)
        self.seconds_per_image: float | None = None

    def view(self, view: int) -> torch.Tensor:
        tensor = self.trainer.features("train", view)
        if self.seconds_per_image is None:
            meta = self.cache.paths(self.key("train", view))[1]
            try:
                self.seconds_per_image = json.loads(meta.read_text())["seconds"] / max(1, len(tensor))
            except (OSError, ValueError, KeyError):
                self.seconds_per_image = None
        return tensor

    @property
    def digest(self) -> str:
        return self.key("train", 0).digest()


class FoldFeatures:
    """What a fold's ``Trainer`` takes for its feature cache: the fold's rows of the full feature arrays."""

    def __init__(self, full: FullFeatures, rows: dict[str, np.ndarray]) -> None:
        self.full, self.rows = full, rows

    def get_or_compute(self, key: tuple[str, int], num_items: int, compute, log) -> tuple[np.ndarray, bool]:
        split, view = key
        array = self.full.view(view if split == "train" else 0)
        index = torch.as_tensor(self.rows[split])
        return array[index].numpy(), True


class FoldTrainer(Trainer):
    """A ``Trainer`` that keeps the logits of the final model on its test split (the held-out fold) and spends
    no evaluation on the epochs before the last (nothing is chosen by the noisy labels of the fold)."""

    held_out_logits: torch.Tensor | None = None

    def record_epoch(self, fit, epoch: int, train_loss: float, logits_of, last: bool) -> None:
        if last:
            self.held_out_logits = logits_of("test").detach().float().cpu()
            fit.best_epoch = epoch
        fit.history.append({"epoch": epoch, "train_loss": round(float(train_loss), 6)})


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) fold of every image: stratified by given label, seeded."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(labels), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        out[held] = f
    return out


@dataclass
class CandidateResult:
    candidate: Candidate
    probs: np.ndarray  # (N, C) out-of-fold probabilities; NaN rows where no fold run held the image out
    seconds: float
    resumed: bool
    params: dict = field(default_factory=dict)
    folds_run: int = 0  # how many of the K folds ran (0: all)

    @property
    def scored(self) -> np.ndarray:
        """(N,) bool: the images with a held-out prediction."""
        return np.isfinite(self.probs).all(1)


def folds_to_run(candidate: Candidate, folds: int, fine_tune_folds: int | None) -> int:
    """How many of the K folds a candidate runs: all for LP candidates, ``fine_tune_folds`` (default
    ``FINE_TUNE_FOLDS``) for fine-tuning ones."""
    if not candidate.fine_tunes:
        return folds
    return min(folds, FINE_TUNE_FOLDS if fine_tune_folds is None else fine_tune_folds)


def _result_paths(cache: str | Path, digest: str) -> tuple[Path, Path]:
    base = Path(cache) / "advise" / digest
    return base.with_suffix(".npy"), base.with_suffix(".json")


def run_digest(candidate: Candidate, full: FullFeatures, labels: np.ndarray, folds: np.ndarray, config: TrainConfig,
               seed: int, nominal_rate: float, folds_run: int | None = None) -> str:
    method = build_method(candidate.method, candidate.mode, {})
    key = {"features": full.digest, "labels": hashlib.sha256(labels.tobytes()).hexdigest()[:16],
           "folds": hashlib.sha256(folds.tobytes()).hexdigest()[:16], "method": candidate.method,
           "mode": candidate.mode, "params": method_params(method), "config": config.__dict__, "seed": seed,
           "nominal_rate": round(nominal_rate, 3) if candidate.method in ("coteaching", "coteaching_plus", "jocor",
                                                                          "dividemix", "unicon") else None}
    if folds_run is not None and folds_run < int(folds.max()) + 1:
        key["folds_run"] = folds_run  # absent for all folds: the K-fold results cached before stay valid
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def evaluate(candidate: Candidate, full: FullFeatures, data: AdviseData, folds: np.ndarray, *, config: TrainConfig,
             cache: str | Path, seed: int, nominal_rate: float, log: Callable[[str], None],
             on_fold: Callable[[int], None] | None = None, folds_run: int | None = None) -> CandidateResult:
    """The candidate's out-of-fold probabilities, read from the cache where a run finished them before.

    folds_run: run only the first this many folds (the others' rows stay NaN); None runs all K."""
    config = candidate_config(candidate, config)
    num_folds = int(folds.max()) + 1
    run = num_folds if folds_run is None else folds_run
    if not 1 <= run <= num_folds:
        raise ConfigError(f"folds to run {run}; expected 1 to {num_folds}")
    digest = run_digest(candidate, full, data.labels, folds, config, seed, nominal_rate, run)
    data_path, meta_path = _result_paths(cache, digest)
    method = build_method(candidate.method, candidate.mode, {})
    params = method_params(method)
    n, c = len(data.labels), data.num_classes
    expected_rows = folds < run
    folds_run_field = 0 if run == num_folds else run
    if data_path.is_file() and meta_path.is_file():
        try:
            probs = np.load(data_path)
            meta = json.loads(meta_path.read_text())
            if probs.shape == (n, c) and np.array_equal(np.isfinite(probs).all(1), expected_rows):
                return CandidateResult(candidate, probs, float(meta["seconds"]), True, params, folds_run_field)
        except (OSError, ValueError, KeyError):
            pass  # torn or foreign: run it again
    started = time.perf_counter()
    probs = np.full((n, c), np.nan)
    hflip = data.dataset().hflip
    for f in range(run):
        rows = {"train": np.flatnonzero(folds != f), "test": np.flatnonzero(folds == f)}
        rows["val"] = rows["test"]
        splits = {k: Split(labels=data.labels[v], paths=[data.paths[i] for i in v]) for k, v in rows.items()}
        trainer = FoldTrainer(
            config=config, num_classes=c, labels=data.labels[rows["train"]], val_labels=data.labels[rows["val"]],
            test_labels=data.labels[rows["test"]],
            images=lambda split, device, splits=splits: image_source(splits[split], device),
            backbone_factory=functools.partial(create_backbone, full.choice.backbone, pretrained=True,
                                               weights=full.choice.backbone_weights, tag=full.choice.backbone_tag),
            feature_cache=FoldFeatures(full, rows), feature_key=lambda split, view: (split, view),
            transform=_transform(config.input_size, hflip), seed=seed, log=lambda _msg: None)
        ctx = CellContext.of(trainer, candidate.mode, dataset="advise", noise=("sym", nominal_rate))
        torch.manual_seed(seed)
        with determinism(config, trainer.device):
            method.run(ctx)
        if trainer.held_out_logits is None:
            raise RuntimeError(f"{candidate.name}: the method recorded no final epoch")
        probs[rows["test"]] = torch.softmax(trainer.held_out_logits, 1).double().numpy()
        if on_fold is not None:
            on_fold(f)
    seconds = time.perf_counter() - started
    atomic_save_npy(data_path, probs)
    atomic_write_bytes(meta_path, json.dumps({"candidate": candidate.name, "seconds": round(seconds, 3)}).encode())
    done = f"{num_folds}-fold" if run == num_folds else f"{run} of {num_folds} folds"
    log(f"{candidate.name}: {done} done in {seconds:.1f} s")
    return CandidateResult(candidate, probs, seconds, False, params, folds_run_field)


def candidate_views(candidate: Candidate) -> int:
    """The augmented feature views (1..K) an LP candidate reads from the cache (DivideMix, UNICON, Co-teaching…)."""
    if candidate.mode != "lp":
        return 0
    method = build_method(candidate.method, candidate.mode, {})
    return int(getattr(method, "views", 0) or 0) if getattr(method, "augment", True) else 0


def cached_views(full: FullFeatures, most: int = 8) -> int:
    """How many augmented views 1..k of the images are in the feature cache already."""
    k = 0
    while k < most and full.cache.paths(full.key("train", k + 1))[1].is_file():
        k += 1
    return k


def estimate_seconds(candidate: Candidate, *, lp_ce_seconds: float, feature_seconds_per_image: float, n: int,
                     folds: int, noise_rate: float, views_available: int = 0, folds_run: int | None = None) -> float:
    """Expected seconds of a candidate's K-fold run on this machine, from what the run measured so far: the
    K-fold LP CE time (times the method's declared relative cost, ``fft_passes``), the feature pass's
    seconds per image for augmented feature views and fine-tuning (a training step ≈ 3 forward passes).
    folds_run: the folds a fine-tuning candidate runs (default all K); each costs a K-th of the K-fold run."""
    meta = METHODS.entry(candidate.method).meta
    method = build_method(candidate.method, candidate.mode, {})
    relative = float(meta.get("fft_passes", 1.0))
    if candidate.mode == "lp":
        views = max(0, candidate_views(candidate) - views_available)  # views computed before cost nothing
        extra = 1.0 if candidate.method == "cl" else 0.0  # its own inner cross-validated probes
        return lp_ce_seconds * (relative + extra) + views * n * feature_seconds_per_image
    epochs = int(getattr(method, "fft_epochs", 0) or 0) or TrainConfig().fft_epochs
    share = (1.0 - noise_rate) if meta.get("fft_subset") == "clean" else 1.0
    run = folds if folds_run is None else folds_run
    train_images = run * n * (folds - 1) / folds * share * epochs * relative
    held_out = run * n / folds  # one pass over each held-out fold at the end
    return lp_ce_seconds * run / folds + (train_images * TRAIN_PASS_COST + held_out) * feature_seconds_per_image
