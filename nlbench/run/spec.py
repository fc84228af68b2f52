"""A cell spec: one run of a grid, everything that determines its record, made once by ``grids.expand``.

The fields are the spec as records store it (``as_dict``) and as the config hash reads it; beside them the
spec holds their typed forms, resolved once: ``train_config`` (the ``TrainConfig`` of the ``train`` fields,
which every reader of a [train] value uses) and ``method_instance`` (the method built from ``method_params``,
when the grid expansion made it). ``train`` stays the plain dict records store and the config hash reads. Every
layer that runs or describes a cell (engine paths, records, executors, the cell layer) reads this module; it
imports nothing above the configuration types.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nlbench.atomic import hash_file
from nlbench.engine.config import TrainConfig
from nlbench.registry import METHODS

# The typed forms of stored fields: neither in ``as_dict`` (records) nor in the config hash.
TYPED_FIELDS = ("train_config", "method_instance")


@dataclass(frozen=True)
class CellSpec:
    """One run: everything that determines its record (the grid name excepted)."""

    grid: str
    dataset: str
    backbone: str
    noise: str
    rate: float
    method: str
    mode: str
    seed: int
    backbone_tag: str | None = None
    backbone_weights: str | None = None
    noise_options: dict = field(default_factory=dict)
    method_params: dict = field(default_factory=dict)  # resolved: every field, defaults included
    dataset_options: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)  # resolved TrainConfig, as stored and hashed; read train_config
    val_labels: str = "noisy"
    method_tag: str | None = None  # names a variant of a method (its params differ); part of the cell id
    # The seed the noisy labels are drawn from (the grid's noise_seed, or the training seed under "per-seed");
    # None: the training seed (records written before the field existed).
    noise_seed: int | None = None
    # The method built from method_params, once, by grids.expand (None for a spec read back from a record).
    method_instance: Any = field(default=None, compare=False, repr=False)
    # TrainConfig(**train), built in __post_init__ (no checks: the grid schema checked the values).
    train_config: TrainConfig = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_config", TrainConfig(**self.train))
        if self.method_instance is not None and asdict(self.method_instance) != self.method_params:
            raise ValueError(f"cell {self.cell_id}: method_instance {self.method_instance!r} does not hold "
                             f"method_params {self.method_params!r}")

    @property
    def method_key(self) -> str:
        """The method as tables and ids name it: ``dividemix`` or, for a tagged variant, ``dividemix@long``."""
        return f"{self.method}@{self.method_tag}" if self.method_tag else self.method

    @property
    def label_seed(self) -> int:
        """The seed of this cell's noisy-label draw."""
        return self.seed if self.noise_seed is None else self.noise_seed

    @property
    def cell_id(self) -> str:
        """Path-safe, human-readable id (the config hash decides whether a record is current)."""
        tag = f"@{self.backbone_tag}" if self.backbone_tag else ""
        parts = [self.dataset, f"{self.backbone}{tag}", f"{self.noise}{self.rate:g}", self.mode, self.method_key,
                 f"seed{self.seed}"]
        return "__".join(p.replace("/", "-").replace(" ", "") for p in parts)

    def as_dict(self) -> dict[str, Any]:
        """The stored fields (records' ``config``), without their typed forms."""
        d = asdict(self)
        for name in TYPED_FIELDS:
            d.pop(name)
        return d

    @property
    def config_hash(self) -> str:
        """sha256 of everything that determines the record: the [train] fields this cell's phases read
        (``train_fields_used``) and the content, not the path, of a local weights or mapping file."""
        d = self.as_dict()
        d.pop("grid")
        if d["method_tag"] is None:
            d.pop("method_tag")  # untagged cells keep the hashes they had before tags existed
        if self.label_seed == self.seed:
            d.pop("noise_seed")  # labels drawn from the training seed, as before the field existed: same hash
        d["train"] = train_fields_used(self.method, self.mode, self.train)
        if self.backbone_weights:
            d["backbone_weights"] = _file_identity(self.backbone_weights)
        mapping = self.noise_options.get("mapping_file")
        if isinstance(mapping, str):
            d["noise_options"] = {**self.noise_options, "mapping_file": _file_identity(mapping)}
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> CellSpec:
        return cls(**d)


# [train] fields read by one kind of phase only: a cell's config hash covers the fields its phases read, so
# changing lp_epochs does not invalidate fine-tuning cells. Every other field (device, amp, a new one) is
# read by both and hashed for every cell.
FFT_ONLY_FIELDS = ("augment", "compile", "save_finetuned_features")


def train_fields_used(method: str, mode: str, train: dict) -> dict:
    """The part of a resolved [train] table that a cell of ``method`` in ``mode`` reads. A method whose fft
    mode also trains linear probes (confident learning's cross-validated probes) declares
    ``probes_in_fft_mode = True``."""
    phases = set(mode.split("-"))
    uses_lp = "lp" in phases or bool(getattr(METHODS.get(method), "probes_in_fft_mode", False))
    uses_fft = "fft" in phases

    def used(name: str) -> bool:
        if name.startswith("lp_"):
            return uses_lp
        if name.startswith("fft_") or name in FFT_ONLY_FIELDS:
            return uses_fft
        return True

    return {k: v for k, v in train.items() if used(k)}


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return hash_file(path).hexdigest()


def _file_identity(path: str) -> dict:
    """A file as a config hash sees it: its content's sha256 (the path where it cannot be read here)."""
    try:
        st = os.stat(path)
        return {"sha256": _sha256_of(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)}
    except OSError:
        return {"path": path, "sha256": None}
