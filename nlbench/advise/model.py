"""``nlbench advise --fit``: the recommended candidate trained on every image, saved, and loaded back to predict.

The saved file ``DIR/model.pt`` holds the backbone's identity (name, tag, resolved weights) and either the linear
head (LP candidates: the backbone's published weights are rebuilt on load) or the fine-tuned backbone and head.
Loading and predicting is one line::

    from nlbench.advise import load_model; labels = load_model("DIR").predict(["a.png", "b.png"])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nlbench.advise.data import AdviseData
from nlbench.advise.portfolio import Candidate, FoldFeatures, FoldTrainer, FullFeatures, _transform, candidate_config
from nlbench.atomic import atomic_write
from nlbench.backbones import create_backbone
from nlbench.datasets import Split
from nlbench.engine.config import TrainConfig
from nlbench.engine.images import image_source
from nlbench.engine.network_pair import CoNet
from nlbench.engine.train import Classifier, determinism
from nlbench.errors import ConfigError
from nlbench.methods import CellContext, build_method

MODEL_FILE = "model.pt"
FORMAT = 1


def fit_and_save(candidate: Candidate, full: FullFeatures, data: AdviseData, out: Path, *, config: TrainConfig,
                 seed: int, nominal_rate: float, log: Callable[[str], None]) -> Path:
    """Train ``candidate`` on every image with its given labels and save it to ``out/model.pt``."""
    everything = np.arange(len(data.labels))
    rows = {"train": everything, "val": everything, "test": everything}
    split = Split(labels=data.labels, paths=data.paths)
    trainer = FoldTrainer(
        config=config, num_classes=data.num_classes, labels=data.labels, val_labels=data.labels,
        test_labels=data.labels, images=lambda _split, device: image_source(split, device),
        backbone_factory=functools.partial(create_backbone, full.choice.backbone, pretrained=True,
                                           weights=full.choice.backbone_weights, tag=full.choice.backbone_tag),
        feature_cache=FoldFeatures(full, rows), feature_key=lambda s, v: (s, v),
        transform=_transform(config.input_size, True), seed=seed, log=log)
    ctx = CellContext.of(trainer, candidate.mode, dataset="advise", noise=("sym", nominal_rate))
    torch.manual_seed(seed)
    method = build_method(candidate.method, candidate.mode, {})
    with determinism(candidate_config(candidate, config), trainer.device):
        fit = method.run(ctx)
    model = single_model(fit.model, getattr(method, "predict", "mean"))
    if isinstance(model, nn.Linear):
        kind, state = "head", model.state_dict()
    elif isinstance(model, Classifier):
        kind, state = "full", model.state_dict()
    else:
        raise ConfigError(f"--fit: {candidate.name} returns a {type(model).__name__}, which advise cannot save")
    backbone = full.trainer.build_backbone() if kind == "head" else None
    payload = {
        "format": FORMAT, "kind": kind, "state_dict": {k: v.detach().cpu() for k, v in state.items()},
        "candidate": candidate.name, "backbone": full.choice.backbone, "tag": full.choice.backbone_tag,
        "weights": full.key("train", 0).weights, "input_size": config.input_size,
        "class_names": list(data.class_names), "feature_dim": None if backbone is None else backbone.feature_dim,
    }
    path = out / MODEL_FILE
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def single_model(model: nn.Module, predict: str = "mean") -> nn.Module:
    """The one module that predicts as the K-fold evaluation did. A pair of networks (Co-teaching, DivideMix…) in
    lp mode is two linear heads on the same features: the mean of their logits, which the pair evaluates, is the
    head with the mean weights and bias, exactly. In fft mode the two backbones cannot be one model: network 1
    is kept (docs/advise.md)."""
    if not isinstance(model, nn.ModuleList):
        return model
    first = model[0]
    if isinstance(first, CoNet) and first.encoder is None:
        if predict != "mean":
            return first.head
        heads = [net.head for net in model]
        merged = nn.Linear(heads[0].in_features, heads[0].out_features)
        with torch.no_grad():
            merged.weight.copy_(torch.stack([h.weight for h in heads]).mean(0))
            merged.bias.copy_(torch.stack([h.bias for h in heads]).mean(0))
        return merged
    if isinstance(first, CoNet):
        return Classifier(first.encoder, first.head)
    return first


class AdvisedModel:
    """A model saved by ``nlbench advise --fit``; ``predict(paths)`` gives class names."""

    def __init__(self, payload: dict) -> None:
        self.payload = payload
        self.class_names: list[str] = payload["class_names"]
        backbone = create_backbone(payload["backbone"], pretrained=True, tag=payload["tag"])
        if backbone.weights_id != payload["weights"]:
            raise ConfigError(f"the saved model was fitted on backbone weights {payload['weights']}; this machine "
                              f"builds {backbone.weights_id}")
        head = nn.Linear(backbone.feature_dim, len(self.class_names))
        self.model = Classifier(backbone.model, head)
        if payload["kind"] == "head":
            head.load_state_dict(payload["state_dict"])
        else:
            self.model.load_state_dict(payload["state_dict"])
        self.model.eval()
        self.transform = _transform(payload["input_size"], True)(backbone, False)

    @torch.no_grad()
    def predict_proba(self, paths: list[str], batch_size: int = 256) -> np.ndarray:
        """(N, C) class probabilities of the images at ``paths``."""
        source = image_source(Split(labels=None, paths=[str(p) for p in paths]), torch.device("cpu"))
        out = []
        for batch, _ in source.batches(np.arange(len(source)), batch_size, shuffle=False):
            out.append(torch.softmax(self.model(self.transform(batch)).float(), 1))
        return torch.cat(out).numpy()

    def predict(self, paths: list[str]) -> list[str]:
        return [self.class_names[i] for i in self.predict_proba(paths).argmax(1)]


def load_model(folder: str | Path) -> AdvisedModel:
    """The model ``nlbench advise --fit --out FOLDER`` saved."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no saved model (run nlbench advise --fit --out {folder})")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ConfigError(f"{path}: model format {payload.get('format')}; this nlbench reads {FORMAT}")
    return AdvisedModel(payload)
