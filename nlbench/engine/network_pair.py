"""The two networks of DivideMix, UNICON, Co-teaching(+) and JoCoR: models, optimisers, views, the warm-up
and MixMatch epochs, the epoch loop they share and its per-epoch checkpoints (the formulas they use are in
``nlbench.engine.semisup`` and ``nlbench.engine.small_loss``).

``NetworkPair`` holds the two networks of a run in either mode. In ``lp`` mode a network is a linear
head on frozen features and an "augmented view" of a training image is one of K cached feature views
(``Trainer.features('train', k)``, k = 1..K, computed once and kept in the feature cache); mixup then
mixes features, the inputs of the trainable part. In ``fft`` mode a network is a fresh pre-trained
backbone with a linear head (and, for UNICON, a projection head) and views are drawn on the fly by the
engine's augmentation (random crop, flip where label-preserving).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nlbench.engine.semisup import (
    co_guess,
    co_refine,
    contrastive_loss,
    linear_rampup,
    mix,
    mixup_lambda,
    negative_entropy,
    onehot,
    semi_losses,
    sharpen,
    uniform_prior_penalty,
)
from nlbench.engine.train import Classifier, Fit, make_optimizer, make_scheduler
from nlbench.engine.training_state import EpochCheckpoint, Network
from nlbench.errors import ConfigError

# What a two-network fit predicts: the mean of both networks' logits, or network 1's.
PREDICTIONS = ("mean", "net1")


class CoNet(nn.Module):
    """One network: optional encoder (the backbone in fft mode; none in lp mode, whose inputs are
    features), a linear classifier and an optional projection head for a contrastive loss."""

    def __init__(self, encoder: nn.Module | None, head: nn.Linear, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.projection = projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x) if self.encoder is not None else x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding for the contrastive loss: the projection head on the encoder's features, or the
        logits where there is no projection head (lp mode: the head is the only trainable map)."""
        z = self.encoder(x) if self.encoder is not None else x
        return self.projection(z) if self.projection is not None else self.head(z)


class ViewBank:
    """K cached feature views, each (N, D), indexed like their (K, N, D) stack — ``bank[picks, rows]``
    — without stacking them: a stack would copy every view (3 GiB per view at a million 768-d
    features) where a batch needs only its rows."""

    def __init__(self, views: list[torch.Tensor]) -> None:
        self.views = views
        self.shape = (len(views), *views[0].shape)

    def __getitem__(self, key: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        picks, rows = key
        first = self.views[0]
        out = torch.empty((len(rows), first.shape[1]), dtype=first.dtype, device=rows.device)
        for k, view in enumerate(self.views):
            where = picks == k
            out[where] = view[rows[where].to(view.device)].to(out.device)
        return out


class NetworkPair:
    """Two networks, their optimisers and schedules, and the views they train on, in 'lp' or 'fft' mode.

    views: K, the number of cached augmented feature views in lp mode (in fft mode every draw is a fresh
    augmentation); 0: no augmentation, the un-augmented view 0 (lp) or the evaluation preprocessing (fft).
    projection_dim: add a projection head Linear(D, d) + BatchNorm1d(d) in fft mode (UNICON's). Seeds: both
    heads start from different seeded draws (seed, seed + 1), as two independently initialised networks must.
    """

    def __init__(self, trainer, mode: str, *, views: int, epochs: int, projection_dim: int | None = None) -> None:
        if mode not in ("lp", "fft"):
            raise ConfigError(f"two-network training runs in mode lp or fft; got {mode!r}")
        if views < 0:
            raise ConfigError(f"views (K) must be ≥ 0; got {views}")
        self.trainer, self.mode, self.views, self.epochs = trainer, mode, views, epochs
        cfg = trainer.config
        self.device = trainer.device
        self.nets: list[CoNet] = []
        self.backbones = []
        if mode == "lp":
            # K views of (N, D): view k-1 of sample i is bank[k-1, i]. Features of view 0 (un-augmented,
            # for division and evaluation) and of val/test come from the same cache.
            self.bank = ViewBank([trainer.features("train", k) for k in (range(1, views + 1) if views else [0])])
            for split in ("train", "val", "test"):
                trainer.features(split)
            dim = self.bank.shape[2]
            for k in range(2):
                torch.manual_seed(trainer.seed + k)
                self.nets.append(CoNet(None, nn.Linear(dim, trainer.num_classes)).to(self.device))
            opt_name, lr, wd = cfg.lp_optimizer, cfg.lp_lr, cfg.lp_weight_decay
            self.batch_size = cfg.lp_batch_size
        else:
            for k in range(2):
                backbone = trainer.build_backbone()
                torch.manual_seed(trainer.seed + k)
                head = nn.Linear(backbone.feature_dim, trainer.num_classes)
                projection = None
                if projection_dim:
                    projection = nn.Sequential(nn.Linear(backbone.feature_dim, projection_dim),
                                               nn.BatchNorm1d(projection_dim))
                net = CoNet(backbone.model, head, projection).to(self.device)
                if trainer.channels_last_for(backbone):
                    net = net.to(memory_format=torch.channels_last)
                self.nets.append(net)
                self.backbones.append(backbone)
            self.train_tf = trainer.transform(self.backbones[0], cfg.augment and views > 0)
            self.channels_last = trainer.channels_last_for(self.backbones[0])
            opt_name, lr, wd = cfg.fft_optimizer, cfg.fft_lr, cfg.fft_weight_decay
            self.batch_size = cfg.fft_batch_size
        self.opts = [make_optimizer(opt_name, net.parameters(), lr=lr, weight_decay=wd, momentum=cfg.momentum,
                                    device=self.device) for net in self.nets]
        # Stepped once per epoch: the number of steps per epoch changes with each division.
        self.scheds = [make_scheduler(cfg.scheduler, opt, epochs) for opt in self.opts]
        self.generator = torch.Generator().manual_seed(trainer.seed)
        self.rng = np.random.default_rng(trainer.seed)
        self.labels = torch.as_tensor(trainer.labels, device=self.device)
        self.steps = [0, 0]  # optimiser steps taken by each network
        self._started = time.perf_counter()  # of the current epoch
        self.warmup_steps: int | None = None  # network 1's steps when the first division is made
        self._disagreeing = [0, 0]  # (samples whose two predictions differed, samples seen) this epoch

    # ------------------------------------------------------------- inputs
    def draw(self, ids: torch.Tensor, count: int) -> list[torch.Tensor]:
        """``count`` augmented views of the training samples ``ids``: in lp mode distinct cached views per
        sample where K ≥ count (drawn at random per sample), in fft mode fresh augmentations."""
        if self.mode == "lp" and self.views == 0:
            return [self.bank.views[0][ids.to(self.device)]] * count
        if self.mode == "lp":
            order = torch.rand(len(ids), self.views, generator=self.generator).argsort(1)
            picks = order[:, torch.arange(count) % self.views].to(self.device)
            rows = ids.to(self.device)
            return [self.bank[picks[:, j], rows] for j in range(count)]
        batch, _ = next(iter(self.trainer.images("train").batches(ids.cpu().numpy(), len(ids), shuffle=False)))
        out = []
        for _ in range(count):
            x = self.train_tf(batch, self.generator)
            out.append(x.contiguous(memory_format=torch.channels_last) if self.channels_last else x)
        return out

    # ------------------------------------------------------------- forward passes
    def forward(self, k: int, x: torch.Tensor, *, grad: bool = False, embed: bool = False) -> torch.Tensor:
        """Logits (or contrastive embeddings) of network k on a batch of inputs; counts backbone passes."""
        net = self.nets[k]
        with torch.set_grad_enabled(grad), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                          enabled=self.trainer.amp and self.mode == "fft"):
            out = net.embed(x) if embed else net(x)
        if self.mode == "fft":
            self.trainer.cell_progress.count("backbone_forward_images", len(x))
            if grad:
                self.trainer.cell_progress.count("backbone_backward_images", len(x))
        return out.float()

    @torch.no_grad()
    def eval_logits(self, k: int, split: str) -> torch.Tensor:
        """(N, C) logits of network k on un-augmented ``split`` (view 0)."""
        if self.mode == "lp":
            return self.trainer.probe_logits(self.nets[k].head, split)
        return self.trainer.model_logits(Classifier(self.nets[k].encoder, self.nets[k].head), split,
                                         self.backbones[k])

    def mean_logits(self, split: str) -> torch.Tensor:
        """The two networks' average logits: the prediction both papers test (argmax of their sum)."""
        return 0.5 * (self.eval_logits(0, split) + self.eval_logits(1, split))

    def train_mode(self, k: int) -> None:
        """Network k trains, the other one only guesses (reference code of both papers: net.train(),
        net2.eval())."""
        self.nets[k].train()
        self.nets[1 - k].eval()

    def note_disagreement(self, out_1: torch.Tensor, out_2: torch.Tensor) -> None:
        """Count the samples on which the two networks' predictions (argmax of logits or probabilities of the
        same samples) differ; ``run_epochs`` records the epoch's share as ``pair_disagreement``."""
        self._disagreeing[0] += int((out_1.detach().argmax(1) != out_2.detach().argmax(1)).sum())
        self._disagreeing[1] += len(out_1)

    def take_disagreement(self) -> float | None:
        """The share of the samples noted since the last call on which the networks disagreed (None: none
        noted, e.g. a warm-up epoch, where each network trains on its own batches); resets the count."""
        count, seen = self._disagreeing
        self._disagreeing = [0, 0]
        return round(count / seen, 6) if seen else None

    def step(self, k: int, loss: torch.Tensor) -> None:
        self.opts[k].zero_grad(set_to_none=True)
        loss.backward()
        self.opts[k].step()
        self.steps[k] += 1

    def step_joint(self, loss: torch.Tensor) -> None:
        """Both networks step on one loss. Equal to one optimiser over both networks' parameters (JoCoR's
        code): SGD and AdamW update every parameter independently, with the same hyperparameters here."""
        for opt in self.opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for k, opt in enumerate(self.opts):
            opt.step()
            self.steps[k] += 1

    def train_both(self) -> None:
        """Both networks train (Co-teaching's and JoCoR's codes: model1.train(), model2.train())."""
        for net in self.nets:
            net.train()

    def epoch_batches(self) -> list[torch.Tensor]:
        """A shuffled epoch over the training set in batches of B, the incomplete last batch dropped as the
        Co-teaching, Co-teaching+ and JoCoR codes do (DataLoader drop_last=True); one batch of all samples
        where there are fewer than B."""
        n = self.trainer.num_train
        order = torch.randperm(n, generator=self.generator)
        if n < self.batch_size:
            return [order]
        return [order[start : start + self.batch_size] for start in range(0, n - self.batch_size + 1, self.batch_size)]

    def batches_per_epoch(self) -> int:
        """len(``epoch_batches()``): ⌊N/B⌋, or 1 where N < B."""
        n = self.trainer.num_train
        return 1 if n < self.batch_size else n // self.batch_size

    def step_schedules(self) -> None:
        """Step both learning-rate schedules: once per epoch, after it is trained."""
        for s in self.scheds:
            s.step()

    # ------------------------------------------------------------- warm-up
    def warmup_epoch(self, k: int, *, confidence_penalty: bool) -> float:
        """One CE epoch of network k over all training samples (one augmented view each, batches of 2B as
        in both reference codes), plus the confidence penalty for asymmetric noise. Mean loss."""
        self.train_mode(k)
        n = self.trainer.num_train
        ids_all = torch.randperm(n, generator=self.generator)
        total = 0.0
        size = 2 * self.batch_size
        for start in range(0, n, size):
            ids = ids_all[start : start + size]
            if len(ids) < 2 and self.mode == "fft":
                continue  # a batch norm in train mode cannot normalise a single sample
            (x,) = self.draw(ids, 1)
            logits = self.forward(k, x, grad=True)
            loss = F.cross_entropy(logits, self.labels[ids.to(self.device)])
            if confidence_penalty:
                loss = loss + negative_entropy(logits)
            self.step(k, loss)
            total += float(loss.detach()) * len(ids)
        return total / max(1, n)

    # ------------------------------------------------------------- one semi-supervised epoch
    def mixmatch_epoch(self, k: int, *, labelled: np.ndarray, weights: np.ndarray, unlabelled: np.ndarray,
                       T: float, alpha: float, lambda_u: float, epoch: int, warmup: int, rampup: float,
                       unlabelled_batch: int | None = None, lambda_c: float = 0.0,
                       contrastive_temperature: float = 0.05, separate_mix_views: bool = False) -> float:
        """Train network k for one pass over its labelled set (⌈|X|/B⌉ steps; the unlabelled set is cycled).

        labelled/unlabelled: indices into the training set; weights: (|X|,) clean probability of each
        labelled sample for co-refinement. Per step: two views of each sample, co-refinement (own network)
        and co-guessing (both networks), MixMatch with λ', L_X + λ_u(t)·L_U + L_reg (+ λ_c·L_C on two
        further views of the unlabelled batch, UNICON). ``separate_mix_views``: mix and contrast two
        further views instead of the guessing views (UNICON's strong views). Returns the mean loss.
        """
        if len(labelled) == 0:
            return float("nan")
        self.train_mode(k)
        o = 1 - k
        B = self.batch_size
        ub = min(unlabelled_batch or B, len(unlabelled))
        num_iter = math.ceil(len(labelled) / B)
        x_order = torch.as_tensor(labelled)[torch.randperm(len(labelled), generator=self.generator)]
        w_all = torch.zeros(self.trainer.num_train)
        w_all[torch.as_tensor(labelled)] = torch.as_tensor(weights, dtype=torch.float32)
        u_pool = torch.as_tensor(unlabelled, dtype=torch.long)
        u_order, u_at = (u_pool[torch.randperm(len(u_pool), generator=self.generator)] if len(u_pool) else u_pool), 0
        C = self.trainer.num_classes
        total = 0.0
        for it in range(num_iter):
            x_ids = x_order[it * B : (it + 1) * B]
            w = w_all[x_ids].to(self.device)
            y = onehot(self.labels[x_ids.to(self.device)], C)
            if ub > 0:
                if u_at + ub > len(u_order):  # cycle the unlabelled set, reshuffled
                    u_order, u_at = u_pool[torch.randperm(len(u_pool), generator=self.generator)], 0
                u_ids = u_order[u_at : u_at + ub]
                u_at += ub
            else:
                u_ids = torch.zeros(0, dtype=torch.long)
            x1, x2 = self.draw(x_ids, 2)
            u1, u2 = self.draw(u_ids, 2) if len(u_ids) else (x1[:0], x2[:0])
            with torch.no_grad():
                # Both views in one forward: a batch norm in train mode needs more than one sample.
                nb, nu = len(x_ids), len(u_ids)
                px = torch.softmax(self.forward(k, torch.cat([x1, x2])), 1)
                targets_x = sharpen(co_refine(y, w, co_guess([px[:nb], px[nb:]])), T)
                if nu:
                    pu = [torch.softmax(self.forward(j, torch.cat([u1, u2])), 1) for j in (k, o)]
                    self.note_disagreement(pu[0], pu[1])  # co-guessing: both networks on the same inputs
                    targets_u = sharpen(co_guess([p[s] for p in pu for s in (slice(0, nu), slice(nu, None))]), T)
                else:
                    targets_u = targets_x[:0]
            if separate_mix_views:
                x1, x2 = self.draw(x_ids, 2)
                if len(u_ids):
                    u1, u2 = self.draw(u_ids, 2)
            loss_c = None
            if lambda_c > 0 and len(u_ids) > 1:
                loss_c = contrastive_loss(self.forward(k, u1, grad=True, embed=True),
                                          self.forward(k, u2, grad=True, embed=True), contrastive_temperature)
            lam = mixup_lambda(alpha, self.rng)
            inputs = torch.cat([x1, x2, u1, u2])
            targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
            perm = torch.randperm(len(inputs), generator=self.generator).to(self.device)
            mixed_in, mixed_t = mix(inputs, targets, lam, perm)
            logits = self.forward(k, mixed_in, grad=True)
            nx = 2 * len(x_ids)
            lx, lu = semi_losses(logits[:nx], mixed_t[:nx], logits[nx:], mixed_t[nx:])
            lam_u = linear_rampup(epoch + it / num_iter, warmup, rampup, lambda_u)
            loss = lx + lam_u * lu + uniform_prior_penalty(logits)
            if loss_c is not None:
                loss = loss + lambda_c * loss_c
            self.step(k, loss)
            total += float(loss.detach())
        return total / num_iter

    def note_warmup_length(self, name: str) -> None:
        """Note the warm-up's length in optimiser steps, once, as the first epoch after it starts: what the
        first division's quality depends on (a warm-up of a few epochs on a small training set is a handful
        of steps)."""
        if self.warmup_steps is None:
            self.warmup_steps = self.steps[0]
            self.trainer.log(f"{name}: warm-up done after {self.warmup_steps} optimiser steps per network")

    def cost_summary(self) -> dict:
        return {"warmup_steps": self.warmup_steps, "optimizer_steps": list(self.steps)}

    def new_fit(self) -> Fit:
        """The result the epoch loop fills: both networks as one module, no epoch recorded yet."""
        return Fit(model=nn.ModuleList(self.nets))

    # ------------------------------------------------------------- the epoch loop, checkpointed (fft mode)
    def run_epochs(self, name: str, desc: str, method_epoch: Callable[[int, dict], list[float]], state: dict, *,
                   warmup: int = 0, confidence_penalty: bool = False, predict: str = "mean") -> tuple[Fit, dict]:
        """(fit, method state): the two-network loop shared by the methods built on the pair.

        Resume from the cell's checkpoint where there is one; then per epoch: a CE warm-up epoch of each
        network while epoch < ``warmup``, else ``method_epoch(epoch, state)`` (the method's own epoch; it
        returns the networks' mean losses and keeps its loop state in ``state``); the schedules step;
        validation/test of the mean logits of both networks; a checkpoint (fft mode) with ``state``.
        ``state``: the method's initial loop state (NumPy arrays, tensors, numbers, lists, dicts), replaced
        by the saved one on resume. The record's ``pair_disagreement``: per epoch, the share of the samples
        both networks predicted in it (``note_disagreement``) on which their argmax differed, None where
        none were noted. ``name`` names the checkpoint file, ``desc`` the log lines. predict: what
        is evaluated, 'mean' (the mean of both networks' logits) or 'net1' (network 1 alone)."""
        if predict not in PREDICTIONS:
            raise ConfigError(f"unknown prediction {predict!r}; expected one of: {', '.join(PREDICTIONS)}")
        logits_of = self.mean_logits if predict == "mean" else (lambda split: self.eval_logits(0, split))
        fit = self.new_fit()
        first, saved = self.resume(fit, name)
        if first:
            state = saved
        for epoch in self.epoch_range(first, desc):
            if epoch < warmup:
                losses = [self.warmup_epoch(k, confidence_penalty=confidence_penalty) for k in (0, 1)]
            else:
                if warmup:
                    self.note_warmup_length(desc)
                losses = method_epoch(epoch, state)
            self.step_schedules()
            # Kept in the method's state so that a resumed run records every epoch.
            state.setdefault("pair_disagreement", []).append(self.take_disagreement())
            finite = [v for v in losses if np.isfinite(v)]
            self.trainer.record_epoch(fit, epoch, float(np.mean(finite)) if finite else float("nan"),
                                      logits_of, last=epoch == self.epochs - 1)
            self.checkpoint_epoch(fit, epoch, name, state)
        fit.extra["pair_disagreement"] = list(state.get("pair_disagreement", []))
        return fit, state

    def _checkpoint(self, name: str) -> EpochCheckpoint:
        # lp epochs take milliseconds to seconds: a restart costs less than the writes.
        path = None
        if self.mode == "fft" and self.trainer.checkpoint_dir is not None:
            path = Path(self.trainer.checkpoint_dir) / f"pair-{name}.pt"
        fingerprint = {"method": name, "mode": self.mode, "epochs": self.epochs, "num_train": self.trainer.num_train,
                       "batch_size": self.batch_size}
        return EpochCheckpoint(path, fingerprint, label=name, call=name, epochs=self.epochs, log=self.trainer.log,
                               device=self.device)

    def _networks(self) -> list[Network]:
        return [Network(net, opt, sched) for net, opt, sched in zip(self.nets, self.opts, self.scheds, strict=True)]

    def resume(self, fit: Fit, name: str) -> tuple[int, dict]:
        """(first epoch to run, the method's own saved state): restores both networks, optimisers,
        schedules, random states, step counts, selections, counters and ``fit``'s history from the cell's
        checkpoint; (0, {}) when there is none, or it belongs to another run."""
        first, loop = self._checkpoint(name).resume(networks=self._networks(), generator=self.generator,
                                                    progress=self.trainer.cell_progress, fit=fit,
                                                    numpy_generators=[self.rng])
        if not first:
            return 0, {}
        self.steps, self.warmup_steps = list(loop["steps"]), loop["warmup_steps"]
        self._started = time.perf_counter()
        return first, loop["method"]

    def epoch_range(self, first: int, desc: str):
        """Epochs ``first`` .. epochs − 1, with a progress bar where the trainer shows them."""
        return tqdm(range(first, self.epochs), desc=f"{desc} {self.mode}", disable=not self.trainer.progress,
                    leave=False)

    def checkpoint_epoch(self, fit: Fit, epoch: int, name: str, method_state: dict) -> None:
        """After ``epoch`` (0-based) is trained and evaluated: note its seconds (fft mode; the SLURM
        time-limit check reads them) and save everything ``resume`` restores. ``method_state`` holds the
        method's own loop state (arrays, tensors, numbers, lists, dicts)."""
        if self.mode == "fft":
            now = time.perf_counter()
            self.trainer.cell_progress.note_epoch_seconds(now - self._started)
            self._started = now
        checkpoint = self._checkpoint(name)
        if checkpoint.active:
            checkpoint.save(epoch, networks=self._networks(), generator=self.generator,
                            progress=self.trainer.cell_progress, fit=fit, numpy_generators=[self.rng],
                            loop={"steps": list(self.steps), "warmup_steps": self.warmup_steps,
                                  "method": method_state})
