"""The arena sandbox runner: the small program that runs *inside* the sandbox.

It is standard-library only and runs under a bare ``python3`` (the sandbox image, or the
host's system interpreter under bubblewrap). It is one file past the usual ~500 lines on
purpose: a worker starts it from its source (`workers.runner_source`), with nothing of
arena importable inside the sandbox. One runner serves one sandbox worker for its
whole life. It never executes untrusted code, and it never reads a job: the design is
that a program shares no address space, no writable path and no reachable process with
another job's data or with the runner's control (issue 8).

Protocol (bytes on the runner's stdin and stdout):

- on start the runner writes ``{"ready": 1, "python": "3.11.2", "magic": "a70d0d0a", ...}``;
- the host writes a request: the header ``J`` + 10-digit job count + ``\\n``, then each job
  as a 10-digit byte length + ``\\n`` + the job's frame (`encode_job`: its limits, then the
  program and each call, as source or as code the host compiled, `arena.sandbox.compiler`);
- the runner answers ``{"ack": N}`` after reading the header, then per job, in order, a
  meta line it writes itself, ``{"d": seconds, "n": bytes, "t": timed_out, "o": overflow,
  "w": wait status}``, followed by exactly ``n`` raw bytes: whatever the job's process wrote
  to its result pipe (fd 3). The host parses those bytes (`arena.sandbox.result`): they are
  the program's word about itself, never trusted to be well-formed, never able to say
  ``infra``. ``{"infra": message}`` (no bytes follow) is a runner failure for one job;
  ``{"retire": reason}`` after an answer means the runner found its worker tampered with
  and exits: the host re-sends the jobs not yet answered to a fresh worker.

Why a job cannot see another job. The runner forks the job's process *before* anything of
that job has been read; the child then reads its own job frame, and only that frame,
straight from the protocol pipe (a kernel buffer, not the runner's memory), closes the
protocol, and only then runs the program. The runner reads the child's result bytes into a
buffer mapped ``MADV_DONTFORK`` (absent from every later child) and writes them out from
there, so no job's source, inputs or results ever sit in the runner's heap for a later
fork to inherit. What a child inherits from the runner is the runner's code, its warm-up
and the limits of earlier jobs (numbers); the meta lines of earlier jobs' answers not yet
sent are dropped from its copy (freed copies may linger in its heap: sizes and durations,
no data). Its fds 0-2 are a /dev/null of its own, not the runner's (whose open file's
flags a job could set for the next to read).

Why a job cannot touch the runner. The runner is PID 1 of its own PID namespace (docker
and bubblewrap), non-dumpable (no ptrace, no /proc/1/mem or /proc/1/fd for its own uid),
and it installs on itself, at start, a seccomp filter (`job_filter`) that every job's
process inherits and that refuses, with EPERM: prlimit64 and sched_set* on any other
process; setpriority and ioprio_set beyond itself; kill/tkill/tgkill/rt_sig*queueinfo
aimed at the runner, at its process group, or at -1 outside a PID namespace;
pidfd_send_signal. Programs run under the runner's uid, so these calls would otherwise
succeed. After each job the runner checks its own rlimits,
priority, CPU affinity and scheduling policy, and the scratch root's mode, owner and
xattrs (restoring its mode and mtime where it owns it); anything changed, or a scratch dir
that cannot be emptied within ``WIPE_S``, retires the worker before it serves another job.

Per job the child also moves the result pipe to fd 3, closes every other fd above 2 (fds
0-2 are /dev/null), starts its own process group, applies rlimits (RLIMIT_CPU, RLIMIT_AS,
RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC; soft = hard), then ``exec``s the program in
fresh globals as ``__main__`` and ``eval``s each call. The program and calls arrive as code
the host compiled once (``marshal.loads``: a few microseconds, where a ``compile()`` in this
freshly forked process costs ~0.3 ms of copy-on-write faults), or as source the child
compiles itself (the host's compiler declined it, or this interpreter's bytecode magic is
not the host compiler's); the result is the same either way. ``''`` (the work dir) is not on
``sys.path``: a file a program leaves in /tmp is never imported by a later one. The parent
waits on the pipe (and a pidfd when forking is allowed) until the wall-clock deadline
``limits.timeout``; then it kills every process the job may have left (``kill(-1)`` as
PID 1 of its namespace; the process group otherwise), reaps them, and wipes the scratch
dir. Answers are sent in groups, none held more than ``FLUSH_S`` (also while a later job
runs).

Why one file. The runner is sent to each worker as ``python3 -c SOURCE``: a container of
the sandbox image or a bubblewrap sandbox that holds no copy of the arena package (its
root is the image, or read-only binds of /usr). So the runner must be one standard-library
file, and a split would mean either installing the package inside every sandbox (the image
rebuilt on each arena change, and arena's code readable by every program) or
concatenating files back into this one before sending it. What does not have to run inside
the worker lives on the host already: parsing what a job wrote (`arena.sandbox.result`),
the bubblewrap seccomp filter (`arena.sandbox.seccomp`), compiling programs
(`arena.sandbox.compiler`), the pool (`arena.sandbox.pool`).

Status of a call: ``ok``; ``error`` (an exception, with its type name); ``timeout``
(the wall-clock deadline or RLIMIT_CPU); ``memory`` (exactly MemoryError under
RLIMIT_AS); ``output_limit`` (stdout/stderr, the value's repr, or a file beyond its
limit); ``killed`` (the process died by a signal it was not sent for a limit, or vanished
without reporting). A call's ``plain`` is true when its value is built only of builtin
types (int, str, list, dict, ...): only then are ``value`` (repr) and ``json`` computed
by builtin code rather than the program's own ``__repr__``.
"""

from __future__ import annotations

import json
import marshal
import mmap
import os
import select
import signal
import struct
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
PROTO_IN_FD, PROTO_OUT_FD = 200, 201  # the protocol, out of the way of fd 3
FLUSH_S = 0.02  # longest time a finished job's answer waits to be sent with others
JOB_READ_S = 20.0  # most seconds a child may take to read its own job frame
WIPE_S = 1.0  # most seconds spent emptying the scratch dir; longer: retire the worker
OUTBOX_BYTES = 1 << 26  # the DONTFORK buffer for answers (virtual; touched pages only)
STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed")


LIMIT_KEYS = tuple(DEFAULT_LIMITS)


def encode_job(program: str, calls: list[str], limits: dict,
               codes: list | None = None) -> bytes:
    """A job's frame payload: one ASCII line (the limits in `LIMIT_KEYS` order, the number
    of calls, then per piece, the program then each call, ``s`` + the byte length of its
    UTF-8 source (lone surrogates kept) or ``m`` + the byte length of its marshalled code),
    then the pieces. ``codes``: the host's marshalled code per piece, None where the job
    compiles the source (`arena.sandbox.compiler`). Cheap to decode in a forked child."""
    lim = dict(DEFAULT_LIMITS)
    lim.update(limits or {})
    pieces, kinds = [], []
    for i, src in enumerate([program, *calls]):
        code = codes[i] if codes else None
        if code is None:
            pieces.append(src.encode("utf-8", "surrogatepass"))
            kinds.append("s")
        else:
            pieces.append(code)
            kinds.append("m")
    head = [repr(float(lim["timeout"]))] + [str(int(lim[k])) for k in LIMIT_KEYS[1:]]
    head += [str(len(calls))] + [k + str(len(p)) for k, p in zip(kinds, pieces)]
    return (" ".join(head) + "\n").encode("ascii") + b"".join(pieces)


def decode_job(data: bytes) -> tuple[dict, dict]:
    """(job, limits) from `encode_job`'s payload (ValueError when malformed); a piece is
    a str (source) or bytes (marshalled code, loaded by the job's process)."""
    nl = data.index(b"\n")
    head = data[:nl].split()
    lim = {"timeout": float(head[0])}
    for k, v in zip(LIMIT_KEYS[1:], head[1:len(LIMIT_KEYS)]):
        lim[k] = int(v)
    n = int(head[len(LIMIT_KEYS)])
    toks = head[len(LIMIT_KEYS) + 1:]
    lens = [int(x[1:]) for x in toks]
    if (len(lens) != n + 1 or len(lim) != len(LIMIT_KEYS) or nl + 1 + sum(lens) != len(data)
            or any(x[:1] not in (b"s", b"m") for x in toks)):
        raise ValueError("malformed job frame")
    pieces, pos = [], nl + 1
    for tok, size in zip(toks, lens):
        raw = data[pos:pos + size]
        pieces.append(raw if tok[:1] == b"m" else raw.decode("utf-8", "surrogatepass"))
        pos += size
    return {"program": pieces[0], "calls": pieces[1:]}, lim


def result_cap(lim: dict, ncalls: int) -> int:
    """Bound on what an honest child writes to its result pipe (bytes)."""
    return 2 * int(lim["max_output"]) * 6 + (ncalls + 1) * (int(lim["max_value"]) * 12 + 4096)


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


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _writev_all(fd: int, parts: list) -> None:
    parts = [memoryview(p) for p in parts if len(p)]
    while parts:
        n = os.writev(fd, parts[:512])
        while n and parts:
            if n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            else:
                parts[0] = parts[0][n:]
                n = 0


def _read_exact(fd: int, n: int) -> bytes:
    """Exactly ``n`` bytes of ``fd`` (b"" at end of file before the first byte)."""
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            if parts:
                raise EOFError("protocol stream ended inside a frame")
            return b""
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


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


# -- the seccomp filter the runner installs on itself (every job inherits it) ---------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _EPERM = 0x7FFF0000, 0x00050000 | 1
# x86-64 numbers: calls that name another process
_ARG0_IS_SELF = {"prlimit64": 302, "sched_setparam": 142, "sched_setscheduler": 144,
                 "sched_setaffinity": 203, "sched_setattr": 314}
_SIGNAL_ARG0 = {"kill": 62, "tkill": 200, "rt_sigqueueinfo": 129}
_SIGNAL_ARG01 = {"tgkill": 234, "rt_tgsigqueueinfo": 297}
_DENY = {"pidfd_send_signal": 424, "process_madvise": 440, "process_mrelease": 448,
         "ioprio_set": 251,
         # ptrace: PTRACE_TRACEME makes the runner a tracer, and a traced job that stops
         # itself looked finished to waitpid (it lived on, a mailbox for later jobs); the
         # rest reach other processes' memory or a kernel surface no program needs
         "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
         "pidfd_getfd": 438, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
         "userfaultfd": 323, "perf_event_open": 298, "bpf": 321, "add_key": 248, "request_key": 249,
         "keyctl": 250}
_SETPRIORITY = 141
# calls whose second argument (a command) may make the kernel signal another process: fcntl
# F_SETOWN / F_SETOWN_EX, ioctl FIOSETOWN / SIOCSPGRP name a process that SIGIO (or
# F_SETSIG's signal, SIGKILL included) goes to when the file becomes ready
_OWNER_COMMANDS = {72: (8, 15), 16: (0x8901, 0x8902)}


def job_filter(runner_pid: int, is_init: bool, machine: str | None = None) -> bytes | None:
    """The seccomp filter (``struct sock_filter[]``) the runner installs on itself at start,
    so that every job's process inherits it (free per job), or None off x86-64.

    It refuses (EPERM) what lets a program reach the runner, or later jobs through it, all
    of which the same uid may otherwise do: rlimits, scheduling and affinity of any process
    but the caller (``pid`` argument not 0); ``setpriority`` and ``ioprio_set`` beyond the
    calling process (``PRIO_USER`` would reach every process of the uid); signals to
    ``runner_pid`` or its process group, to ``-1`` unless the runner is PID 1 of its own
    namespace (there ``-1`` reaches only the job's own processes, and the runner uses it to
    kill them), and through pidfds; ``process_madvise``; making a file signal its owner
    (``fcntl`` F_SETOWN / F_SETOWN_EX, ``ioctl`` FIOSETOWN / SIOCSPGRP: a write to a pipe
    then sent F_SETSIG's SIGKILL to the process named, which the ``kill`` rules never saw).
    x32 and 32-bit system calls are refused outright. The runner itself never needs any of these."""
    if (machine or os.uname().machine) not in ("x86_64", "AMD64"):
        return None
    prog: list[list] = []

    def ins(code, jt, jf, k):
        prog.append([code, jt, jf, k])
        return len(prog) - 1

    # jumps to labels are patched at the end: ("L", name) in jt/jf
    ins(_LD_W_ABS, 0, 0, 4)
    ins(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64)
    ins(_RET_K, 0, 0, _EPERM)
    ins(_LD_W_ABS, 0, 0, 0)
    ins(_JGE_K, ("L", "deny"), 0, _X32_BIT)
    for nr in _ARG0_IS_SELF.values():
        ins(_JEQ_K, ("L", "arg0_zero"), 0, nr)
    for nr in _SIGNAL_ARG0.values():
        ins(_JEQ_K, ("L", "sig0"), 0, nr)
    for nr in _SIGNAL_ARG01.values():
        ins(_JEQ_K, ("L", "sig01"), 0, nr)
    for nr in _DENY.values():
        ins(_JEQ_K, ("L", "deny"), 0, nr)
    ins(_JEQ_K, ("L", "setprio"), 0, _SETPRIORITY)
    for nr in _OWNER_COMMANDS:
        ins(_JEQ_K, ("L", f"owner{nr}"), 0, nr)
    ins(_RET_K, 0, 0, _ALLOW)  # everything else
    labels: dict[str, int] = {}
    # fcntl / ioctl: no command that makes a file signal its owner
    for nr, commands in _OWNER_COMMANDS.items():
        labels[f"owner{nr}"] = ins(_LD_W_ABS, 0, 0, 24)
        for command in commands:
            ins(_JEQ_K, ("L", "deny"), 0, command)
        ins(_RET_K, 0, 0, _ALLOW)
    # arg0 (low 32 bits: the kernel reads an int) must be 0: "the calling process"
    labels["arg0_zero"] = ins(_LD_W_ABS, 0, 0, 16)
    ins(_JEQ_K, ("L", "allow"), ("L", "deny"), 0)
    # setpriority(PRIO_PROCESS=0, who=0) only
    labels["setprio"] = ins(_LD_W_ABS, 0, 0, 16)
    ins(_JEQ_K, 0, ("L", "deny"), 0)
    ins(_LD_W_ABS, 0, 0, 24)
    ins(_JEQ_K, ("L", "allow"), ("L", "deny"), 0)
    # signal targets: not the runner, not its group, not -1 outside a PID namespace
    labels["sig01"] = ins(_LD_W_ABS, 0, 0, 24)
    ins(_JEQ_K, ("L", "deny"), 0, runner_pid)
    labels["sig0"] = ins(_LD_W_ABS, 0, 0, 16)
    if is_init:  # -1 (= -runner_pid) reaches the job's own processes only; PID 1 uses it
        ins(_JEQ_K, ("L", "deny"), ("L", "allow"), runner_pid)
    else:
        ins(_JEQ_K, ("L", "deny"), 0, runner_pid)
        ins(_JEQ_K, ("L", "deny"), 0, (-runner_pid) & 0xFFFFFFFF)
        ins(_JEQ_K, ("L", "deny"), ("L", "allow"), 0xFFFFFFFF)
    labels["allow"] = ins(_RET_K, 0, 0, _ALLOW)
    labels["deny"] = ins(_RET_K, 0, 0, _EPERM)
    out = []
    for pc, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt[1]] - pc - 1 if isinstance(jt, tuple) else jt
        jf = labels[jf[1]] - pc - 1 if isinstance(jf, tuple) else jf
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise AssertionError("seccomp jump out of range")
        out.append(struct.pack("<HBBI", code, jt, jf, k))
    return b"".join(out)


# -- the child ------------------------------------------------------------------------------

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
_SCALARS = frozenset((int, float, complex, bool, str, bytes, type(None)))
_CONTAINERS = frozenset((list, tuple, set, frozenset))


def _plain(value: object, _type=type, _scalars=_SCALARS, _containers=_CONTAINERS) -> bool:
    """True when ``value`` is built only of builtin types (exactly: no subclasses), so its
    repr and JSON come from builtin code, not from the program. At most 100k nodes."""
    stack, budget = [value], 100_000
    while stack:
        budget -= 1
        if budget < 0:
            return False
        v = stack.pop()
        t = _type(v)
        if t in _scalars:
            continue
        if t in _containers:
            stack.extend(v)
        elif t is dict:
            stack.extend(v.keys())
            stack.extend(v.values())
        else:
            return False
    return True


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


def _failure(e: BaseException, over: bool = False, _str=str, _type=type) -> dict:
    t = _type(e)
    if t is MemoryError:  # exactly: a program's own subclass is just an error
        status = "memory"
    elif t is OutputLimitExceeded and over:
        status = "output_limit"
    else:
        status = "error"
    try:
        msg = _str(e)[:2000]
        if _type(msg) is not str:
            msg = "<unprintable exception>"
    except BaseException:  # noqa: BLE001
        msg = "<unprintable exception>"
    try:
        name = t.__name__
        name = name[:200] if _type(name) is str else "?"
    except BaseException:  # noqa: BLE001
        name = "?"
    return {"status": status, "error_type": name, "error": msg}
_STREAM_AFTER_S = 0.05  # a job running longer than this streams each call's result at once


def _child(job: dict, lim: dict, t0: float) -> None:
    """Body of the forked process after setup; never returns.

    A single-call job writes its result in one go at the end. With several calls, or once
    the job has run ``_STREAM_AFTER_S``, each call's result is written as soon as it is
    known, so a later timeout or crash keeps the results already obtained."""
    # Bind what reporting needs before the program can monkeypatch modules or builtins.
    _repr, _str, _len, _type, _plain_ = repr, str, len, type, _plain
    _encode, _line = _VALUE_ENCODER, _LINE_ENCODER
    _exit, _now, _loads = os._exit, time.monotonic, marshal.loads
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
            code = job["program"]  # marshalled by the host, or source (see encode_job)
            code = _loads(code) if _type(code) is bytes else compile(code, "<program>", "exec", dont_inherit=True)
            exec(code, globs)  # noqa: S102 - running the program is the point
            ran = True
        except _BaseException as e:
            fail = failure(e, out.exceeded or err.exceeded)
            report({"program": fail})
            results = [fail] * len(calls)
            ran = False
        if ran:
            for call in calls:
                try:
                    code = _loads(call) if _type(call) is bytes else compile(call, "<call>", "eval", dont_inherit=True)
                    value = eval(code, globs)
                    plain = _plain_(value)
                    text = _repr(value)
                    if _type(text) is not _str:
                        raise TypeError("__repr__ returned non-string")
                    if _len(text) > max_value:
                        res = {"status": "output_limit", "error_type": "ValueTooLarge",
                               "error": f"repr of the value has {_len(text)} characters "
                                        f"(limit {max_value})"}
                    else:
                        res = {"status": "ok", "value": text, "plain": plain}
                        if plain:
                            try:
                                js = _encode(value)
                                if _len(js) <= max_value:
                                    res["json"] = js
                            except _BaseException:
                                pass
                except _BaseException as e:
                    res = failure(e, out.exceeded or err.exceeded)
                results.append(res)
                if stream or _now() - t0 > _STREAM_AFTER_S:
                    report(res)
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


def _wait_end(pid: int) -> int | None:
    """Wait status of ``pid``'s end (after SIGKILL), past any stop a tracer is told of."""
    while True:
        try:
            st = os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None
        except InterruptedError:
            continue
        if not os.WIFSTOPPED(st):
            return st


def _reap_all() -> None:
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
        except InterruptedError:
            continue


class Retire(Exception):
    """The worker must not serve another job (tampered with, or its scratch dir is dirty)."""


def _wipe(top: str, deadline: float) -> bool:
    """Empty ``top`` without recursion (any depth; a too-long path just fails); False when
    something could not be removed or ``deadline`` passed."""
    ok = True
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        if time.monotonic() > deadline:
            return False
        path, emptied = stack.pop()
        if emptied:
            try:
                os.rmdir(path)
            except OSError:
                ok = False
            continue
        if path != top:
            stack.append((path, True))
            try:
                os.chmod(path, 0o700)
            except OSError:
                pass
        try:
            with os.scandir(path) as it:
                entries = [(e.path, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError:
            ok = False
            continue
        for p, is_dir in entries:
            if is_dir:
                stack.append((p, False))
            else:
                try:
                    os.unlink(p)
                except OSError:
                    ok = False
    return ok


class Runner:
    """Serves jobs read from the protocol fds (see the module docstring)."""

    def __init__(self, workdir: str, scratch: list[str], protected: bool = False,
                 seccomp: bool = False) -> None:
        self.workdir = workdir
        self.protected = protected
        self.seccomp = seccomp
        self.scratch = scratch
        self.pid = os.getpid()
        self.is_init = self.pid == 1  # PID 1 of our own PID namespace
        self.root = os.geteuid() == 0  # RLIMIT_NPROC is not enforced for root
        # The protocol moves to fds 200/201; fds 0-2 become /dev/null, so a forked child
        # needs no dup2 for them and closes everything above its result fd 3.
        os.dup2(0, PROTO_IN_FD)
        os.dup2(1, PROTO_OUT_FD)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir(workdir)
        # PID 1 of a namespace receives from inside it only the signals it handles:
        # handle none (Python's SIGINT handler would let a program stop the runner).
        signal.signal(signal.SIGINT, signal.SIG_DFL if self.is_init else signal.SIG_IGN)
        if resource is not None:  # never a core file, in the runner or any child
            try:
                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ValueError, OSError):
                pass
        self.hard = _hard_limits()
        # Answers live in a buffer that no forked child inherits (see the module docstring).
        self.mm = mmap.mmap(-1, OUTBOX_BYTES)
        try:
            self.mm.madvise(getattr(mmap, "MADV_DONTFORK", 10))
            self.isolated_outbox = True
        except (AttributeError, OSError, ValueError):  # pragma: no cover - old kernels
            self.isolated_outbox = False
        self.mv = memoryview(self.mm)
        self.off = 0
        self.pending: list = []  # meta lines and views of the outbox, not yet sent
        self.flush_at = 0.0
        self.state = self._own_state()
        st = os.stat(workdir)
        self.root_state = (st.st_mode, st.st_uid, st.st_gid)
        self.owns_root = st.st_uid == os.geteuid()
        if self.owns_root:  # a fixed mtime: no bits pass from one job to the next through it
            os.utime(workdir, ns=(0, 0))
        for d in scratch:
            _wipe(d, time.monotonic() + 10 * WIPE_S)
        self.clean_inodes = self._inodes()

    def _own_state(self) -> list:
        """The runner's own limits, priority, affinity and scheduling (a job must not
        change them: see `health`)."""
        state: list = []
        if resource is not None:
            state += [resource.getrlimit(w) for w in self.hard]
        for probe in (lambda: os.getpriority(os.PRIO_PROCESS, 0), lambda: os.sched_getaffinity(0),
                      lambda: os.sched_getscheduler(0), lambda: os.sched_getparam(0).sched_priority):
            try:
                state.append(probe())
            except (AttributeError, OSError):
                state.append(None)
        return state

    def _inodes(self) -> tuple | None:
        """Inodes in use on each scratch filesystem: unchanged means nothing was left
        behind (one statvfs instead of listing the directory after every job)."""
        try:
            return tuple((v.f_files - v.f_ffree) for v in map(os.statvfs, self.scratch))
        except OSError:
            return None

    # -- one job -----------------------------------------------------------------------
    def _child_setup(self, r: int, w: int, t0: float) -> None:
        """In the forked child: read this job's own frame from the protocol, close the
        protocol, tell the runner the limits, lock down, run. Never returns."""
        os.close(r)
        # what the runner keeps of earlier jobs of this request (their meta lines: sizes,
        # durations, exit statuses) is not this job's to read (walking its frames to `self`)
        self.pending.clear()
        self.off = 0
        # fds 0-2 on a /dev/null of the job's own: shared with the runner, its open file's flags
        # (O_NONBLOCK, O_APPEND, F_SETSIG's signal) passed 8 bits from one job to the next
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
        try:
            size = _read_exact(PROTO_IN_FD, 11)
            data = _read_exact(PROTO_IN_FD, int(size[:10]))
        except (OSError, ValueError, EOFError):
            os._exit(72)  # the runner sees no header: it stops (the stream is out of step)
        if w != _RESULT_FD:
            os.dup2(w, _RESULT_FD)
        os.closerange(_RESULT_FD + 1, 1 << 16)
        try:
            job, lim = decode_job(data)
            header = b"%.6f %d %d\n" % (float(lim["timeout"]), int(lim["max_processes"]),
                                        result_cap(lim, len(job["calls"])))
        except Exception:  # noqa: BLE001 - a malformed job: reported as the job's error
            job, lim = None, DEFAULT_LIMITS
            header = b"2.0 0 65536\n"
        data = size = None
        _write_all(_RESULT_FD, header)
        if not self.is_init:  # its own session, for killpg
            os.setsid()
        _set_rlimits(lim, self.hard)
        if job is None:
            _report({"program": {"status": "error", "error_type": "BadJob",
                                 "error": "the host sent a malformed job"}})
            os._exit(0)
        _child(job, lim, t0)

    def run_job(self) -> None:
        """Fork, let the child read and run its job, queue the answer. Raises Retire when
        the stream is out of step (the child died before reading its job)."""
        if not self.pending:
            self.release()
        elif self.off > len(self.mm) // 2:
            self.flush()
            self.release()
        r, w = os.pipe()
        t0 = time.monotonic()
        pid = os.fork()
        if pid == 0:  # child
            try:
                self._child_setup(r, w, t0)
            finally:
                os._exit(70)
        os.close(w)
        mm, mv = self.mm, self.mv
        start = pos = self.off
        limit = min(len(mm), start + 4096)
        body = -1  # offset of the first byte after the child's header line
        deadline = t0 + JOB_READ_S
        procs = 0
        pidfd = -1
        watch = [r]
        timed_out = overflow = False
        wstatus = None
        while True:
            now = time.monotonic()
            if self.pending and now >= self.flush_at:
                self.flush()
            remaining = deadline - now
            if remaining <= 0:
                timed_out = True
                break
            wait = min(remaining, self.flush_at - now) if self.pending else remaining
            ready = select.select(watch, [], [], max(wait, 0.0))[0]
            if not ready:
                continue
            if r in ready:
                if pos >= limit:
                    overflow = True
                    break
                n = os.readv(r, [mv[pos:limit]])
                if not n:
                    break
                pos += n
                if body < 0:
                    i = mm.find(b"\n", start, pos)
                    if i >= 0:  # the header the child wrote before the program ran
                        hdr = bytes(mv[start:i]).split()
                        body = i + 1
                        deadline = t0 + float(hdr[0])
                        procs = int(hdr[1])
                        limit = min(len(mm), body + int(hdr[2]) + 1)
                        if procs > 0:
                            try:
                                pidfd = os.pidfd_open(pid)
                                watch = [r, pidfd]
                            except (AttributeError, OSError):
                                pidfd = -1
            elif pidfd in ready:  # the child exited; take what it wrote, not what strays may
                wstatus = os.waitpid(pid, 0)[1]
                while pos < limit and select.select([r], [], [], 0)[0]:
                    n = os.readv(r, [mv[pos:limit]])
                    if not n:
                        break
                    pos += n
                break
        os.close(r)
        if pidfd >= 0:
            os.close(pidfd)
        if wstatus is None and not (timed_out or overflow):
            wstatus = _wait_exit(pid, deadline)  # normally immediate: it closed the pipe by exiting
            timed_out = wstatus is None
        stopped = wstatus is not None and os.WIFSTOPPED(wstatus)
        if stopped:  # a stop reported to a tracer, not an exit: the process lives on
            wstatus = None
        # Kill whatever the job left. Nothing can be left when the child exited by itself
        # and could not create processes (RLIMIT_NPROC 0, enforced for a non-root user).
        if wstatus is None or procs > 0 or self.root or body < 0:
            self.kill_job(pid)
            if wstatus is None:
                wstatus = _wait_end(pid)
            if self.is_init:
                _reap_all()
        if body < 0:
            self.off = start
            raise Retire(f"a job's process ended before reading its job (wait status {wstatus})")
        duration = time.monotonic() - t0
        meta = b'{"d": %.6f, "n": %d, "t": %d, "o": %d, "w": %s}\n' % (
            duration, pos - body, timed_out, overflow, b"null" if wstatus is None else b"%d" % wstatus)
        if not self.pending:
            self.flush_at = time.monotonic() + FLUSH_S
        self.pending.append(meta)
        self.pending.append(mv[body:pos])
        self.off = pos

    def flush(self) -> None:
        if self.pending:
            _writev_all(PROTO_OUT_FD, self.pending)
            self.pending.clear()

    def release(self) -> None:
        """Reuse the outbox from its start (nothing pending); give back its pages when a
        big answer touched many."""
        if self.off > (1 << 20):
            try:
                self.mm.madvise(mmap.MADV_DONTNEED, 0, (self.off + 4095) & ~4095)
            except (AttributeError, OSError, ValueError):
                pass
        self.off = 0

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

    # -- health ------------------------------------------------------------------------
    def health(self) -> str | None:
        """After each job: None when the worker is as it was, else why it must retire.

        Checks the runner's own limits, priority, affinity and scheduling; the scratch
        root's mode, owner and xattrs (restored where the runner owns it, as under
        bubblewrap); empties the scratch dirs within ``WIPE_S``; resets the root's mtime
        where the runner owns it."""
        if self._own_state() != self.state:
            return "a job changed the runner's limits, priority, affinity or scheduling"
        root = self.workdir
        try:
            st = os.stat(root)
            if (st.st_mode, st.st_uid, st.st_gid) != self.root_state:
                if not self.owns_root or st.st_uid != self.root_state[1]:
                    return "a job changed the scratch root's owner or mode"
                os.chmod(root, self.root_state[0] & 0o7777)
            try:
                names = os.listxattr(root)
            except OSError:
                names = []
            for name in names:
                os.removexattr(root, name)
        except OSError as e:
            return f"the scratch root cannot be restored: {e}"
        changed = st.st_mtime_ns != 0 if self.owns_root else False
        if self.clean_inodes is None or self._inodes() != self.clean_inodes:
            deadline = time.monotonic() + WIPE_S
            for d in self.scratch:
                if not _wipe(d, deadline):
                    return "the scratch dir could not be emptied in time"
            changed = True
        if changed and self.owns_root:
            try:
                os.utime(root, ns=(0, 0))
            except OSError as e:
                return f"the scratch root cannot be restored: {e}"
        return None

    def serve(self) -> int:
        out = PROTO_OUT_FD
        _write_all(out, (json.dumps({
            "ready": 1, "python": sys.version.split()[0], "magic": _magic(),
            "init": self.is_init, "pid": self.pid,
            "protected": self.protected, "seccomp": self.seccomp,
            "isolated_outbox": self.isolated_outbox}) + "\n").encode())
        while True:
            try:
                head = _read_exact(PROTO_IN_FD, 12)
            except EOFError:
                return 0
            if not head:
                return 0
            if head[:1] != b"J" or head[11:] != b"\n" or not head[1:11].isdigit():
                _write_all(out, b'{"fatal": "bad request header"}\n')
                return 1  # out of step with the host: it replaces the worker
            n = int(head[1:11])
            _write_all(out, b'{"ack": %d}\n' % n)  # received: the host can tell
            for _ in range(n):                      # "never started" from "died in a job"
                try:
                    self.run_job()
                except Retire as e:
                    self.pending.append((json.dumps({"infra": str(e)}) + "\n").encode())
                    self.pending.append((json.dumps({"retire": str(e)}) + "\n").encode())
                    self.flush()
                    return 0
                except Exception as e:  # noqa: BLE001 - runner bug: tell the host, stop
                    self.pending.append((json.dumps({"infra": f"runner error: {e!r}"}) + "\n").encode())
                    self.pending.append(b'{"retire": "runner error"}\n')
                    self.flush()
                    return 1
                why = self.health()
                if why is not None:
                    self.pending.append((json.dumps({"retire": why}) + "\n").encode())
                    self.flush()
                    return 0
            self.flush()


def _magic() -> str | None:
    """This interpreter's bytecode magic number (hex): the host sends marshalled code only
    when its compiler's is the same."""
    ext = sys.modules.get("_frozen_importlib_external")
    magic = getattr(ext, "MAGIC_NUMBER", None)
    return magic.hex() if isinstance(magic, bytes) else None


def _warm_up() -> None:
    """Initialise, once in the runner, what every child would otherwise build after fork.

    The first ``compile()`` of a process builds the AST type objects (~7 ms here); done in
    the parent, the children inherit them for free."""
    g: dict = {}
    warm = "def f(a):\n    return [a, {'k': (1, 2.5)}]\n"
    exec(compile(warm, "<warm-up>", "exec", dont_inherit=True), g)  # noqa: S102
    v = eval(marshal.loads(marshal.dumps(compile("f('x')", "<warm-up>", "eval", dont_inherit=True))), g)
    json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode(v)
    json.loads(json.dumps({"v": repr(v)}, ensure_ascii=False))
    _Capture(10).write("x")


def _protect() -> tuple[bool, bool]:
    """(non-dumpable, seccomp filter installed): done once at start, through ctypes (then
    dropped, so its modules are not part of every fork).

    Non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``): the programs run as the runner's own uid,
    and a dumpable process may be ptraced, or have its ``/proc/PID/mem`` and
    ``/proc/PID/fd`` opened, by any process of the same uid: a program could rewrite the
    runner's memory or write forged results into its protocol pipe. A non-dumpable process
    needs CAP_SYS_PTRACE for all of these, which no sandbox process has.

    Seccomp (`job_filter`, with ``PR_SET_NO_NEW_PRIVS``): installed on the runner itself,
    so every forked job inherits it at no cost per job."""
    before = set(sys.modules)
    protected = filtered = False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
        prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                          ctypes.c_ulong]
        PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
        protected = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
        pid = os.getpid()
        prog = job_filter(pid, pid == 1)
        if prog is not None:
            PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
            insns = ctypes.create_string_buffer(prog, len(prog))
            fprog = ctypes.create_string_buffer(
                struct.pack("<HxxxxxxQ", len(prog) // 8, ctypes.addressof(insns)), 16)
            filtered = (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                        and prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) == 0)
    except Exception:  # noqa: BLE001 - no ctypes here: the host is told (ready line)
        protected = protected and False
    finally:
        for name in set(sys.modules) - before:
            del sys.modules[name]
    return protected, filtered


def main(argv: list[str]) -> int:
    protected, filtered = _protect()
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
    # No import from the work dir: a file one program leaves there is never another's module.
    sys.path[:] = [p for p in sys.path if p not in ("", ".", workdir)]
    _warm_up()
    try:
        import gc
        gc.freeze()  # fewer copy-on-write faults in forked children
    except (ImportError, AttributeError):
        pass
    return Runner(workdir, scratch or [workdir], protected, filtered).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
