"""SPICE's expression checks (math-verify, then SymPy) in a child process with a hard time
and memory limit.

Both sides of the check are model-written, and SymPy does big-integer arithmetic in C that
no signal interrupts: `exp(999999999*log(3))` becomes the integer 3**999999999 while the
expression is still being built (22 characters; it ran for minutes), and math-verify's own
limits are SIGALRM timers that hold only in a main thread. So the checks run in one
long-lived child (`python -m arena.envs.spice.checker`, JSON lines on its stdin and
stdout, `RLIMIT_AS` of `MEMORY_MB`); a check that takes longer than `CHECK_S` gets the
child killed and answers None (undecided: the answer then counts as not equal), and the
next check starts a fresh child. A check costs a pipe round trip (~0.1 ms) beside its own
work, from any thread.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

CHECK_S = 5.0  # most seconds one check may take (math-verify's own limit is 5 s a step)
MEMORY_MB = 2048  # the child's address space


def expressions_equal(a: str, b: str) -> bool | None:
    """math-verify's verdict (LaTeX and plain), then SymPy's on plain text
    (`arena.envs.spice.expression`, no `eval`): True when either says equal, False when
    one says not, None when neither decides. Runs in the child."""
    from arena.envs.spice import expression

    verdicts = [_math_verify(a, b), expression.equal(a, b)]
    if True in verdicts:
        return True
    return False if False in verdicts else None


def _math_verify(a: str, b: str) -> bool | None:
    try:
        from math_verify import parse, verify

        pa, pb = parse(f"${a}$"), parse(f"${b}$")
        return bool(verify(pb, pa)) if pa and pb else None
    except Exception:  # noqa: BLE001 - not installed, or unparsable
        return None


class Checker:
    """The parent's end: one child, restarted after a kill; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._fresh = False  # the child has not answered yet (its imports take a second or two)
        self.killed = 0  # checks that ran past CHECK_S (their child was killed)

    def equal(self, a: str, b: str, timeout: float | None = None) -> bool | None:
        """`expressions_equal(a, b)` in the child; None when it ran past `timeout`
        (default `CHECK_S`) or the child failed."""
        with self._lock:
            child = self._start()
            try:
                child.stdin.write(json.dumps([a, b]) + "\n")
                child.stdin.flush()
                line = self._read_line(child, CHECK_S if timeout is None else timeout)
            except (OSError, ValueError):
                line = None
            if line is None:
                self._stop()
                return None
            try:
                verdict = json.loads(line)
            except ValueError:
                self._stop()
                return None
            return verdict if verdict in (True, False) else None

    def _start(self) -> subprocess.Popen:
        if self._child is None or self._child.poll() is not None:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self._child = subprocess.Popen([sys.executable, "-m", "arena.envs.spice.checker", str(MEMORY_MB)],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                           text=True, env=env)
            self._fresh = True
        return self._child

    def _read_line(self, child: subprocess.Popen, timeout: float) -> str | None:
        """The child's next answer line, or None past `timeout` (the first check waits for
        the child's imports as well)."""
        deadline = time.monotonic() + timeout + (20.0 if self._fresh else 0.0)
        fd = child.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                self.killed += 1
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            buf += chunk
        self._fresh = False
        return buf.split(b"\n", 1)[0].decode()

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


_CHECKER: Checker | None = None
_CHECKER_LOCK = threading.Lock()


def checker() -> Checker:
    """The process's shared checker (its child started on first use, killed at exit)."""
    global _CHECKER
    with _CHECKER_LOCK:
        if _CHECKER is None:
            _CHECKER = Checker()
            atexit.register(_CHECKER.close)
        return _CHECKER


def _serve(memory_mb: int) -> None:
    """The child: one JSON line `[a, b]` in, one verdict (true, false or null) out."""
    import resource

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for line in sys.stdin:
        try:
            a, b = json.loads(line)
            verdict: Any = expressions_equal(str(a), str(b))
        except (ValueError, TypeError, MemoryError, RecursionError):
            verdict = None
        sys.stdout.write(json.dumps(verdict) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_MB)
