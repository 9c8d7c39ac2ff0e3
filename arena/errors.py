"""The one exception type arena raises for user mistakes.

An `ArenaError` message is written for the person at the keyboard: it names what was
wrong and how to fix it. The CLI prints it as a single line, without a traceback.
"""

from __future__ import annotations


class ArenaError(Exception):
    """Bad input (unknown env id, bad kwargs, malformed file or config, missing service)."""
