"""SIGINT and SIGTERM end a command the same orderly way: an exception unwinds the stack (so temporary
files are removed, claims released and checkpoints kept), and the CLI prints one line saying what was
interrupted, exiting 130 (SIGINT) or 143 (SIGTERM) as a shell does for a process killed by them."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt (so libraries that stop cleanly on one stop on both:
    a DataLoader worker exits quietly)."""


def exit_code(exc: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def signal_name(exc: KeyboardInterrupt) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"


def note(exc: BaseException, what: str) -> None:
    """Record on ``exc`` what it interrupted (the innermost caller to note it wins)."""
    if getattr(exc, "nlbench_interrupted", None) is None:
        exc.nlbench_interrupted = what  # type: ignore[attr-defined]


def describe(exc: KeyboardInterrupt) -> str:
    what = getattr(exc, "nlbench_interrupted", None) or "the command"
    return f"interrupted by {signal_name(exc)} while running {what}"


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread (it would end the process with
    no cleanup and no word); the previous handler comes back afterwards."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ignore_further_signals() -> None:
    """While the one-line message is printed, a second Ctrl-C must not turn it into a traceback."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.SIG_IGN)
