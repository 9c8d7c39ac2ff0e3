"""The one exception type arena raises for user mistakes, and interruptions.

An `ArenaError` message is written for the person at the keyboard: it names what was
wrong and how to fix it. The CLI prints it as a single line, without a traceback.
Ctrl-C and SIGTERM stop a command as `KeyboardInterrupt` (`Terminated`), held back while
a checkpoint is written (`interrupts_held`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class ArenaError(Exception):
    """Bad input (unknown env id, bad kwargs, malformed file or config, missing service)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a cluster's pre-emption), raised in the main thread like Ctrl-C so
    that the same clean-up runs: the episode store is closed, `run.json` says `interrupted`,
    and `arena train` prints the step and the resume command. Exit code 143 (128 + 15)."""


def interrupt_exit_code(exc: BaseException) -> int:
    """The shell's exit code for an interruption: 143 for SIGTERM, 130 for Ctrl-C (128 + signal)."""
    return 143 if isinstance(exc, Terminated) else 130


@contextlib.contextmanager
def interrupts_held(what: str) -> Iterator[None]:
    """Ctrl-C and SIGTERM held until the block has run, then raised as they would have been:
    for work that an interruption would leave half done (a checkpoint being written: one cut
    off was no checkpoint, and a run stopped during its last one could not be resumed). The
    first signal says `what` is being finished; a second one is raised at once. Only in the
    main thread, and only for signals whose handler is a Python function (SIGTERM's default
    action, torchrun's stop, stays immediate)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def hold(signum: int, frame: Any) -> None:
        if held:
            _raise_as(saved[signum], signum, frame)
        held.append(signum)
        print(f"\n{what} before stopping (again to stop at once)", file=sys.stderr, flush=True)

    for s, handler in saved.items():
        if callable(handler):
            signal.signal(s, hold)
    try:
        yield
    finally:
        for s, handler in saved.items():
            if callable(handler):
                signal.signal(s, handler)
    if held:
        _raise_as(saved[held[0]], held[0], None)


def _raise_as(handler: Any, signum: int, frame: Any) -> None:
    handler(signum, frame)  # Python's default_int_handler raises KeyboardInterrupt; arena's SIGTERM one, Terminated
