"""The arena sandbox runner: the small program that runs *inside* the sandbox.

It is standard-library only and runs under a bare ``python3`` (the sandbox image, or the
host's system interpreter under bubblewrap). One runner serves one sandbox worker for its
whole life; it never executes untrusted code itself.

Protocol (JSON lines):

- on start the runner writes ``{"ready": 1, "python": "3.11.2", "init": true}``;
- the host writes one request per line: ``{"jobs": [JOB, ...]}`` with
  ``JOB = {"program": str, "calls": [str, ...], "limits": {...}}``;
- the runner acknowledges a request with ``{"ack": N}`` (N jobs) before running any, then
  answers each job with one line, in order, as soon as the job ends: either
  ``{"d": duration, "r": RESULT}`` where RESULT is the line the child itself built (the
  fast path: the child finished and reported), or RESULT assembled by the runner with a
  ``"duration"`` key (timeouts, signals, partial reports), where
  ``RESULT = {"status": ..., "calls": [...], "stdout": ..., "stderr": ..., ...}``;
  ``{"infra": message}`` reports a runner failure. The host never trusts a RESULT to say
  ``infra``: only the runner's own top-level key does. Answers are written in groups, none
  held more than ``FLUSH_S``; after a worker dies under several unanswered jobs the host
  re-sends them one at a time, so the job that kills a worker is always identified.

At start the runner makes itself non-dumpable (no ptrace, no /proc/1/mem for the programs,
which run under its uid), moves its protocol off fds 0-2 (which become /dev/null), enters
the work dir and sets RLIMIT_CORE to 0. It compiles the programs and calls of a whole
request before forking for any of them (see `Runner.compile`). Per job it forks a fresh
child, which moves the result pipe to fd 3, closes every other fd above 2 (the protocol is
never visible to the program), starts a new session (unless the runner is PID 1 of its own
PID namespace), drops its references to the other jobs of the request (`Runner.forget`),
applies rlimits
(RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC; soft = hard so the
program cannot raise them), then ``exec``s the program in fresh globals as ``__main__`` and
``eval``s each call. The child builds its complete result itself and writes it in one go
(streaming per-call results first when there are several calls, or once it has run 50 ms).
The parent waits on the pipe (and a pidfd when forking is allowed) until the wall-clock
deadline ``limits.timeout``; afterwards it kills every process the job may have left
(``kill(-1, SIGKILL)`` when the runner is PID 1 of its own PID namespace, as in the Docker
and bubblewrap backends, where the programs cannot signal it; the child's process group
otherwise), reaps them, and wipes the scratch dir when its inode count changed, so no state
survives from one job to the next.

Status of a call: ``ok``; ``error`` (an exception, with its type name); ``timeout``
(the wall-clock deadline or RLIMIT_CPU); ``memory`` (MemoryError under RLIMIT_AS);
``output_limit`` (stdout/stderr, the value's repr, or a file beyond its limit); ``killed``
(the process died by a signal it was not sent for a limit, or vanished without reporting).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

try:  # absent only on exotic platforms; the runner still works without rlimits
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

# Modules worth pre-importing (``--preload``) when programs use them a lot. Off by default:
# every pre-imported module makes each fork slower (a bigger address space to copy).
PRELOAD_SUGGESTED = (
    "abc", "array", "bisect", "cmath", "collections", "copy", "dataclasses", "decimal",
    "enum", "fractions", "functools", "heapq", "itertools", "math", "numbers", "operator",
    "re", "statistics", "string", "textwrap", "typing", "unicodedata",
)

DEFAULT_LIMITS = {
    "timeout": 2.0,            # wall-clock seconds for the whole job
    "memory_mb": 256,          # RLIMIT_AS of the program's process
    "max_output": 65536,       # characters of stdout and of stderr kept
    "max_value": 1 << 20,      # characters of one call's repr / JSON
    "max_file_bytes": 1 << 20, # RLIMIT_FSIZE
    "max_open_files": 64,      # RLIMIT_NOFILE
    "max_processes": 0,        # RLIMIT_NPROC (0: no fork, no threads)
    "recursion_limit": 1000,   # sys.setrecursionlimit in the program's process
}

_RESULT_FD = 3
COMPILE_HERE_MAX = 1 << 16  # characters: larger sources compile in the child, under its limits
FLUSH_S = 0.02  # longest time a finished job's answer waits to be sent with others
STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed")


class OutputLimitExceeded(BaseException):
    """Raised inside the program when it writes more than ``max_output`` characters.

    A BaseException, so a bare ``except Exception`` in the program does not swallow it;
    the runner records the overflow even when the program catches it anyway."""


class _Capture:
    """A bounded text stream standing in for sys.stdout / sys.stderr in the program."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.exceeded = False

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if self.exceeded:
            raise OutputLimitExceeded("output limit exceeded")
        room = self.limit - self.size
        if len(s) > room:
            self.parts.append(s[:room])
            self.size = self.limit
            self.exceeded = True
            raise OutputLimitExceeded("output limit exceeded")
        self.parts.append(s)
        self.size += len(s)
        return len(s)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("sandbox output has no file descriptor")

    def getvalue(self) -> str:
        return "".join(self.parts)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _hard_limits() -> dict:
    """The runner's hard rlimits (read once; a child may only lower them)."""
    if resource is None:
        return {}
    return {w: resource.getrlimit(w)[1] for w in (
        resource.RLIMIT_CORE, resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_FSIZE,
        resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC)}


def _set_rlimits(lim: dict, hard: dict) -> None:
    if resource is None:
        return
    inf = resource.RLIM_INFINITY
    for which, value in (
        (resource.RLIMIT_CPU, int(float(lim["timeout"])) + 1),
        (resource.RLIMIT_AS, int(lim["memory_mb"]) << 20),
        (resource.RLIMIT_FSIZE, int(lim["max_file_bytes"])),
        (resource.RLIMIT_NOFILE, max(int(lim["max_open_files"]), 8)),
        (resource.RLIMIT_NPROC, int(lim["max_processes"])),
    ):
        h = hard.get(which, inf)
        v = value if h == inf else min(value, h)
        try:
            resource.setrlimit(which, (v, v))
        except (ValueError, OSError):
            pass


def _not_json(o: object) -> None:
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


try:  # one C encoder built once: a json.dumps per value would build one per call
    from _json import encode_basestring as _encode_str
    from _json import make_encoder as _make_encoder

    _C_ENCODER = _make_encoder(None, _not_json, _encode_str, None, ": ", ", ", False, False, False)

    def _to_json(o: object, _enc=_C_ENCODER, _join="".join) -> str:
        """json.dumps(o, ensure_ascii=False, allow_nan=False); circular: RecursionError."""
        return _join(_enc(o, 0))
except ImportError:  # pragma: no cover - pure-Python json only
    _to_json = json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode
_VALUE_ENCODER = _LINE_ENCODER = _to_json
_PENDING: list[str] = []  # the child's unsent result lines


def _flush(_write=os.write, _join="".join) -> None:
    data = _join(_PENDING).encode("utf-8", "surrogatepass")
    _PENDING.clear()
    while data:
        n = _write(_RESULT_FD, data)
        data = data[n:]


def _report(obj: dict) -> None:
    """A partial result, written at once."""
    _PENDING.append(_LINE_ENCODER(obj) + "\n")
    _flush()


def _failure(e: BaseException, _isinstance=isinstance, _str=str, _type=type,
             _MemoryError=MemoryError) -> dict:
    if _isinstance(e, _MemoryError):
        status = "memory"
    elif _isinstance(e, OutputLimitExceeded):
        status = "output_limit"
    else:
        status = "error"
    try:
        msg = _str(e)[:2000]
    except BaseException:  # noqa: BLE001
        msg = "<unprintable exception>"
    return {"status": status, "error_type": _type(e).__name__, "error": msg}
_STREAM_AFTER_S = 0.05  # a job running longer than this streams each call's result at once


def _child(job: dict, lim: dict, t0: float, codes: list) -> None:
    """Body of the forked process; never returns.

    ``codes`` holds the code objects the runner compiled before the fork (the program's,
    then each call's); None where the child must compile the source itself.

    A single-call job writes its result in one go at the end. With several calls, or once
    the job has run ``_STREAM_AFTER_S``, each call's result is written as soon as it is
    known, so a later timeout or crash keeps the results already obtained."""
    # Bind what reporting needs before the program can monkeypatch modules or builtins.
    _repr, _str, _len, _isinstance = repr, str, len, isinstance
    _encode, _line = _VALUE_ENCODER, _LINE_ENCODER
    _exit, _now = os._exit, time.monotonic
    _BaseException = BaseException

    max_value = int(lim["max_value"])
    out = _Capture(int(lim["max_output"]))
    err = _Capture(int(lim["max_output"]))
    results: list[dict] = []
    report, failure, flush, pending = _report, _failure, _flush, _PENDING

    try:
        sys.stdout, sys.stderr = out, err
        sys.setrecursionlimit(max(int(lim["recursion_limit"]), 50))
        try:
            sys.set_int_max_str_digits(0)  # big ints print; the time limit bounds the cost
        except AttributeError:
            pass
        globs = {"__name__": "__main__", "__builtins__": __builtins__}
        calls = job.get("calls") or []
        stream = _len(calls) > 1  # a later call may hang: keep the earlier results safe
        try:
            code = codes[0]
            if code is None:
                code = compile(job["program"], "<program>", "exec", dont_inherit=True)
            exec(code, globs)  # noqa: S102 - running the program is the point
            ran = True
        except _BaseException as e:
            fail = failure(e)
            report({"program": fail})
            results = [fail] * len(calls)
            ran = False
        if ran:
            for k, call in enumerate(calls, 1):
                try:
                    code = codes[k]
                    if code is None:
                        code = compile(call, "<call>", "eval", dont_inherit=True)
                    value = eval(code, globs)
                    text = _repr(value)
                    if not _isinstance(text, _str):
                        raise TypeError("__repr__ returned non-string")
                    if _len(text) > max_value:
                        res = {"status": "output_limit", "error_type": "ValueTooLarge",
                               "error": f"repr of the value has {_len(text)} characters "
                                        f"(limit {max_value})"}
                    else:
                        res = {"status": "ok", "value": text}
                        try:
                            js = _encode(value)
                            if _len(js) <= max_value:
                                res["json"] = js
                        except _BaseException:
                            pass
                except _BaseException as e:
                    res = failure(e)
                results.append(res)
                if stream or _now() - t0 > _STREAM_AFTER_S:
                    report(res)
        # The complete result, built here rather than in the runner: the runner then only
        # frames these bytes (fewer pages touched in the runner after each fork).
        final = {"status": "ok", "calls": results, "stdout": out.getvalue(),
                 "stderr": err.getvalue()}
        bad = next((c for c in results if c["status"] != "ok"), None) if ran else results[0] if results else fail
        if bad is not None:
            final["status"], final["error_type"], final["error"] = bad["status"], bad["error_type"], bad["error"]
        elif out.exceeded or err.exceeded:
            final.update(status="output_limit", error_type="OutputLimit",
                         error="stdout/stderr beyond the limit")
        pending.append("F" + _line(final) + "\n")
        flush()
    except _BaseException:
        _exit(71)
    _exit(0)


_READ_EOF, _READ_MORE, _READ_OVER = 0, 1, 2


def _read_chunk(fd: int, buf: bytearray, cap: int) -> int:
    """Append one read of ``fd`` to ``buf``: _READ_EOF at end of file, _READ_OVER once
    ``buf`` holds more than ``cap`` bytes, else _READ_MORE."""
    chunk = os.read(fd, 1 << 16)
    if not chunk:
        return _READ_EOF
    buf += chunk
    return _READ_OVER if len(buf) > cap else _READ_MORE


def _wait_exit(pid: int, deadline: float) -> int | None:
    """Wait status of ``pid`` if it exits before ``deadline``, else None (still running)."""
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        return st
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if pidfd >= 0:
                if not select.select([pidfd], [], [], remaining)[0]:
                    return None
            else:
                time.sleep(min(0.001, remaining))
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                return st
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


class Runner:
    """Serves jobs read from fd 0, answering on fd 1 (see the module docstring)."""

    def __init__(self, workdir: str, scratch: list[str], protected: bool = False) -> None:
        self.workdir = workdir
        self.protected = protected
        self.scratch = scratch
        self.is_init = os.getpid() == 1  # PID 1 of our own PID namespace
        self.root = os.geteuid() == 0  # RLIMIT_NPROC is not enforced for root
        # The protocol moves off fds 0-2, which become /dev/null: a forked child then
        # needs no dup2 for them, and only closes the protocol fds (closerange).
        self.proto_in = os.dup(0)
        self.proto_out = os.dup(1)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir(workdir)
        if resource is not None:  # never a core file, in the runner or any child
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ValueError, OSError):
                pass
        self.hard = _hard_limits()
        self.recursion_limit = sys.getrecursionlimit()
        self.batch: list = []  # the request being served: prepared jobs, None once started
        self.pending: list[bytes] = []  # answers not yet sent
        self.wipe_scratch()
        self.clean_inodes = self._inodes()

    def _inodes(self) -> tuple | None:
        """Inodes in use on each scratch filesystem: unchanged means nothing was left
        behind (one statvfs instead of listing the directory after every job)."""
        try:
            return tuple((v.f_files - v.f_ffree) for v in map(os.statvfs, self.scratch))
        except OSError:
            return None

    # -- one job -----------------------------------------------------------------------
    def prepare(self, job: dict, cache: dict) -> tuple:
        """Everything a job needs before its fork: limits, code objects, output cap.

        `serve` prepares a whole request before running any of it: after each fork every
        page the runner writes traps once (copy-on-write), so compiling 32 programs in one
        go, between two forks, faults on the compiler's memory once instead of 32 times."""
        lim = DEFAULT_LIMITS
        if job.get("limits"):
            lim = dict(DEFAULT_LIMITS)
            lim.update(job["limits"])
        calls = job.get("calls") or []
        ncalls = len(calls)
        rlimit = max(int(lim["recursion_limit"]), 50)
        codes = [self.compile(job["program"], "exec", rlimit, cache)]
        codes += [self.compile(c, "eval", rlimit, cache) for c in calls]
        # bound on what an honest child can write to the result pipe
        cap = 2 * int(lim["max_output"]) * 6 + (ncalls + 1) * (int(lim["max_value"]) * 12 + 4096)
        return job, lim, codes, ncalls, float(lim["timeout"]), cap

    def run_job(self, job: dict, lim: dict, codes: list, ncalls: int, timeout: float,
                cap: int) -> bytes | dict:
        r, w = os.pipe()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            try:  # fds 0-2 are /dev/null already, cwd is the work dir
                if w != _RESULT_FD:
                    os.dup2(w, _RESULT_FD)
                os.closerange(_RESULT_FD + 1, 1 << 16)
                if not self.is_init:  # its own process group, for killpg
                    os.setsid()
                self.forget()
                _set_rlimits(lim, self.hard)
                _child(job, lim, t0, codes)
            finally:
                os._exit(70)
        os.close(w)
        # With descendants allowed, one may hold the pipe open after the child exits:
        # watch the child itself too (pidfd). Without, EOF on the pipe means it is exiting.
        pidfd = -1
        if int(lim["max_processes"]) > 0:
            try:
                pidfd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                pidfd = -1
        watch = [r] if pidfd < 0 else [r, pidfd]
        deadline = t0 + timeout
        buf = bytearray()
        timed_out = overflow = False
        wstatus = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready = select.select(watch, [], [], remaining)[0]
            if not ready:
                timed_out = True
                break
            if r in ready:
                got = _read_chunk(r, buf, cap)
                if got != _READ_MORE:
                    overflow = got == _READ_OVER
                    break
            elif pidfd in ready:  # the child exited; take what it wrote, not what strays may
                wstatus = os.waitpid(pid, 0)[1]
                while select.select([r], [], [], 0)[0]:
                    got = _read_chunk(r, buf, cap)
                    if got != _READ_MORE:
                        overflow = got == _READ_OVER
                        break
                break
        os.close(r)
        if pidfd >= 0:
            os.close(pidfd)
        if wstatus is None and not (timed_out or overflow):
            wstatus = _wait_exit(pid, deadline)  # normally immediate: it closed the pipe by exiting
            timed_out = wstatus is None
        # Kill whatever the job left. Nothing can be left when the child exited by itself
        # and could not create processes (RLIMIT_NPROC 0, enforced for a non-root user).
        if wstatus is None or pidfd >= 0 or self.root or int(lim["max_processes"]) > 0:
            self.kill_job(pid)
            if wstatus is None:
                try:
                    wstatus = os.waitpid(pid, 0)[1]
                except ChildProcessError:
                    wstatus = None
            if self.is_init:
                _reap_all()
        duration = time.monotonic() - t0
        if not (timed_out or overflow) and buf.endswith(b"\n"):
            start = buf.rfind(b"\n", 0, len(buf) - 1) + 1
            if buf.startswith(b"F{", start):  # fast path: the child's complete result
                return b'{"d": %.6f, "r": %s}\n' % (duration, bytes(buf[start + 1:-1]))
        return self.assemble(buf, ncalls, timed_out, overflow, wstatus, duration)

    def compile(self, source: object, mode: str, recursion_limit: int, cache: dict):
        """The code object of ``source``, compiled here in the runner, or None: the child
        then compiles it itself (and meets the same error, under the job's limits).

        Compiling before the fork is the single biggest saving per job: ``compile()`` in
        a freshly forked child touches (copy-on-write faults in) a hundred pages of the
        parser's memory, which in a VM costs more than the compile itself. ``cache`` holds
        the code objects of one request, so a program sent with many inputs compiles once;
        it goes with the request (kept across requests it would let a program find the
        code of earlier jobs, and scrubbing it in every child costs more). Only small
        sources are compiled here (``COMPILE_HERE_MAX``, so a hostile one cannot hold the
        runner long; CPython 3.11 reports nesting beyond its limits as RecursionError or
        MemoryError, it does not crash). A source that fails to compile, or warns
        (``SyntaxWarning``, which belongs on the program's stderr), is left to the child."""
        if type(source) is not str or len(source) > COMPILE_HERE_MAX:
            return None
        key = (mode, recursion_limit, source)
        try:
            return cache[key]
        except KeyError:
            pass
        code = None
        stderr, sys.stderr = sys.stderr, _Capture(1 << 12)
        try:
            sys.setrecursionlimit(recursion_limit)  # the depth compile() allows follows it
            code = compile(source, "<call>" if mode == "eval" else "<program>", mode,
                           dont_inherit=True)
        except BaseException:  # noqa: BLE001 - the child will raise it and report it
            code = None
        finally:
            warned = sys.stderr.size > 0
            sys.stderr = stderr
            sys.setrecursionlimit(self.recursion_limit)
        if warned:
            code = None
        cache[key] = code
        return code

    def forget(self) -> None:
        """In a forked child, before the program runs: drop every reference to other jobs
        (the rest of the request and the answers not yet sent), so that no
        program finds another's source, inputs or results through ``gc`` or frames (in
        a batch, a solver's program could otherwise run the reference solution it is
        graded against, or read its outputs)."""
        self.batch.clear()
        self.pending.clear()

    def kill_job(self, pid: int) -> None:
        if self.is_init:
            try:
                os.kill(-1, signal.SIGKILL)  # every process of this namespace but us
            except ProcessLookupError:
                pass
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @staticmethod
    def assemble(buf: bytes, ncalls: int, timed_out: bool, overflow: bool,
                 wstatus: int | None, duration: float) -> dict:
        calls: list[dict] = []
        program_failure = None
        tail = None
        for line in bytes(buf).split(b"\n"):
            if not line or line.startswith(b"F{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                break  # the program wrote garbage into the pipe: stop trusting it
            if not isinstance(obj, dict):
                break
            if "program" in obj and isinstance(obj["program"], dict):
                program_failure = obj["program"]
            elif "stdout" in obj:
                tail = obj
            elif obj.get("status") in STATUSES and len(calls) < ncalls:
                calls.append(obj)
        # what ended the process, when it did not finish reporting
        sig = None
        code = None
        if wstatus is not None:
            if os.WIFSIGNALED(wstatus):
                sig = os.WTERMSIG(wstatus)
            elif os.WIFEXITED(wstatus):
                code = os.WEXITSTATUS(wstatus)
        complete = tail is not None and (program_failure is not None or len(calls) == ncalls)
        if timed_out:
            cut = {"status": "timeout", "error_type": "Timeout", "error": "wall-clock limit"}
        elif overflow:
            cut = {"status": "output_limit", "error_type": "OutputLimit",
                   "error": "result larger than the limits allow"}
        elif sig == signal.SIGXCPU:
            cut = {"status": "timeout", "error_type": "Timeout", "error": "CPU time limit"}
        elif sig == signal.SIGXFSZ:
            cut = {"status": "output_limit", "error_type": "FileSizeLimit",
                   "error": "file size limit"}
        elif sig is not None:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            cut = {"status": "killed", "error_type": name, "error": f"killed by {name}"}
        elif not complete:
            cut = {"status": "error", "error_type": "Exit",
                   "error": f"the process exited with status {code} before reporting"}
        else:
            cut = None
        if program_failure is not None:
            status_src = program_failure
            calls = [dict(program_failure) for _ in range(ncalls)]
        else:
            if cut is not None:
                calls = calls + [dict(cut) for _ in range(ncalls - len(calls))]
            status_src = next((c for c in calls if c["status"] != "ok"), cut)
        res = {
            "status": "ok", "calls": calls,
            "stdout": tail.get("stdout", "") if tail else "",
            "stderr": tail.get("stderr", "") if tail else "",
            "duration": duration,
        }
        if status_src is not None:
            res["status"] = status_src["status"]
            res["error_type"] = status_src.get("error_type")
            res["error"] = status_src.get("error")
        elif cut is not None:
            res.update(status=cut["status"], error_type=cut["error_type"], error=cut["error"])
        if tail and tail.get("overflow") and res["status"] == "ok":
            res.update(status="output_limit", error_type="OutputLimit",
                       error="stdout/stderr beyond the limit")
        return res

    # -- housekeeping ------------------------------------------------------------------
    def wipe_scratch(self) -> bool:
        """Empty the scratch dirs; False when something could not be removed."""
        if getattr(self, "clean_inodes", None) is not None and self._inodes() == self.clean_inodes:
            return True
        clean = True
        for d in self.scratch:
            try:
                entries = os.listdir(d)
            except OSError:
                continue
            for name in entries:
                clean &= _remove(os.path.join(d, name))
        return clean

    def serve(self) -> int:
        inp = os.fdopen(self.proto_in, "rb", buffering=1 << 16)
        out = self.proto_out
        _write_all(out, (json.dumps({"ready": 1, "python": sys.version.split()[0],
                                     "init": self.is_init, "pid": os.getpid(),
                                     "protected": self.protected}) + "\n").encode())
        while True:
            line = inp.readline()
            if not line:
                return 0
            if not line.strip():
                continue
            try:
                jobs = json.loads(line)["jobs"]
                assert isinstance(jobs, list)
            except Exception as e:  # noqa: BLE001
                _write_all(out, (json.dumps({"fatal": f"bad request: {e!r}"}) + "\n").encode())
                continue
            line = None  # the raw request: no forked program may find it (see `forget`)
            _write_all(out, b'{"ack": %d}\n' % len(jobs))  # received: the host can tell
            batch, pending = self.batch, self.pending          # "never started" from "died in a job"
            cache: dict | None = {}
            for job in jobs:
                try:
                    batch.append(self.prepare(job, cache))
                except Exception as e:  # noqa: BLE001 - a malformed job: tell the host
                    batch.append(e)
            jobs = job = cache = None
            last_flush = time.monotonic()
            for i in range(len(batch)):
                p, batch[i] = batch[i], None  # from here on, only this job knows its data
                res = None
                try:
                    if isinstance(p, Exception):
                        raise p
                    res = self.run_job(*p)
                except Exception as e:  # noqa: BLE001 - runner bug: tell the host
                    res = {"infra": f"runner error: {e!r}"}
                p = None
                dirty = not self.wipe_scratch()
                if not isinstance(res, bytes):
                    if dirty:
                        res = dict(res, dirty=True)
                    res = (json.dumps(res, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
                elif dirty:
                    res = res[:-2] + b', "dirty": true}\n'
                pending.append(res)
                res = None
                # Answers are sent together (each message through Docker's attach stream
                # costs CPU in dockerd and the shim) but never held more than FLUSH_S.
                now = time.monotonic()
                if now - last_flush >= FLUSH_S:
                    _write_all(out, b"".join(pending))
                    pending.clear()
                    last_flush = now
            batch.clear()
            if pending:
                _write_all(out, b"".join(pending))
                pending.clear()


def _remove(path: str) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
            for name in os.listdir(path):
                _remove(os.path.join(path, name))
            os.rmdir(path)
        else:
            os.unlink(path)
        return True
    except OSError:
        return False


def _warm_up() -> None:
    """Initialise, once in the runner, what every child would otherwise build after fork.

    The first ``compile()`` of a process builds the AST type objects (~7 ms here); done in
    the parent, the children inherit them for free."""
    g: dict = {}
    warm = "def f(a):\n    return [a, {'k': (1, 2.5)}]\n"
    exec(compile(warm, "<warm-up>", "exec", dont_inherit=True), g)  # noqa: S102
    v = eval(compile("f('x')", "<warm-up>", "eval", dont_inherit=True), g)
    json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode(v)
    json.loads(json.dumps({"v": repr(v)}, ensure_ascii=False))
    _Capture(10).write("x")


def _protect() -> bool:
    """Make the runner non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``); True when it is.

    The programs run as the runner's own uid, and a dumpable process may be ptraced, or
    have its ``/proc/PID/mem`` and ``/proc/PID/fd`` opened, by any process of the same uid:
    a program could rewrite the runner's memory or write forged results into its
    protocol pipe (a reward hack). A non-dumpable process needs CAP_SYS_PTRACE for all of
    these, which no sandbox process has. Forked children inherit the flag. Done first,
    through ctypes (then dropped, so its modules are not part of every fork)."""
    before = set(sys.modules)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
        return libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
    except Exception:  # noqa: BLE001 - no ctypes here: the host is told (ready line)
        return False
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]


def main(argv: list[str]) -> int:
    protected = _protect()
    workdir = "/tmp"
    scratch: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--workdir":
            workdir = next(it)
        elif a == "--scratch":
            scratch.append(next(it))
        elif a == "--cpu":  # pin to one core; the forked programs inherit it
            try:
                os.sched_setaffinity(0, {int(next(it))})
            except (AttributeError, OSError, ValueError):
                pass
        elif a == "--preload":
            for name in next(it).split(","):
                try:
                    __import__(name)
                except ImportError:
                    pass
    _warm_up()
    try:
        import gc
        gc.freeze()  # fewer copy-on-write faults in forked children
    except (ImportError, AttributeError):
        pass
    return Runner(workdir, scratch or [workdir], protected).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
