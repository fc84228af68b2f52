"""Run the real ``nlbench`` command in a subprocess (with the tests' tiny backbone registered), for tests
that need real processes: signals, concurrent runs, permissions of another user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
CODE = "import sys, _tinynet; _tinynet.register(); from nlbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
# Capabilities that let root read and write any file: dropped to make root meet permissions like a user.
_DAC_CAPS = "-dac_override,-dac_read_search"


def unprivileged_prefix() -> list[str]:
    """Command prefix under which file permissions apply: none for a user; for root, ``setpriv`` without
    the DAC capabilities (root then reads a 0600 file of another owner, or a 0000 file, no more than a
    user would)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot drop the capabilities that bypass permissions")
    return ["setpriv", f"--inh-caps={_DAC_CAPS}", f"--bounding-set={_DAC_CAPS}", "--"]


def nlbench_cli(args: list[str], *, sleep: float = 0.0, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                unprivileged: bool = False, umask: int | None = None, env: dict | None = None,
                new_session: bool = False) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "NLBENCH_TEST_STEP_SLEEP": str(sleep), "OMP_NUM_THREADS": "1", "CI": "1", **(env or {})}
    prefix = unprivileged_prefix() if unprivileged else []
    return subprocess.Popen([*prefix, sys.executable, "-u", "-c", CODE, *args], env=environ, stdout=stdout,
                            stderr=stderr, text=True, start_new_session=new_session,
                            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def wait_ok(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"{out}\n{err or ''}"
    return out
