"""Session fixtures shared by every test module.

`ARENA_CACHE` points at a temporary folder for the whole session (unless it is already
set), so the tiny model and anything else arena caches are built there and the user's
`~/.cache/arena` is never touched.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def arena_cache(tmp_path_factory):
    """A session-wide `ARENA_CACHE` (the tiny model is built once per session into it)."""
    if os.environ.get("ARENA_CACHE"):
        yield os.environ["ARENA_CACHE"]
        return
    path = str(tmp_path_factory.mktemp("arena-cache"))
    os.environ["ARENA_CACHE"] = path
    try:
        yield path
    finally:
        os.environ.pop("ARENA_CACHE", None)


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt in this test, as in a terminal, even where the suite
    runs with SIGINT ignored (a background job, CI); restored after."""
    import signal

    saved = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, saved)
