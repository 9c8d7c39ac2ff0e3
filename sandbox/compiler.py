"""Compile each program and call once, on the host; jobs receive marshalled code objects.

Why. A job runs in a process freshly forked from its worker's runner. Compiling the
program there (the runner never sees a job: see runner.py) cost about 0.3 ms of CPU per
job in `scripts/bench_sandbox.py` (1.9 ms per job against 1.6 ms with this module, on a
2-core VM), several times a compile in a warm process (0.05-0.13 ms), because the
compiler writes to copy-on-write pages it shares with the runner. ``marshal.loads`` of
the same code costs a few microseconds and touches few pages. So a `HostCompiler` compiles every distinct
program and call once, in a helper process, and the job ``marshal.loads`` and ``exec``s
the code; identical programs (AZR scores one program on many inputs) are compiled once
per pool (an LRU of `CACHE_BYTES`).

Security. Compiling runs none of the program: CPython's compiler executes no code of its
input (no imports, no hooks). The program still runs only in its job's process, under the
job's limits. The job only ever receives bytes the host produced (``marshal.loads`` of
untrusted bytes would be unsafe; of these it is not). The compiler does parse hostile
text, so it runs in a helper process, not in the host: a compiler crash, a hang or a
memory blow-up costs the helper (restarted, or given up after `MAX_FAILURES`), never the
caller; its address space is limited to `HELPER_MEMORY`, and a root host runs it as
nobody (as the workers).

Fidelity. A result never depends on where the code was compiled. A source the helper
cannot compile, or whose compile warns (a SyntaxWarning belongs in the program's stderr),
or takes longer than `SLOW_COMPILE_S` (it must count against the job's timeout), or is
longer than `MAX_SOURCE` characters, or belongs to a job whose recursion limit is below
`HELPER_RECURSION`, is sent as source and compiled in the job, as before. (One difference
remains: the host's compile is not under the job's RLIMIT_AS, so a source of at most 64 KiB
whose compile alone would exhaust the job's memory now runs.)
Both compile with the same file names, flags and optimisation level. Marshalled code is
sent only to a runner whose interpreter has the helper's bytecode magic number (checked
per worker from its ready line: a Docker image's Python may differ from the host's).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import subprocess
import threading
import time

from arena.sandbox.channel import BufferedReader

log = logging.getLogger("arena.sandbox")

MAX_SOURCE = 1 << 16
"""Longest source (characters) compiled on the host; longer ones compile in the job."""
SLOW_COMPILE_S = 0.05
"""A source whose compile takes longer is compiled in the job instead, so that a
pathological compile counts against the job's own timeout."""
CACHE_BYTES = 32 << 20
"""Bytes (source + code) the compiled-code LRU of one pool may hold."""
HELPER_MEMORY = 1 << 30
"""RLIMIT_AS of the helper process."""
HELPER_RECURSION = 1000
"""The helper's recursion limit, which bounds how deeply nested a source it compiles. A job
whose ``recursion_limit`` is lower compiles its own source: under its lower limit, a
source the helper compiles could fail to compile in the job (RecursionError)."""
MAX_FAILURES = 3
"""Helper crashes or timeouts after which a pool stops compiling on the host."""

HELPER = r'''
import marshal, sys, time, warnings
warnings.simplefilter("error")  # a compile that warns fails here: the job compiles it
slow = float(sys.argv[1])
sys.setrecursionlimit(int(sys.argv[2]))
inp, out = sys.stdin.buffer, sys.stdout.buffer
out.write(sys.modules["_frozen_importlib_external"].MAGIC_NUMBER.hex().encode() + b"\n")
out.flush()
names = {b"exec": "<program>", b"eval": "<call>"}
while True:
    line = inp.readline()
    if not line:
        break
    batch = []
    for _ in range(int(line)):  # the whole batch first: the host is never blocked writing
        mode, size = inp.readline().split()
        batch.append((mode, inp.read(int(size))))
    parts = []
    for mode, raw in batch:
        data = b""
        try:
            src = raw.decode("utf-8", "surrogatepass")
            t = time.perf_counter()
            code = compile(src, names[mode], mode.decode(), dont_inherit=True, optimize=0)
            if time.perf_counter() - t < slow:
                data = marshal.dumps(code)
        except BaseException:
            pass
        parts.append(b"%d\n" % len(data))
        parts.append(data)
    out.write(b"".join(parts))
    out.flush()
'''


CHUNK_BYTES = 1 << 18
"""Most source bytes sent to the helper in one round trip (each with its own deadline)."""


class HelperFailed(Exception):
    pass


def _chunks(keys: list[tuple[str, str]]):
    chunk: list[tuple[str, str]] = []
    size = 0
    for key in keys:
        if chunk and (size + len(key[1]) > CHUNK_BYTES or len(chunk) >= 1024):
            yield chunk
            chunk, size = [], 0
        chunk.append(key)
        size += len(key[1])
    if chunk:
        yield chunk


class HostCompiler(BufferedReader):
    """Marshalled code for (mode, source) pairs, from a helper process of ``python``.

    Thread-safe; `codes` never raises (a failure means: compile in the job)."""

    def __init__(self, python: str, timeout_s: float = 2.0) -> None:
        self.python = python
        self.timeout_s = timeout_s
        self.magic: str | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._buf = bytearray()
        self._cache: collections.OrderedDict[tuple[str, str], bytes | None] = collections.OrderedDict()
        self._cached_bytes = 0
        self.failures = 0
        self.stats = {"compiled": 0, "cache_hits": 0, "in_job": 0}

    @property
    def usable(self) -> bool:
        return self.failures < MAX_FAILURES

    def codes(self, items: list[tuple[str, str]]) -> list[bytes | None]:
        """For each ``(mode, source)`` (mode ``exec`` or ``eval``): marshalled code, or
        None where the job must compile the source itself."""
        out: list[bytes | None] = [None] * len(items)
        with self._lock:
            todo: dict[tuple[str, str], list[int]] = {}
            for i, key in enumerate(items):
                if len(key[1]) > MAX_SOURCE:
                    self.stats["in_job"] += 1
                    continue
                if key in self._cache:
                    self._cache.move_to_end(key)
                    out[i] = self._cache[key]
                    self.stats["cache_hits"] += 1
                else:
                    todo.setdefault(key, []).append(i)
            if not todo or not self.usable:
                return out
            keys = list(todo)
            try:
                got = []
                for chunk in _chunks(keys):
                    got += self._ask(chunk)
            except (HelperFailed, OSError, ValueError) as e:
                self.failures += 1
                self._stop()
                log.warning("sandbox compile helper failed (%s); these jobs compile their own "
                            "programs%s", e, "" if self.usable else ", and so will all later ones")
                return out
            for key, data in zip(keys, got, strict=True):
                self._remember(key, data)
                for i in todo[key]:
                    out[i] = data
                self.stats["compiled" if data is not None else "in_job"] += 1
        return out

    def _remember(self, key: tuple[str, str], data: bytes | None) -> None:
        self._cache[key] = data
        self._cached_bytes += len(key[1]) + len(data or b"")
        while self._cached_bytes > CACHE_BYTES and self._cache:
            (_, src), old = self._cache.popitem(last=False)
            self._cached_bytes -= len(src) + len(old or b"")

    # -- the helper ----------------------------------------------------------------------
    def _start(self) -> None:
        from arena.sandbox.process_worker import _unprivileged

        self._proc = subprocess.Popen(
            [self.python, "-S", "-s", "-E", "-c", HELPER, repr(SLOW_COMPILE_S), str(HELPER_RECURSION)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={"PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}, start_new_session=True,
            close_fds=True, bufsize=0, cwd="/", **_unprivileged())
        self._buf.clear()
        try:
            import resource

            resource.prlimit(self._proc.pid, resource.RLIMIT_AS, (HELPER_MEMORY, HELPER_MEMORY))
            resource.prlimit(self._proc.pid, resource.RLIMIT_CORE, (0, 0))
        except (ImportError, OSError, ValueError, AttributeError):
            pass
        self.magic = self.readline(time.monotonic() + 20).decode("ascii")

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.kill()
        except OSError:
            pass
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _fill(self, deadline: float) -> None:
        fd = self._proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise HelperFailed("no answer in time")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise HelperFailed(f"exited (status {self._proc.poll()})")
        self._buf += chunk

    def _ask(self, keys: list[tuple[str, str]]) -> list[bytes | None]:
        if self._proc is None or self._proc.poll() is not None:
            self._stop()
            self._start()
        parts = [b"%d\n" % len(keys)]
        for mode, src in keys:
            data = src.encode("utf-8", "surrogatepass")
            parts += [b"%s %d\n" % (mode.encode("ascii"), len(data)), data]
        view = memoryview(b"".join(parts))
        while view:
            view = view[os.write(self._proc.stdin.fileno(), view):]
        deadline = time.monotonic() + self.timeout_s + 0.002 * len(keys)
        got: list[bytes | None] = []
        for _ in keys:
            got.append(self.read_exact(int(self.readline(deadline)), deadline) or None)
        return got
