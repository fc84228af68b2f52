"""SLURM parameters (``SlurmOptions``) and the one check of a ``[slurm]`` table's keys and list values
(``options_from_table``), used by the grid schema (a grid's ``[slurm]``, on every run, local ones too) and
by ``nlbench.run.executors`` (the user config file, the command line). Imports nothing of nlbench's but its
errors, so the schema can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from nlbench.errors import ConfigError

# sbatch flags nlbench sets itself: an extra flag may not override them, or job tracking breaks.
RESERVED_FLAGS = ("array", "output", "error", "open-mode", "signal", "job-name", "wrap", "parsable")


@dataclass(frozen=True)
class SlurmOptions:
    """SLURM parameters of a submission; None means "not set" (the cluster's default applies).

    partition, account, qos: sbatch --partition/--account/--qos; gpus: GPUs of the job's one task
    (--gpus-per-node); cpus_per_task; mem_gb: --mem; time_min: --time in minutes; array_parallelism:
    array tasks running at once (--array=0-N%P); signal_delay_s: how long before the time limit SLURM
    sends the requeue signal (SIGUSR2), enough for one checkpoint write; max_requeues: how many times a
    timed-out job may requeue itself; extra: further sbatch flags, e.g. ["--constraint=a100",
    "--exclusive"]; setup: shell lines run before the job (e.g. "module load cuda").
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    time_min: int = 240
    array_parallelism: int = 64
    signal_delay_s: int = 120
    max_requeues: int = 10
    extra: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()

    @classmethod
    def fields_help(cls) -> str:
        return ", ".join(f.name for f in fields(cls))

    def validate(self, source: str = "slurm options") -> SlurmOptions:
        for name in ("gpus", "cpus_per_task", "time_min", "array_parallelism", "max_requeues"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ConfigError(f"{source}: {name} must be a non-negative integer; got {value!r}")
        if self.time_min < 1:
            raise ConfigError(f"{source}: time_min must be ≥ 1 minute; got {self.time_min}")
        if self.array_parallelism < 1:
            raise ConfigError(f"{source}: array_parallelism must be ≥ 1; got {self.array_parallelism}")
        if self.mem_gb is not None and (not isinstance(self.mem_gb, (int, float)) or self.mem_gb <= 0):
            raise ConfigError(f"{source}: mem_gb must be a positive number; got {self.mem_gb!r}")
        if not isinstance(self.signal_delay_s, int) or self.signal_delay_s < 0:
            raise ConfigError(f"{source}: signal_delay_s must be a non-negative integer; got {self.signal_delay_s!r}")
        if self.signal_delay_s >= self.time_min * 60:
            raise ConfigError(f"{source}: signal_delay_s={self.signal_delay_s} is not shorter than the time limit "
                              f"({self.time_min} min): the requeue signal would come before the job starts")
        extra_parameters(self.extra)  # raises on a malformed or reserved flag
        return self

    def submitit_parameters(self, name: str) -> dict[str, Any]:
        """Keyword arguments of ``AutoExecutor.update_parameters``."""
        params: dict[str, Any] = {
            "name": name,
            "timeout_min": self.time_min,
            "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": self.signal_delay_s,
        }
        optional = {"slurm_partition": self.partition, "slurm_account": self.account, "slurm_qos": self.qos,
                    "gpus_per_node": self.gpus, "cpus_per_task": self.cpus_per_task, "mem_gb": self.mem_gb}
        params.update({k: v for k, v in optional.items() if v is not None})
        if self.extra:
            params["slurm_additional_parameters"] = extra_parameters(self.extra)
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def extra_parameters(flags: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """sbatch flags ("--constraint=a100", "--exclusive", "constraint=a100") → submitit's
    ``additional_parameters`` {name: value or True}."""
    out: dict[str, Any] = {}
    for flag in flags:
        if not isinstance(flag, str) or not flag.strip("-"):
            raise ConfigError(f"extra sbatch flag {flag!r}: expected a string like '--constraint=a100'")
        key, eq, value = flag.lstrip("-").partition("=")
        key = key.strip()
        if key.replace("_", "-") in RESERVED_FLAGS:
            raise ConfigError(f"extra sbatch flag {flag!r}: nlbench sets --{key} itself; "
                              f"reserved: {', '.join('--' + f for f in RESERVED_FLAGS)}")
        out[key] = value if eq else True
    return out


def options_from_table(table: dict, source: str) -> dict[str, Any]:
    known = {f.name for f in fields(SlurmOptions)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown SLURM option(s) {', '.join(unknown)}; expected: "
                          f"{SlurmOptions.fields_help()}")
    out = dict(table)
    for name in ("extra", "setup"):
        if name in out:
            value = out[name]
            if isinstance(value, dict) and name == "extra":  # {constraint = "a100", exclusive = true}
                value = [f"--{k}" if v is True else f"--{k}={v}" for k, v in value.items()]
            if isinstance(value, str):
                value = [value]
            if isinstance(value, tuple):  # repeated command-line flags
                value = list(value)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {name} must be a list of strings; got {value!r}")
            out[name] = tuple(value)
    return out
