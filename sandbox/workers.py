"""Sandbox workers: one runner (`arena.sandbox.runner`) each, in a container or a process.

A worker owns a byte channel to its runner. The host writes one request (a header, then
length-prefixed job frames) and reads back per job a meta line and the bytes the job
wrote (protocol: `arena.sandbox.runner`). This module holds what both kinds share: the
runner's source, `WorkerError`, and the base class `Worker` (the ready line, the request,
reading answers, the liveness check). The two kinds:

- `arena.sandbox.docker_worker`: `DockerWorker`, a long-lived locked-down container of
  the sandbox image, and the housekeeping of those containers (`clean`,
  `list_containers`).
- `arena.sandbox.process_worker`: `ProcessWorker`, the runner under bubblewrap (or, only
  with ``allow_unsafe=True``, a plain subprocess).
"""

from __future__ import annotations

import collections
import json
import logging
import select
import time
from pathlib import Path
from typing import Any

from arena.sandbox.channel import BufferedReader
from arena.sandbox.config import SandboxConfig
from arena.sandbox.runner import encode_job

log = logging.getLogger("arena.sandbox")

LABEL = "arena.sandbox"
"""Every container the sandbox creates carries ``arena.sandbox=1``; `docker_worker.clean` (`arena sandbox clean`) removes them."""
RUNNER_PATH = Path(__file__).with_name("runner.py")
NOBODY = 65534


def runner_source() -> str:
    return RUNNER_PATH.read_text()


_warned_unprotected = False


def _warn_unprotected(kind: str) -> None:
    """Once per process: the runner could not make itself non-dumpable (no ctypes)."""
    global _warned_unprotected
    if not _warned_unprotected:
        _warned_unprotected = True
        log.warning("the %s runner could not make itself non-dumpable (its Python lacks "
                    "ctypes): a program could ptrace it or open /proc/1/mem and forge the "
                    "results of later jobs", kind)


_warned_seccomp = False


def _warn_no_seccomp(kind: str) -> None:
    """Once per process: the runner cannot install the per-job seccomp filter."""
    global _warned_seccomp
    if not _warned_seccomp:
        _warned_seccomp = True
        log.warning("the %s runner cannot install the per-job seccomp filter (not x86-64, "
                    "or no ctypes): a program could change the runner's limits or signal it",
                    kind)


class WorkerError(Exception):
    """The worker (not the program) failed: dead, hung, or unable to start.

    ``hung`` is True when the runner did not answer in time (it enforces every job's
    deadline itself, so no program can make it late: the sandbox failed)."""

    def __init__(self, message: str, hung: bool = False) -> None:
        super().__init__(message)
        self.hung = hung


class Worker(BufferedReader):
    """A runner behind a byte channel; subclasses provide `_send_some`, `_recv`, `_fileno`
    and `_send_fileno`."""

    kind = "worker"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._buf = bytearray()
        self._log: collections.deque[bytes] = collections.deque(maxlen=64)
        self.alive = False
        self.jobs_done = 0
        self.info: dict[str, Any] = {}
        self.cpu: int | None = None  # the core this worker is pinned to (None: not pinned)
        self._outbox = memoryview(b"")  # the part of the request not yet written (`_send`)
        self._send_closed = False  # the runner's input was found closed (it retired or died)

    # channel primitives
    def _send_some(self, data: memoryview) -> int: ...  # without blocking: bytes taken (BlockingIOError: none)
    def _recv(self) -> bytes | None: ...  # b"" at EOF, None for "nothing yet"; when readable
    def _fileno(self) -> int: ...
    def _send_fileno(self) -> int: ...

    def _send(self, data: bytes) -> None:
        """Queue a request and write what the channel takes now; `_fill` writes the rest while
        it waits for answers. A blocking write of the whole request deadlocked: the runner
        sends earlier jobs' answers while later jobs' frames still fill the pipe to it, and
        once both pipes were full (a job printing 64 KB, then 64 KB of programs still to go)
        neither side moved again, and the worker was never found hung."""
        if self._outbox:
            raise WorkerError(f"{self.kind}: a request was sent before the last one was written")
        self._outbox = memoryview(data)
        self._push()

    def _push(self) -> None:
        """Write as much of the queued request as the channel takes without blocking."""
        while self._outbox:
            try:
                n = self._send_some(self._outbox)
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):
                # the runner stopped reading: it retired or died. What it answered before is still
                # to be read (a retire line, then EOF), so this is no error of its own.
                self._outbox, self._send_closed = memoryview(b""), True
                return
            except OSError as e:
                raise WorkerError(f"{self.kind} stdin closed: {e}") from None
            if not n:
                return
            self._outbox = self._outbox[n:]

    def start(self) -> None:
        """Wait for the runner's ready line."""
        line = self.readline(time.monotonic() + self.config.start_timeout_s)
        try:
            info = json.loads(line)
            assert info.get("ready") == 1
        except Exception as e:  # noqa: BLE001
            raise WorkerError(f"{self.kind} runner sent {line[:200]!r} instead of ready "
                              f"({e!r}); stderr: {self.stderr_tail()}") from None
        self.info = info
        self.alive = True
        if not info.get("protected"):
            _warn_unprotected(self.kind)
        if not info.get("seccomp"):
            _warn_no_seccomp(self.kind)

    def _fill(self, deadline: float) -> None:
        """Wait for more bytes from the runner into ``_buf`` (WorkerError on EOF or at
        ``deadline``)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(f"{self.kind} did not answer in time", hung=True)
            writing = [self._send_fileno()] if self._outbox else []
            r, w, _ = select.select([self._fileno()], writing, [], remaining)
            if w:
                self._push()
            if not r:
                if w:
                    continue
                raise WorkerError(f"{self.kind} did not answer in time", hung=True)
            chunk = self._recv()
            if chunk is None:  # data arrived, but none of it for us yet
                continue
            if not chunk:
                raise WorkerError(f"{self.kind} runner exited; stderr: {self.stderr_tail()}")
            self._buf += chunk
            return

    def check_alive(self) -> bool:
        """False when the runner has gone (EOF) or said something unasked, checked without
        blocking: an idle worker found dead is replaced before any job is sent to it."""
        if not self.alive:
            return False
        try:
            while True:
                r, _, _ = select.select([self._fileno()], [], [], 0)
                if not r:
                    break
                chunk = self._recv()
                if chunk == b"" or chunk:  # EOF, or output nobody asked for
                    self.alive = False
                    break
        except (OSError, ValueError):
            self.alive = False
        if self._buf or self._outbox or self._send_closed:  # an answer nobody read, a request not all written
            self.alive = False
        return self.alive

    def send_jobs(self, jobs: list[dict]) -> None:
        """One request: a header with the job count, then each job as a length-prefixed
        frame (`encode_job`; read by the job's own process, never by the runner)."""
        parts = [b"J%010d\n" % len(jobs)]
        magic = self.info.get("magic")
        for job in jobs:
            # marshalled code only for an interpreter with the compiler's bytecode magic
            codes = job.get("codes") if magic and job.get("magic") == magic else None
            frame = encode_job(job["program"], job.get("calls") or [], job.get("limits") or {}, codes)
            parts.append(b"%010d\n" % len(frame))
            parts.append(frame)
        self._send(b"".join(parts))

    def stderr_tail(self) -> str:
        return b"".join(self._log).decode("utf-8", "replace")[-2000:]

    def close(self) -> None:
        self.alive = False
