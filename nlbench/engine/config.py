"""The engine's hyperparameters (a grid's ``[train]`` table): each field's type, default and bounds, declared once.

The grid schema (``nlbench.run.schema``) derives its ``[train]`` check from these fields (types, ``Literal``
choices and the ``bounded`` metadata) and is the only place a value is checked; ``TrainConfig`` itself checks
nothing. Kept apart from ``nlbench.engine.train`` (torch, the loops) so that a cell spec, the grid schema and the
CLI can hold a configuration without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# What [train] device accepts; the schema names it in messages.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


def bounded(default: Any, **bounds: Any) -> Any:
    """A dataclass field with bounds its type cannot say: pydantic's ``Field`` constraints (``ge``, ``gt``,
    ``lt``, ``le``, ``pattern``), stored in the field's metadata for the grid schema."""
    return field(default=default, metadata={"bounds": bounds})


@dataclass(frozen=True)
class TrainConfig:
    """Engine hyperparameters shared by all methods; each is a grid field under ``[train]``.

    Sources: E_LP = 20 and E_FFT = 5 are the paper's; everything else is our choice (the paper does not give it),
    listed with reasons in README's defaults table.
    """

    input_size: int | None = bounded(None, ge=1)  # None: the checkpoint's own input size
    lp_epochs: int = bounded(20, ge=1)  # paper: E_LP = 20
    lp_optimizer: Literal["adamw", "sgd"] = "adamw"
    lp_lr: float = bounded(1e-3, gt=0)
    lp_weight_decay: float = bounded(0.0, ge=0)
    lp_batch_size: int = bounded(128, ge=1)
    # The study's one budget, "20 Epochs LP, 5 Epochs FFT", for every FFT run (TURN's own E_FFT is a method
    # param, also 5); 10, the earlier default, is the option --set train.fft_epochs=10 (docs/fidelity.md).
    fft_epochs: int = bounded(5, ge=1)
    fft_optimizer: Literal["adamw", "sgd"] = "sgd"
    fft_lr: float = bounded(0.01, gt=0)
    fft_weight_decay: float = bounded(5e-4, ge=0)
    fft_batch_size: int = bounded(64, ge=1)
    momentum: float = bounded(0.9, ge=0, lt=1)
    scheduler: Literal["constant", "cosine"] = "cosine"
    augment: bool = True  # random crop (+ flip where label-preserving) during FFT
    eval_batch_size: int = bounded(256, ge=1)
    device: str = bounded("auto", pattern=DEVICE_PATTERN)  # auto | cpu | cuda | cuda:N
    amp: Literal["bf16", "none"] = "bf16"  # bf16 autocast on CUDA; 'none' for fp32. Ignored on CPU.
    channels_last: bool = True  # for conv nets (CUDA and CPU)
    # torch.compile the FFT model: true, false, or 'auto' = on CUDA where the backbone's measured compiled
    # rate saves more than a compilation over the run (nlbench.engine.compile.compile_pays; ViT-B/16 family today).
    compile: bool | Literal["auto"] = "auto"
    threads: int | None = bounded(None, ge=1)
    """CPU threads torch uses for a cell (intra-op); None: the process's own setting (torch: one per core).
    Fine-tuning results depend on it (the reduction order of conv/BatchNorm gradients), so a grid that
    must reproduce its numbers on other machines pins it; every record states the count it ran with."""
    deterministic: bool = True
    """On CUDA: torch.use_deterministic_algorithms, deterministic cuDNN and CUBLAS_WORKSPACE_CONFIG, so a rerun
    on the same machine gives the same record; false trades that for speed. CPU kernels repeat at a fixed
    thread count without it (and its fallbacks are slow there), so on CPU it changes nothing."""
    # Feature distortion (report): after full fine-tuning, one extra pass over the test split saves the
    # fine-tuned backbone's test features beside the record (nlbench/engine/distortion.py).
    save_finetuned_features: bool = False
