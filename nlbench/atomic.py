"""Atomic file writes: a temporary file in the target's folder, flushed, fsynced, renamed over the target;
and ``hash_file``, the one function that hashes a file's bytes (weights identities, checkpoints, config
hashes, dataset checksums all call it).

Readers see the old file or the new one, never half of one; a failed write leaves no temporary file.
Records, feature arrays, labels, checkpoints and tables are all written this way. The file gets the mode
the umask gives (0644 under umask 022), as ``open`` would, not mkstemp's 0600: results are meant to be
shared. A write that fails for lack of space (a full disk, a quota, the file-size limit) raises that
``OSError`` (ENOSPC, EDQUOT, EFBIG) naming the target, even where the writer (torch.save, np.save) would
have hidden the cause.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from nlbench.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

# Errors that mean "no room for this file": a full disk, a quota, or the file-size limit (``ulimit -f``;
# Python ignores SIGXFSZ, so the write fails with EFBIG). The CLI names them in one line.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` sets it, briefly
    racing other threads that create files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _GuardedWriter:
    """The file object handed to a writer: it remembers the ``OSError`` of a failed write (torch.save
    turns one into ``unexpected pos``, np.save into ``N requested and M written``) and can hash what
    passes through it."""

    def __init__(self, f: BinaryIO, hasher: Any = None) -> None:
        self._f, self.hasher, self.error = f, hasher, None

    def write(self, data) -> int:
        try:
            n = self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise
        if self.hasher is not None:
            self.hasher.update(data)
        return n

    def flush(self) -> None:
        self._f.flush()


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object], *, sha256: bool = False) -> str | None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it to ``path``.

    With ``sha256`` the hex digest of the bytes written is returned (computed on the way, no re-read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from None
        raise
    guard = None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            guard = _GuardedWriter(f, hashlib.sha256() if sha256 else None)
            write(guard)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        hidden = guard.error if guard is not None and isinstance(exc, Exception) else None
        cause = hidden if hidden is not None else exc
        if isinstance(cause, OSError) and cause.errno in DISK_FULL:
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from None
        raise
    return guard.hasher.hexdigest() if guard.hasher is not None else None


def hash_file(file: str | Path | BinaryIO, hasher: Any = None) -> Any:
    """Feed the bytes of ``file`` (a path, or a binary file open for reading, read from where it stands) to
    ``hasher`` (a ``hashlib`` object; a new sha256 when None), streamed in 16 MiB blocks so a file of any size
    (a checkpoint of GBs) needs little memory, and return it: ``hash_file(p).hexdigest()`` is the file's sha256."""
    hasher = hashlib.sha256() if hasher is None else hasher
    if not isinstance(file, str | os.PathLike):
        while block := file.read(1 << 24):
            hasher.update(block)
        return hasher
    with open(file, "rb") as f:
        return hash_file(f, hasher)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    import numpy as np  # numpy for this writer only: `nlbench --help` loads this module

    atomic_write(path, lambda f: np.save(f, array))


def check_writable(folder: str | Path, what: str, hint: str) -> None:
    """Raise ``ConfigError`` unless files can be created in ``folder`` (or, where it does not exist yet,
    in its nearest existing ancestor, where it would be created). A probe file is created and removed at
    once, so the answer is the filesystem's (read-only mounts, ACLs, root) and nothing stays behind."""
    folder = Path(folder)
    probe_in = folder
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        fd, probe = tempfile.mkstemp(dir=probe_in, prefix=".nlbench-write-probe-")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{what} {str(folder)!r} is not writable ({reason} in {probe_in}); {hint}") from None
    os.close(fd)
    os.unlink(probe)
