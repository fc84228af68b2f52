"""Where backbone weights come from, offline first, and how they are loaded strictly.

Published weights are looked up in this order:

1. ``weights=PATH`` (a grid's backbone field ``weights``): a local checkpoint file, ``.safetensors`` or a
   torch pickle, holding either the publisher's checkpoint or a backbone's own ``state_dict``.
2. ``$NLBENCH_WEIGHTS_DIR/<name>@<tag>.safetensors`` (``<name>.safetensors`` for a family without tags): the
   files ``nlbench fetch-weights --weights-dir DIR`` writes, for compute nodes without internet.
3. The Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``),
   downloading into it only when ``HF_HUB_OFFLINE`` is not set.

When none has the weights, a ``ConfigError`` names the backbone, the hub id and file, and the command that
fetches them. Every load is strict: every tensor of the model is filled, none is left over, and every
shape matches (timm's own ``load_pretrained`` loads non-strictly when the classifier is dropped, which
would let a wrong file pass silently).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from nlbench.backbones import backbone_ref
from nlbench.errors import ConfigError

WEIGHTS_DIR_ENV = "NLBENCH_WEIGHTS_DIR"
_TRUE = {"1", "true", "yes", "on"}


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not at import as huggingface_hub does)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def weights_file_name(name: str, tag: str | None) -> str:
    """File name of a backbone's weights in a weights folder (``fetch-weights --weights-dir``)."""
    return f"{backbone_ref(name, tag)}.safetensors"


def fetch_command(name: str, tag: str | None, default_tag: str | None) -> str:
    """The exact command that fetches this checkpoint (the tag is spelled out only when not the default)."""
    return f"nlbench fetch-weights --backbones {backbone_ref(name, tag if tag != default_tag else None)}"


def missing_weights(name: str, tag: str | None, default_tag: str | None, what: str, reason: str) -> ConfigError:
    """The one-line error for weights that are not available here."""
    return ConfigError(
        f"backbone {name!r}: pretrained weights {what} are not available: {reason}. On a machine with internet run "
        f"`{fetch_command(name, tag, default_tag)}` (fills the Hugging Face cache; add --weights-dir DIR to also "
        f"write {weights_file_name(name, tag)} there and set {WEIGHTS_DIR_ENV}=DIR on the compute nodes), or give "
        f"a local checkpoint file as the grid's backbone field weights = \"PATH\""
    )


def hub_file(name: str, tag: str | None, default_tag: str | None, repo_id: str, filenames: Sequence[str]) -> Path:
    """Path of the first of ``filenames`` in hub repository ``repo_id``: from the cache, else downloaded
    (unless offline). Raises ``ConfigError`` (see ``missing_weights``) when it cannot be had."""
    import huggingface_hub
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    cache = hf_cache_dir()
    what = f"{repo_id} ({' or '.join(filenames)})"
    for filename in filenames:
        hit = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=cache)
        if isinstance(hit, str):
            return Path(hit)
    if offline():
        raise missing_weights(name, tag, default_tag, what,
                              f"HF_HUB_OFFLINE is set and they are not in the Hugging Face cache {cache}")
    for filename in filenames:
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, cache_dir=cache))
        except LocalEntryNotFoundError:  # subclass of EntryNotFoundError: no connection and not cached
            raise missing_weights(name, tag, default_tag, what,
                                  f"the Hugging Face Hub cannot be reached and the cache {cache} lacks them") from None
        except EntryNotFoundError:  # the repository has no such file: try the next name
            continue
        except (OSError, ValueError) as exc:  # HTTP errors (gated, unknown repository) are OSErrors
            raise missing_weights(name, tag, default_tag, what, f"{type(exc).__name__}: {exc}") from None
    raise missing_weights(name, tag, default_tag, what, f"the hub repository {repo_id} has none of these files")


def weights_dir_file(name: str, tag: str | None) -> Path | None:
    """``$NLBENCH_WEIGHTS_DIR/<name>@<tag>.safetensors`` when the variable is set and the file exists."""
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        return None
    path = Path(folder) / weights_file_name(name, tag)
    return path if path.is_file() else None


@contextlib.contextmanager
def ignore_weights_dir() -> Iterator[None]:
    """Within this block the weights folder is not consulted (``fetch-weights`` reads the hub, not its own output)."""
    saved = os.environ.pop(WEIGHTS_DIR_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[WEIGHTS_DIR_ENV] = saved


def strip_prefix(state: dict[str, torch.Tensor], prefixes: Sequence[str] = ("module.", "model.")) -> dict:
    """Drop a wrapper prefix (DDP's ``module.``, a Lightning-style ``model.``) that every key carries."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def state_mismatch(module: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable differences between ``state`` and ``module``'s tensors (empty when they fit exactly)."""
    target = module.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} {tuple(state[k].shape)} ≠ {tuple(v.shape)}" for k, v in target.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" … ({len(items)} in all)" if len(items) > 4 else ""
            problems.append(f"{label}: {', '.join(items[:4])}{more}")
    return problems


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, backbone: str, source: str) -> None:
    """Load ``state`` into ``module``: every key present, none extra, every shape equal, else ConfigError."""
    problems = state_mismatch(module, state)
    if problems:
        raise ConfigError(f"backbone {backbone!r}: checkpoint {source} does not fit the model ({'; '.join(problems)})")
    module.load_state_dict(state, strict=True)


def save_weights(module: nn.Module, path: Path) -> None:
    """Write ``module``'s state dict as safetensors, atomically (temporary name, then rename)."""
    import tempfile

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
