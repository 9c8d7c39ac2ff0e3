"""SPICE's expression checks (math-verify, then SymPy) in a child process with a hard time
and memory limit.

Both sides of the check are model-written, and SymPy does big-integer arithmetic in C that
no signal interrupts: `exp(999999999*log(3))` becomes the integer 3**999999999 while the
expression is still being built (22 characters; it ran for minutes), and math-verify's own
limits are SIGALRM timers that hold only in a main thread. So the checks run in one
long-lived child (`python -m arena.envs.spice.checker`, JSON lines on its stdin and
stdout, `RLIMIT_AS` of `MEMORY_MB`); a check that takes longer than `CHECK_S` gets the
child killed and answers None (undecided: the answer then counts as not equal), and a
fresh child starts at once (`Checker`). A check costs a pipe round trip (~0.1 ms) beside its own
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
START_S = 30.0  # most seconds a child may take to import what it checks with
MEMORY_MB = 2048  # the child's address space
MAX_CHARS = 2000  # a longer answer or gold is undecided unparsed (no expression is this long)
VERDICTS_KEPT = 10_000  # (answer, gold) verdicts a process keeps


def expressions_equal(a: str, b: str) -> bool | None:
    """math-verify's verdict (LaTeX and plain) and SymPy's on plain text
    (`arena.envs.spice.expression`, no `eval`): True when one says equal and neither says
    not, False when one says not, None when neither decides. Runs in the child.

    Both must agree: they read precedence differently (math-verify takes `1/2x` as 1/(2x),
    SymPy as x/2), and "either says equal" paid the ambiguous answer against both golds."""
    from arena.envs.spice import expression

    verdicts = {_math_verify(a, b), expression.equal(a, b)} - {None}
    return None if not verdicts else verdicts == {True}


def _math_verify(a: str, b: str) -> bool | None:
    try:
        from math_verify import parse, verify

        pa, pb = parse(f"${a}$"), parse(f"${b}$")
        return bool(verify(pb, pa)) if pa and pb else None
    except Exception:  # noqa: BLE001 - not installed, or unparsable
        return None


class Checker:
    """The parent's end: one child, replaced at once after a kill; thread-safe.

    A child says it is ready once its imports are done, and only then is a check timed: a
    fresh child's check got `CHECK_S` plus 20 s for them, so each hostile answer after a kill
    held every check of the process (one lock) for 25 s. A replacement starts as soon as a
    child is killed, its imports overlapping whatever the caller does next. Verdicts are kept
    per (answer, gold): the same answer again (a gold checked against every attempt) costs
    nothing, and reads the same within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._ready = False  # the child has said it finished its imports
        self._pending = b""  # what the child wrote after the last line read
        self._verdicts: dict[tuple[str, str, float], bool | None] = {}
        self.killed = 0  # checks that ran past CHECK_S (their child was killed)

    def equal(self, a: str, b: str, timeout: float | None = None) -> bool | None:
        """`expressions_equal(a, b)` in the child; None when it ran past `timeout`
        (default `CHECK_S`) or the child failed."""
        if len(a) > MAX_CHARS or len(b) > MAX_CHARS:
            return None  # no expression an answer means is this long: undecided, unparsed (and not kept)
        key = (a, b, CHECK_S if timeout is None else timeout)
        with self._lock:
            if key in self._verdicts:
                return self._verdicts[key]
            child = self._ready_child()
            if child is None:  # no child could start: nothing is known of this answer, nothing kept
                return None
            verdict = self._ask(child, a, b, key[2])
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            self._verdicts[key] = verdict
            return verdict

    def _ask(self, child: subprocess.Popen, a: str, b: str, timeout: float) -> bool | None:
        try:
            child.stdin.write(json.dumps([a, b]) + "\n")
            child.stdin.flush()
            line = self._read_line(child, timeout)
        except (OSError, ValueError):
            line = None
        if line is None:
            self.killed += 1
            self._replace()
            return None
        try:
            verdict = json.loads(line)
        except ValueError:
            self._replace()
            return None
        return verdict if verdict in (True, False) else None

    def _ready_child(self) -> subprocess.Popen | None:
        """The child, started if there is none, once it has said it is ready (None when it
        does not within `START_S`)."""
        if self._child is None or self._child.poll() is not None:
            self._spawn()
        if not self._ready:
            deadline = time.monotonic() + START_S
            while (line := self._read_line(self._child, deadline - time.monotonic())) != '"ready"':
                if line is None:  # (a line before it is something an import printed)
                    self._stop()
                    return None
            self._ready = True
        return self._child

    def _spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._child = subprocess.Popen([sys.executable, "-m", "arena.envs.spice.checker", str(MEMORY_MB)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       text=True, env=env)
        self._ready, self._pending = False, b""

    def _replace(self) -> None:
        self._stop()
        self._spawn()

    def _read_line(self, child: subprocess.Popen, timeout: float) -> str | None:
        """The child's next line, or None past `timeout` or at its end; what it wrote after
        that line waits for the next read."""
        deadline = time.monotonic() + timeout
        fd = child.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode(errors="replace")

    def _stop(self) -> None:
        child, self._child = self._child, None
        self._ready = False
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
    expressions_equal("1", "1")  # the imports (math-verify, SymPy) before the first check is timed
    sys.stdout.write('"ready"\n')
    sys.stdout.flush()
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
