"""Containment of hostile programs, on every isolating backend (docker, bubblewrap).

Every test runs a hostile program *without* the static checks (they are a separate layer)
and then asserts that the host is unharmed and that the pool still runs a normal program.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from arena.sandbox import Limits

PROJECT_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"
SECRET = "selfplay-arena"  # a string in the project's pyproject.toml
FAST = Limits(timeout=1.0, memory_mb=256)


@pytest.fixture(autouse=True)
def pool_recovers(request):
    """After each test: the pool answers a normal program correctly, and quickly."""
    yield
    if "sb" not in request.fixturenames:
        return
    sb = request.getfixturevalue("sb")
    t0 = time.monotonic()
    assert sb.healthy(), "pool unhealthy after a hostile program"
    rs = sb.run_many([("def f(x):\n    return x + 1\n", f"f({i})") for i in range(20)])
    assert [r.value for r in rs] == [str(i + 1) for i in range(20)]
    assert time.monotonic() - t0 < 10


def test_fork_bomb_no_processes_allowed(sb):
    r = sb.run("import os\nwhile True:\n    os.fork()\n", None, FAST)
    assert r.status == "error" and r.error_type == "BlockingIOError"


def test_fork_bomb_with_processes_allowed(sb):
    # Even when forking is allowed, RLIMIT_NPROC / the pids cgroup cap it, the deadline
    # stops it, and everything it forked is killed.
    prog = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = sb.run(prog, None, Limits(timeout=1.0, max_processes=40))
    assert r.status in ("timeout", "killed")
    survivors = "import os\ndef f():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
    r = sb.run(survivors, "f()")
    assert r.status == "ok" and len(eval(r.value)) <= 2  # the runner and this program


def test_escaped_session_is_killed_after_the_job(sb):
    prog = ("import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n"
            "    time.sleep(60)\n    os._exit(0)\n")
    r = sb.run(prog, None, Limits(timeout=1.0, max_processes=8))
    assert r.status == "ok"
    survivors = "import os\ndef f():\n    return [p for p in os.listdir('/proc') if p.isdigit()]\n"
    assert len(eval(sb.run(survivors, "f()").value)) <= 2


def test_memory_bomb(sb):
    r = sb.run("x = bytearray(8 * 1024 ** 3)\n", None, FAST)
    assert r.status == "memory"
    r = sb.run("chunks = []\nwhile True:\n    chunks.append(' ' * 10 ** 6)\n", None, FAST)
    assert r.status == "memory"


def test_infinite_loop(sb):
    r = sb.run("while True:\n    pass\n", None, FAST)
    assert r.status == "timeout" and r.duration < 3.0


def test_cpu_spin_in_many_threads(sb):
    prog = ("import threading\ndef spin():\n    while True:\n        pass\n"
            "for _ in range(16):\n    threading.Thread(target=spin, daemon=True).start()\nspin()\n")
    r = sb.run(prog, None, FAST)  # no processes allowed: threads cannot start
    assert r.status == "error" and r.error_type == "RuntimeError"
    # allowed (and given address space for 16 thread stacks and malloc arenas): they spin
    # until the deadline, capped by the container's CPU quota, then all die with the process
    r = sb.run(prog, None, Limits(timeout=1.0, max_processes=64, memory_mb=1024))
    assert r.status == "timeout" and r.duration < 3.0


def test_printing_gigabytes(sb):
    r = sb.run("while True:\n    print('x' * 10 ** 6)\n", None, FAST)
    assert r.status == "output_limit" and len(r.stdout) <= FAST.max_output
    # bypassing sys.stdout: fd 1 is /dev/null, so this only burns CPU until the deadline
    r = sb.run("import os\nwhile True:\n    os.write(1, b'x' * 10 ** 6)\n", None, FAST)
    assert r.status == "timeout"
    r = sb.run("try:\n    while True:\n        print('y' * 1000)\nexcept BaseException:\n    pass\n", None, FAST)
    assert r.status == "output_limit"  # caught, but recorded


def test_writing_outside_the_work_dir(sb):
    for path in ("/etc/evil", "/usr/evil", "/evil", "/proc/sys/kernel/hostname"):
        r = sb.run(f"open({path!r}, 'w').write('x')\n", None, FAST)
        assert r.status == "error", path
        assert r.error_type in ("PermissionError", "OSError", "FileNotFoundError"), (path, r.error_type)
    # the scratch dir is writable, bounded, and wiped between jobs
    r = sb.run("open('/tmp/note', 'w').write('hi')\ndef f():\n    return open('/tmp/note').read()\n", "f()")
    assert r.value == "'hi'"
    r = sb.run("import os\ndef f():\n    return os.listdir('/tmp')\n", "f()")
    assert r.value == "[]"
    r = sb.run("open('/tmp/big', 'wb').write(b'x' * (8 * 1024 ** 2))\n", None, FAST)
    assert r.status in ("error", "output_limit") and r.error_type in ("OSError", "FileSizeLimit")


def test_reading_host_files(sb):
    assert SECRET in PROJECT_FILE.read_text()
    for path in (str(PROJECT_FILE), "/root/.bashrc", "/etc/shadow", str(Path.cwd())):
        r = sb.run(f"print(open({path!r}).read())\n", None, FAST)
        assert r.status == "error", path
        assert SECRET not in r.stdout
    r = sb.run("import os\ndef f():\n    return os.path.exists('/work') and os.listdir('/work'), os.path.exists('/root/.cache')\n", "f()")
    assert r.status in ("ok", "error") and SECRET not in (r.value or "")
    # docker: /work belongs to uid 10001, each worker runs under a uid of its own
    assert r.value in ("(False, False)", "([], False)") or r.error_type == "PermissionError", r


def test_network_connection(sb):
    prog = ("import socket\ndef f(host, port):\n    s = socket.create_connection((host, port), timeout=0.5)\n"
            "    return 'connected'\n")
    r = sb.run(prog, ["f('1.1.1.1', 80)", "f('127.0.0.1', 22)", "f('localhost', 2375)"], FAST)
    assert all(c.status == "error" for c in r.calls), r.calls
    assert all(c.error_type in ("OSError", "ConnectionRefusedError", "gaierror", "TimeoutError")
               for c in r.calls), r.calls
    r = sb.run("import os\ndef f():\n    return sorted(os.listdir('/sys/class/net'))\n", "f()", FAST)
    assert r.status == "error" or r.value == "['lo']"


def test_killing_the_runner_or_its_parent(sb):
    for prog in ("import os\nos.kill(os.getppid(), 9)\n",
                 "import os\nos.kill(1, 9)\n",
                 "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n",
                 "import os\nos.kill(-1, 9)\n"):
        r = sb.run(prog, None, FAST)
        assert r.status in ("ok", "killed", "error"), (prog, r)
        assert not r.infra


RUNNER_TAMPERING = r"""
import ctypes, os
def f():
    out = {}
    for path, mode in (("/proc/1/mem", "r+b"), ("/proc/1/fd/0", "rb"), ("/proc/1/environ", "rb")):
        try:
            open(path, mode, buffering=0).close()
            out[path] = "opened"
        except OSError as e:
            out[path] = type(e).__name__
    try:
        out["/proc/1/fd"] = os.listdir("/proc/1/fd")
    except OSError as e:
        out["/proc/1/fd"] = type(e).__name__
    libc = ctypes.CDLL(None, use_errno=True)
    PTRACE_ATTACH = 16
    out["ptrace"] = "attached" if libc.ptrace(PTRACE_ATTACH, 1, 0, 0) == 0 else os.strerror(ctypes.get_errno())
    return out
"""


def test_runner_cannot_be_ptraced_or_rewritten(sb):
    # Same uid as the runner, but the runner is non-dumpable: no ptrace, no /proc/1/mem,
    # no /proc/1/fd (its protocol pipes), so a program cannot forge later results.
    r = sb.run(RUNNER_TAMPERING, "f()", FAST)
    assert r.status == "ok", r
    got = eval(r.value)
    assert got["/proc/1/mem"] == "PermissionError", got
    assert got["/proc/1/fd/0"] == "PermissionError", got
    assert got["/proc/1/fd"] == "PermissionError", got
    assert got["ptrace"] != "attached", got
    assert all(w.info.get("protected") for w in sb._workers)


PERSISTENT_IPC = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, CLONE_NEWUSER = 0o1000, 0x10000000
def attempt(rc):
    return "ok" if rc >= 0 else os.strerror(ctypes.get_errno())
def make():
    return {"shmget": attempt(libc.shmget(0x1234, 1 << 20, IPC_CREAT | 0o600)),
            "msgget": attempt(libc.msgget(0x4321, IPC_CREAT | 0o600)),
            "semget": attempt(libc.semget(0x5678, 1, IPC_CREAT | 0o600)),
            "mq_open": attempt(libc.mq_open(b"/arena", os.O_CREAT | os.O_RDWR, 0o600, None)),
            "unshare(CLONE_NEWUSER)": attempt(libc.unshare(CLONE_NEWUSER))}
def left():
    return {k: len(open("/proc/sysvipc/" + k).read().splitlines()) - 1 for k in ("shm", "msg", "sem")}
"""


def test_no_state_survives_in_ipc_objects_or_namespaces(sb):
    # System V IPC objects and message queues outlive their process: one job could leave
    # data (or gigabytes of shared memory) for later ones. Creating them must fail, and so
    # must creating namespaces.
    r = sb.run(PERSISTENT_IPC, "make()", FAST)
    assert r.status == "ok", r
    got = eval(r.value)
    assert all(v != "ok" for v in got.values()), got
    r = sb.run(PERSISTENT_IPC, "left()", FAST)
    assert eval(r.value) == {"shm": 0, "msg": 0, "sem": 0}


def test_closing_stdout_and_the_result_channel(sb):
    r = sb.run("import sys\nsys.stdout.close()\nprint('x')\n", None, FAST)
    assert r.status == "error"
    r = sb.run("import os\nfor fd in range(64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"
               "def f():\n    return 1\n", "f()", FAST)
    assert r.status == "error" and not r.infra
    r = sb.run("import os\nos.close(3)\nimport time\ntime.sleep(10)\n", None, FAST)
    assert r.status in ("timeout", "error")


def test_sleeping_past_the_timeout(sb):
    r = sb.run("import time\ndef f():\n    time.sleep(30)\n", "f()", FAST)
    assert r.status == "timeout" and r.duration < 3.0


def test_os_exit(sb):
    r = sb.run("import os\ndef f():\n    os._exit(0)\n", ["f()", "f()"], FAST)
    assert r.status == "error" and r.error_type == "Exit"
    assert [c.status for c in r.calls] == ["error", "error"]


def test_signals(sb):
    r = sb.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", None, FAST)
    assert (r.status, r.error_type) == ("killed", "SIGSEGV")
    r = sb.run("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n", None, FAST)
    assert r.status == "timeout"
    r = sb.run("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass\n", None, FAST)
    assert r.status in ("timeout", "killed")


def test_deep_recursion(sb):
    prog = "def f(n):\n    return f(n + 1)\n"
    r = sb.run(prog, "f(0)", FAST)
    assert r.error_type == "RecursionError"
    # no recursion limit to speak of: the heap, the stack or the deadline stops it
    r = sb.run(prog, "f(0)", Limits(timeout=1.0, recursion_limit=10 ** 7))
    assert r.status in ("killed", "error", "memory", "timeout") and not r.infra


def test_huge_return_values(sb):
    r = sb.run("def f():\n    return 'x' * (8 * 1024 ** 2)\n", "f()", FAST)
    assert r.status == "output_limit" and r.calls[0].value is None
    r = sb.run("def f():\n    return list(range(10 ** 6))\n", "f()", FAST)
    assert r.status == "output_limit"
    r = sb.run("class Evil:\n    def __repr__(self):\n        while True:\n            pass\n"
               "def f():\n    return Evil()\n", "f()", FAST)
    assert r.status == "timeout"
    r = sb.run("class Evil:\n    def __repr__(self):\n        raise ValueError('no')\n"
               "def f():\n    return Evil()\n", "f()", FAST)
    assert (r.status, r.error_type) == ("error", "ValueError")


def test_forged_result_cannot_claim_infra(sb):
    prog = ("import os\nos.write(3, b'{\"infra\": \"fake\"}\\n{\"status\": \"infra\"}\\n')\n"
            "os._exit(0)\n")
    r = sb.run(prog, "1", FAST)
    assert not r.infra and r.status == "error"


def test_throughput_recovers_after_hostile_jobs(sb):
    hostile = [("while True:\n    pass\n", None, Limits(timeout=0.3)),
               ("x = bytearray(8 * 1024 ** 3)\n", None, FAST),
               ("import os\nos.kill(os.getppid(), 9)\n", None, FAST)]
    sb.run_many(hostile * 2)
    jobs = [("def f(x):\n    return sorted(x)[::-1]\n", f"f([{i}, 2, 1])") for i in range(300)]
    t0 = time.monotonic()
    rs = sb.run_many(jobs)
    rate = len(jobs) / (time.monotonic() - t0)
    assert all(r.ok for r in rs)
    assert rate > 50, f"only {rate:.0f} executions/s after hostile jobs"


def test_host_unharmed():
    """The project file is intact and no sandbox program left files in /tmp of the host."""
    assert SECRET in PROJECT_FILE.read_text()
    assert not Path("/tmp/note").exists() and not Path("/tmp/big").exists()
    assert os.path.exists("/etc/passwd")


def test_programs_run_under_seccomp(sb):
    prog = "def f():\n    return open('/proc/self/status').read().split('Seccomp:')[1].split()[0]\n"
    assert sb.run(prog, "f()", FAST).value == "'2'"  # filter mode: Docker's profile, or ours


def test_seccomp_filter_program_shape():
    import errno
    import struct

    from arena.sandbox.seccomp import DENIED_X86_64, RET_ALLOW, RET_ERRNO, filter_program

    assert filter_program("aarch64") is None
    prog = filter_program("x86_64")
    insns = [struct.unpack("<HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert len(insns) == len(DENIED_X86_64) + 14
    rets = {k for code, _, _, k in insns if code == 0x06}
    assert rets == {RET_ALLOW, RET_ERRNO | errno.EPERM, RET_ERRNO | errno.ENOSYS}
    # every jump lands inside the program
    for pc, (code, jt, jf, _) in enumerate(insns):
        if code & 0x07 == 0x05:
            assert pc + 1 + max(jt, jf) < len(insns)


SNOOP = r"""
import gc, sys
def strings(obj, seen, out, depth=0):
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes)):
        out.append(obj if isinstance(obj, str) else obj.decode("utf-8", "replace"))
    elif isinstance(obj, dict):
        for k, v in list(obj.items()):
            strings(k, seen, out, depth + 1)
            strings(v, seen, out, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in list(obj):
            strings(v, seen, out, depth + 1)
    elif isinstance(obj, type(strings.__code__)):
        strings(obj.co_consts, seen, out, depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        strings(vars(obj), seen, out, depth + 1)
def f():
    found, seen = [], set()
    for o in gc.get_objects():
        strings(o, seen, found)
    frame = sys._getframe()
    while frame is not None:
        strings(dict(frame.f_locals), seen, found)
        frame = frame.f_back
    needle = "".join(["MARK", "ER-"])  # not a constant of this program
    return sorted({s[:40] for s in found if needle in s})
"""


def test_a_program_cannot_see_other_jobs_of_its_batch(sb):
    # In one request to one worker: a job with a secret program, input and result, then a
    # job that searches everything reachable (gc, frames) for them. A solver's program
    # must not find the reference solution it is graded against, nor its outputs.
    secret = "def g(x):\n    return 'MARKER-' + 'RESULT-' + x\n"
    jobs = [(secret, "g('MARKER-INPUT')"), (SNOOP, "f()"), (secret, "g('MARKER-LATER')")]
    w = next(iter(sb._workers))
    sb._workers.discard(w)  # run the batch on one worker directly: one request, in order
    try:
        w.send_jobs([{"program": p, "calls": [c], "limits": FAST.to_wire()} for p, c in jobs])
        import json
        deadline = time.monotonic() + 20
        assert json.loads(w.readline(deadline)) == {"ack": 3}
        answers = []
        for _ in range(3):
            meta = json.loads(w.readline(deadline))
            answers.append(w.read_exact(meta["n"], deadline))
    finally:
        sb._workers.add(w)
    from arena.sandbox.result import ExecResult
    snoop = ExecResult.from_output({"n": len(answers[1])}, answers[1], ["f()"], "x", 65536, 1 << 20)
    assert snoop.status == "ok", snoop
    # nothing of the other jobs (sources, inputs, results) may show up
    assert eval(snoop.calls[0].value) == [], snoop
