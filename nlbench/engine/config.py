"""The engine's hyperparameters (a grid's ``[train]`` table), checked once where a grid is expanded.

Kept apart from ``nlbench.engine.train`` (torch, the loops) so that a cell spec, the grid schema and the CLI can
hold and check a configuration without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from nlbench.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Engine hyperparameters shared by all methods; each is a grid field under ``[train]``.

    Sources: E_LP = 20 is the paper's; everything else is our choice (the paper does not give it),
    listed with reasons in README's defaults table.
    """

    input_size: int | None = None  # None: the checkpoint's own input size
    lp_epochs: int = 20  # paper: E_LP = 20
    lp_optimizer: str = "adamw"
    lp_lr: float = 1e-3
    lp_weight_decay: float = 0.0
    lp_batch_size: int = 128
    fft_epochs: int = 10  # FFT baselines; TURN has its own E_FFT = 5
    fft_optimizer: str = "sgd"
    fft_lr: float = 0.01
    fft_weight_decay: float = 5e-4
    fft_batch_size: int = 64
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | constant
    augment: bool = True  # random crop (+ flip where label-preserving) during FFT
    eval_batch_size: int = 256
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "bf16"  # bf16 autocast on CUDA; 'none' for fp32. Ignored on CPU.
    channels_last: bool = True  # for conv nets (CUDA and CPU)
    # torch.compile the FFT model: true, false, or 'auto' = on CUDA where the backbone's measured compiled
    # rate saves more than a compilation over the run (nlbench.engine.compile.compile_pays; ViT-B/16 family today).
    compile: bool | str = "auto"
    threads: int | None = None
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

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown [train] field(s) {', '.join(unknown)}; expected: {', '.join(sorted(known))}")
        config = cls(**values)
        for name in ("lp_epochs", "fft_epochs", "lp_batch_size", "fft_batch_size", "eval_batch_size"):
            if int(getattr(config, name)) < 1:
                raise ConfigError(f"[train] {name} must be ≥ 1; got {getattr(config, name)}")
        if config.threads is not None and (isinstance(config.threads, bool) or not isinstance(config.threads, int)
                                           or config.threads < 1):
            raise ConfigError(f"[train] threads must be an integer ≥ 1 (or absent for torch's default); "
                              f"got {config.threads!r}")
        if not isinstance(config.deterministic, bool):
            raise ConfigError(f"[train] deterministic must be true or false; got {config.deterministic!r}")
        if config.lp_optimizer not in OPTIMIZERS or config.fft_optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        if config.scheduler not in ("cosine", "constant"):
            raise ConfigError(f"scheduler {config.scheduler!r}; expected one of: constant, cosine")
        if config.amp not in ("bf16", "none"):
            raise ConfigError(f"amp {config.amp!r}; expected one of: bf16, none")
        if config.compile not in (True, False, "auto"):
            raise ConfigError(f"compile {config.compile!r}; expected one of: true, false, 'auto'")
        return config


OPTIMIZERS = ("sgd", "adamw")
