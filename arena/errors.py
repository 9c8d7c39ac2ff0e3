"""The one exception type arena raises for user mistakes.

An `ArenaError` message is written for the person at the keyboard: it names what was
wrong and how to fix it. The CLI prints it as a single line, without a traceback.
"""

from __future__ import annotations


class ArenaError(Exception):
    """Bad input (unknown env id, bad kwargs, malformed file or config, missing service)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill PID`, a cluster's pre-emption), raised in the main thread like Ctrl-C so
    that the same clean-up runs: the episode store is closed, `run.json` says `interrupted`,
    and `arena train` prints the step and the resume command. Exit code 143 (128 + 15)."""


def interrupt_exit_code(exc: BaseException) -> int:
    """The shell's exit code for an interruption: 143 for SIGTERM, 130 for Ctrl-C (128 + signal)."""
    return 143 if isinstance(exc, Terminated) else 130
