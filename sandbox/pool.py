"""`Sandbox`: the entry point. A pool of sandbox workers that run programs and calls.

    from arena.sandbox import Sandbox, Limits
    with Sandbox() as sb:                                  # backend="auto"
        r = sb.run("def f(a, b):\\n    return a + b", "f(1, 2)")
        r.status, r.value, r.json                          # 'ok', '3', '3'
        rs = sb.run_many([(prog, ["f(1)", "f(2)"]) for prog in programs])

Each job (a program plus its calls) runs in a fresh process forked by a long-lived runner
inside a worker (container or bubblewrap sandbox). A worker runs one job at a time; the
pool hands jobs to idle workers, several per round trip (``SandboxConfig.batch_size``),
and the runner sends the answers back in groups (each at most 20 ms late), so that the
per-message cost of the channel (Docker's attach stream) is paid per group, not per job.
`run_many` splits ``n`` jobs into batches of ``min(batch_size, ceil(n / (2 * workers)))``
and runs them on ``workers`` threads, one worker each. Before that, the pool's
`HostCompiler` compiles each distinct program and call once (cached) and the jobs carry
marshalled code (`arena.sandbox.compiler`).

Failure handling: when a worker dies or hangs under a job, the jobs after it (never run)
are re-sent to a fresh worker, and the job in flight is retried alone up to
``infra_retries`` times. A job that keeps bringing workers down is reported ``killed``; a
worker that cannot be started, or hangs, gives ``infra``. A runner that finds its worker
tampered with after a job (its own limits, priority or affinity changed, the scratch root
changed, the scratch dir not emptied in time) answers that job and retires; the jobs it
had not run go to a fresh worker. What a program's process wrote is parsed here, with the
host's own limits (`arena.sandbox.result.parse_output`): a program can make its result
``error`` but never ``infra``, and nothing it writes makes `run_many` raise. Containers carry the ``arena.sandbox=1`` label and are removed
on `close`, at interpreter exit, and by themselves when the host process dies (their
stdin closes and the runner exits).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import queue
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Self

from arena.sandbox.compiler import HELPER_RECURSION, HostCompiler
from arena.sandbox.config import Limits, SandboxConfig
from arena.sandbox.docker_worker import DockerWorker, docker_cpus, docker_status
from arena.sandbox.process_worker import ProcessWorker, bwrap_status, system_python
from arena.sandbox.result import ExecResult
from arena.sandbox.workers import Worker, WorkerError

log = logging.getLogger("arena.sandbox")

JobSpec = tuple | dict
"""A job for `Sandbox.run_many`: ``(program, calls)``, ``(program, calls, limits)`` or
``{"program": ..., "calls": ..., "limits": ...}``; calls is a str or a list of str."""


class SandboxUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message names the fix."""


class WeakIsolationWarning(RuntimeWarning):
    """The plain process backend (``allow_unsafe=True``) runs: programs see the host."""


_OPEN: weakref.WeakSet[Sandbox] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for sb in list(_OPEN):
        with contextlib.suppress(Exception):  # best effort at exit
            sb.close()


UNSAFE_HINT = ("allow_unsafe=True (arena sandbox run --allow-unsafe) runs programs as plain "
               "subprocesses without isolation: trusted code only")


def resolve_backend(config: SandboxConfig) -> tuple[str, bool, str]:
    """(backend, use_bwrap, reason) for ``config.backend`` on this machine.

    The plain process backend (no namespace: programs see the host) is chosen only with
    ``config.allow_unsafe``; ``auto`` and ``process`` never fall back to it otherwise.
    Raises `SandboxUnavailable` (one line naming the fixes) when no allowed backend runs."""
    want = config.backend
    if want in ("auto", "docker"):
        ok, why = docker_status(config.image, config.docker_url)
        if ok:
            return "docker", False, why
        if want == "docker":
            raise SandboxUnavailable(f"docker backend unavailable: {why}")
        docker_why = why
    else:
        docker_why = "not requested"
    use = config.use_bwrap
    if use is None or use:
        ok, why = bwrap_status()
        if ok:
            return "process", True, f"bubblewrap ({why}); docker: {docker_why}"
        if use:
            raise SandboxUnavailable(f"use_bwrap=True but {why}")
        if not config.allow_unsafe:
            raise SandboxUnavailable(
                f"no isolating sandbox backend: bubblewrap: {why}; docker: {docker_why}. "
                f"Install bubblewrap, or start Docker and run 'arena sandbox build'; "
                f"{UNSAFE_HINT}")
        return "process", False, f"plain subprocess, UNSAFE ({why}); docker: {docker_why}"
    if not config.allow_unsafe:
        raise SandboxUnavailable(f"use_bwrap=False asks for the plain process backend, which "
                                 f"does not isolate programs; {UNSAFE_HINT}")
    return "process", False, f"plain subprocess, UNSAFE (use_bwrap=False); docker: {docker_why}"


@functools.lru_cache(maxsize=64)
def _wire(limits: Limits) -> dict[str, Any]:
    """``limits.to_wire()``, built once per distinct Limits (dataclasses.asdict is slow);
    the dict is shared and never mutated."""
    return limits.to_wire()


def _normalise_calls(calls: str | Sequence[str] | None) -> list[str]:
    if calls is None:
        return []
    if isinstance(calls, str):
        return [calls]
    out = list(calls)
    for c in out:
        if not isinstance(c, str):
            raise TypeError(f"a call must be a str expression like 'f(1, 2)', got {type(c).__name__}")
    return out


class Sandbox:
    """A pool of sandbox workers (see the module docstring).

    Args:
        backend: ``"auto"``, ``"docker"`` or ``"process"``; overrides ``config.backend``.
        config: the pool's `SandboxConfig` (default: ``SandboxConfig()``).
        **overrides: fields of `SandboxConfig` to replace (e.g. ``workers=4``).
    """

    def __init__(self, backend: str | None = None, config: SandboxConfig | None = None,
                 **overrides: Any) -> None:
        config = config or SandboxConfig()
        if backend is not None:
            overrides["backend"] = backend
        if overrides:
            import dataclasses
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.backend, self._use_bwrap, self.reason = resolve_backend(config)
        if self.backend == "process" and not self._use_bwrap:
            msg = ("arena sandbox: running programs as plain subprocesses (allow_unsafe=True; "
                   "no bubblewrap, no Docker): they can read host files, use the network and "
                   "signal other processes of this user. Trusted code only; install bubblewrap "
                   "or Docker for isolation.")
            warnings.warn(msg, WeakIsolationWarning, stacklevel=2)
            log.warning(msg)
        self.session = uuid.uuid4().hex[:10]
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._workers: set[Worker] = set()
        self._cpus: list[int] | None = None  # cores to pin workers to (config.pin_cpus)
        self._claimed: list[int] = []  # cores of workers being started
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(config.n_workers)
        self._closed = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="arena-sandbox-spawn")
        self.stats = {"jobs": 0, "workers_started": 0, "workers_replaced": 0, "infra": 0}
        self.compiler = HostCompiler(system_python(config)) if config.host_compile else None
        _OPEN.add(self)

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def label(self) -> str:
        return "docker" if self.backend == "docker" else ("bwrap" if self._use_bwrap else "process")

    def _pick_cpu(self) -> int | None:
        """The core for a new worker: the one with the fewest live workers pinned to it."""
        if not self.config.pin_cpus:
            return None
        with self._lock:
            if self._cpus is None:
                self._cpus = (list(range(docker_cpus(self.config.docker_url)))
                              if self.backend == "docker" else sorted(os.sched_getaffinity(0)))
            if not self._cpus:
                return None
            load = {c: 0 for c in self._cpus}
            for w in self._workers:
                if w.cpu in load:
                    load[w.cpu] += 1
            cpu = min(self._cpus, key=lambda c: (load[c] + self._claimed.count(c), c))
            self._claimed.append(cpu)
            return cpu

    def _make_worker(self, cpu: int | None) -> Worker:
        if self.backend == "docker":
            return DockerWorker(self.config, self.session, cpu)
        # bwrap's --die-with-parent follows the *thread* that spawned it: spawn from one
        # thread that lives as long as the pool, never from a short-lived one.
        return self._spawner.submit(ProcessWorker, self.config, self._use_bwrap, cpu).result()

    def _new_worker(self) -> Worker:
        cpu = self._pick_cpu()
        try:
            w = self._make_worker(cpu)
        except Exception as e:
            if cpu is None:
                raise
            # e.g. the engine's cgroup does not offer that core: go on unpinned
            log.warning("pinning a sandbox worker to core %d failed (%s); workers of this "
                        "pool run unpinned", cpu, e)
            self._cpus = []
            w = self._make_worker(None)
        finally:
            if cpu is not None:
                with self._lock:
                    self._claimed.remove(cpu)
        with self._lock:
            self._workers.add(w)
            self.stats["workers_started"] += 1
        try:
            w.start()
        except BaseException:
            self._discard(w)
            raise
        return w

    def _discard(self, w: Worker) -> None:
        with self._lock:
            self._workers.discard(w)
        try:
            w.close()
        except Exception as e:  # noqa: BLE001
            log.warning("closing a sandbox worker failed: %s", e)

    def start(self) -> Sandbox:
        """Start every worker now (in parallel) instead of on first use."""
        missing = self.config.n_workers - len(self._workers)
        if missing <= 0:
            return self
        with concurrent.futures.ThreadPoolExecutor(missing) as ex:
            futs = [ex.submit(self._new_worker) for _ in range(missing)]
            for f in futs:
                try:
                    self._idle.put(f.result())
                except Exception as e:  # noqa: BLE001 - reported again on first use
                    log.warning("sandbox worker failed to start: %s", e)
        return self

    def _acquire(self) -> Worker:
        self._slots.acquire()
        try:
            while True:
                try:
                    w = self._idle.get_nowait()
                except queue.Empty:
                    return self._new_worker()
                if w.check_alive():
                    return w
                self.stats["workers_replaced"] += 1
                self._discard(w)
        except BaseException:
            self._slots.release()
            raise

    def _release(self, w: Worker, healthy: bool) -> None:
        if healthy and not self._closed and w.alive:
            self._idle.put(w)
        else:
            if not self._closed:
                self.stats["workers_replaced"] += 1
            self._discard(w)
        self._slots.release()

    def close(self) -> None:
        """Stop every worker and remove every container of this pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            workers = list(self._workers)
        for w in workers:
            self._discard(w)
        self._spawner.shutdown(wait=False)
        if self.compiler is not None:
            self.compiler.close()
        _OPEN.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def healthy(self) -> bool:
        """True when a trivial program runs and returns the right value."""
        r = self.run("def f(a):\n    return a * 2\n", "f(21)")
        return r.status == "ok" and r.value == "42"

    # -- running -----------------------------------------------------------------------
    def run(self, program: str, calls: str | Sequence[str] | None = None,
            limits: Limits | None = None) -> ExecResult:
        """Run ``program`` in a fresh sandboxed process, then evaluate each call in it.

        Args:
            program: Python source, executed as ``__main__`` in fresh globals.
            calls: expressions evaluated after the program, in order, in its globals
                (``"f(1, 2)"``); a str for one call, a list for several, None for none.
            limits: per-job limits (default ``config.limits``).
        """
        return self.run_many([(program, calls, limits)])[0]

    def run_many(self, jobs: Iterable[JobSpec], limits: Limits | None = None, *,
                 together: bool = False) -> list[ExecResult]:
        """Run many jobs over the pool; results come back in the order of ``jobs``.

        ``together``: every job in one request to one worker, in order (AZR's determinism
        check puts a spacer job before the job it checks, on the same runner), unless that
        worker fails and the rest go to a fresh one."""
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        items = []
        for i, spec in enumerate(jobs):
            if isinstance(spec, dict):
                program, calls, lim = spec.get("program"), spec.get("calls"), spec.get("limits")
            else:
                program, calls, lim = (tuple(spec) + (None, None))[:3]
            if not isinstance(program, str):
                raise TypeError(f"job {i}: program must be a str, got {type(program).__name__}")
            call_list = _normalise_calls(calls)
            lim = lim or limits or self.config.limits
            if isinstance(lim, dict):
                lim = Limits(**lim)
            items.append((i, {"program": program, "calls": call_list, "limits": _wire(lim)},
                          call_list, lim.timeout, lim))
        if not items:
            return []
        if self.compiler is not None:
            self._compile(items)
        n = self.config.n_workers
        size = max(1, min(self.config.batch_size, -(-len(items) // (2 * n))))
        batches = [items] if together else [items[k:k + size] for k in range(0, len(items), size)]
        results: dict[int, ExecResult] = {}
        if len(batches) == 1:
            results.update(self._execute(batches[0]))
        else:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        n, thread_name_prefix="arena-sandbox")
            for part in self._executor.map(self._execute, batches):
                results.update(part)
        self.stats["jobs"] += len(items)
        return [results[i] for i in range(len(items))]

    def _compile(self, items: list[tuple]) -> None:
        """Attach the host's marshalled code to each job (`arena.sandbox.compiler`); a
        worker sends it only when its interpreter has the same bytecode magic."""
        # a job with a lower recursion limit than the helper's compiles its own source
        items = [it for it in items if it[4].recursion_limit >= HELPER_RECURSION]
        keys: list[tuple[str, str]] = []
        for _, job, calls, _, _ in items:
            keys.append(("exec", job["program"]))
            keys += [("eval", c) for c in calls]
        codes = self.compiler.codes(keys)
        magic, pos = self.compiler.magic, 0
        for _, job, calls, _, _ in items:
            mine = codes[pos:pos + 1 + len(calls)]
            pos += 1 + len(calls)
            if any(c is not None for c in mine):
                job["codes"], job["magic"] = mine, magic

    @staticmethod
    def _meta(line: bytes) -> dict[str, Any]:
        """A line the runner itself wrote (meta, infra or retire); programs cannot write
        on this channel, so anything else means the runner is broken."""
        try:
            d = json.loads(line)
            assert isinstance(d, dict) and ("n" in d or "infra" in d or "retire" in d)
            return d
        except (ValueError, AssertionError, RecursionError):
            raise WorkerError(f"runner protocol violation: {line[:200]!r}") from None

    def _execute(self, batch: list[tuple]) -> dict[int, ExecResult]:
        """Run a batch on one worker, re-sending what a failing worker left undone."""
        results: dict[int, ExecResult] = {}
        failures: dict[int, int] = {}
        unacked = 0
        solo = False  # after a worker died under several unanswered jobs: one job at a time
        pending = list(batch)
        while pending:
            t0 = time.monotonic()
            try:
                w = self._acquire()
            except Exception as e:  # noqa: BLE001 - engine gone, image missing...
                msg = f"could not start a sandbox worker: {e}"
                log.error(msg)
                for idx, _, calls, _, _ in pending:
                    results[idx] = ExecResult.infrastructure(msg, calls, self.label,
                                                             time.monotonic() - t0)
                self.stats["infra"] += len(pending)
                return results
            send = pending[:1] if solo else pending
            healthy, done, acked, retired = True, 0, False, None
            try:
                w.send_jobs([job for _, job, _, _, _ in send])
                line = w.readline(time.monotonic() + self.config.grace_s)
                if not line.startswith(b'{"ack"'):
                    raise WorkerError(f"runner protocol violation: {line[:200]!r}")
                acked = True
                for idx, _, calls, timeout, lim in send:
                    # the runner holds a finished answer at most FLUSH_S: timeout + grace covers it
                    deadline = time.monotonic() + timeout + self.config.grace_s
                    d = self._meta(w.readline(deadline))
                    if "retire" in d:
                        retired = str(d["retire"])
                        break
                    if "n" in d:
                        raw = w.read_exact(int(d["n"]), deadline)
                        results[idx] = ExecResult.from_output(d, raw, calls, self.label,
                                                              lim.max_output, lim.max_value)
                    else:  # {"infra": ...}: the runner failed, not the program
                        self.stats["infra"] += 1
                        results[idx] = ExecResult.infrastructure(str(d.get("infra")), calls, self.label)
                    w.jobs_done += 1
                    done += 1
                pending = pending[done:]
                if retired is None:
                    healthy = w.check_alive()  # a retire line right after the last answer
                else:
                    healthy = False
                    log.info("sandbox worker retired (%s); %d job(s) go to a fresh one",
                             retired, len(pending))
            except WorkerError as e:
                healthy = False
                if not acked:  # the worker died before it saw the jobs: not their fault
                    unacked += 1
                    log.warning("sandbox worker failed before starting a batch (%s)", e)
                    if unacked > 2:
                        msg = f"sandbox workers keep failing: {e}"
                        for idx, _, calls, _, _ in pending:
                            results[idx] = ExecResult.infrastructure(msg, calls, self.label,
                                                                     time.monotonic() - t0)
                        self.stats["infra"] += len(pending)
                        pending = []
                    continue
                unanswered = len(send) - done
                pending = pending[done:]
                log.warning("sandbox worker failed with %d job(s) unanswered (%s); replacing it",
                            unanswered, e)
                if unanswered > 1:  # answers are sent in groups: the culprit is unknown
                    solo = True
                    continue
                idx, _, calls, _, _ = pending[0]
                failures[idx] = failures.get(idx, 0) + 1
                if failures[idx] > self.config.infra_retries:
                    if e.hung:
                        results[idx] = ExecResult.infrastructure(
                            f"sandbox worker hung: {e}", calls, self.label, time.monotonic() - t0)
                        self.stats["infra"] += 1
                    else:
                        results[idx] = ExecResult.infrastructure(
                            f"the program brought its sandbox worker down "
                            f"{failures[idx]} times: {e}", calls, self.label,
                            time.monotonic() - t0, status="killed", error_type="WorkerKilled")
                    pending = pending[1:]
            finally:
                self._release(w, healthy)
        return results


__all__ = ["Sandbox", "SandboxUnavailable", "WeakIsolationWarning", "resolve_backend"]
