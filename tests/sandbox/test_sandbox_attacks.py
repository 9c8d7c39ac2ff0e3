"""Regression tests of issue 8: attacks a reward-hacking program makes on the sandbox.

Each attack runs on both isolating backends (docker, bubblewrap) in a one-worker pool, in
the same request as honest jobs after it (`run_many` sends a worker several jobs per
request), and each test asserts what the attacked job gets and what the honest jobs after
it get. None of these programs would pass `check_program`'s task rules, and none needs
to: the sandbox must hold without them.
"""

from __future__ import annotations

import json

import pytest
from _sandbox_support import make_sandbox
from arena.sandbox import Limits

FAST = Limits(timeout=1.5, memory_mb=256)
HONEST = ("def f(n):\n    return sorted([5, 3, 8, n])\n", "f(1)")
HONEST_VALUE = "[1, 3, 5, 8]"


@pytest.fixture(scope="module", params=[
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("bwrap", marks=pytest.mark.bwrap),
])
def sb1(request):
    """A one-worker pool per isolating backend: every job of a test meets the same runner."""
    sb = make_sandbox(request.param, workers=1)
    yield sb
    sb.close()


def run_then_honest(sb, attack, n_honest: int = 5):
    """Run ``attack`` then honest jobs (the first ones in the same request as the attack);
    return (attack result, honest results)."""
    rs = sb.run_many([attack] + [HONEST] * n_honest)
    return rs[0], rs[1:]


def assert_honest(rs) -> None:
    assert [(r.status, r.value) for r in rs] == [("ok", HONEST_VALUE)] * len(rs), rs


# -- 1. the runner's limits, priority, affinity and life ----------------------------------

RUNNER_KNOBS = r"""
import ctypes, os, resource as r, signal
libc = ctypes.CDLL(None, use_errno=True)
def _raise():
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
def attempt(fn):
    try:
        fn()
        return "done"
    except OSError as e:
        return type(e).__name__
def f():
    target = 1 if os.getppid() == 1 else os.getppid()
    return {
        "prlimit AS": attempt(lambda: r.prlimit(target, r.RLIMIT_AS, (50 << 20, 50 << 20))),
        "prlimit NPROC": attempt(lambda: r.prlimit(target, r.RLIMIT_NPROC, (1, 1))),
        "setpriority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, target, 19)),
        "setpriority user": attempt(lambda: os.setpriority(os.PRIO_USER, 0, 19)),
        "sched_setaffinity": attempt(lambda: os.sched_setaffinity(target, {0})),
        "sched_setscheduler": attempt(lambda: os.sched_setscheduler(target, os.SCHED_IDLE, os.sched_param(0))),
        "kill SIGINT": attempt(lambda: os.kill(target, signal.SIGINT)),
        "kill SIGSTOP": attempt(lambda: os.kill(target, signal.SIGSTOP)),
        "kill its group": attempt(lambda: os.kill(-target, signal.SIGINT)) if target != 1 else "PermissionError",
        "tgkill": attempt(lambda: libc.syscall(234, target, target, signal.SIGINT) == 0 or _raise()),
        "pidfd_send_signal": attempt(lambda: libc.syscall(424, os.open("/proc/%d" % target, os.O_RDONLY), signal.SIGINT, 0, 0) == 0 or _raise()),
    }
"""


def test_a_job_cannot_change_the_runners_limits_priority_or_life(sb1):
    attacked, honest = run_then_honest(sb1, (RUNNER_KNOBS, "f()", FAST))
    assert attacked.status == "ok", attacked
    got = eval(attacked.value)
    assert all(v == "PermissionError" for v in got.values()), got
    assert_honest(honest)
    # the runner's memory limit still lets 100 MB through; a wall limit wider than FAST's: beside two
    # training runs, touching 50-100 MB took a docker worker 0.06-0.9 s, and past FAST's 1.5 s while
    # those runs loaded (the test then failed on a timeout; it checks the limits, not the time)
    roomy = Limits(timeout=15, memory_mb=256)
    big = sb1.run_many([("x = bytearray(100 << 20)\ndef f():\n    return len(x)\n", "f()", roomy)] * 3)
    assert [r.value for r in big] == [str(100 << 20)] * 3, big
    probe = ("import os\ndef f():\n    return os.getpriority(os.PRIO_PROCESS, 0), "
             "len(os.sched_getaffinity(0)) > 0, os.sched_getscheduler(0)\n")
    assert sb1.run(probe, "f()", FAST).value == f"(0, True, {__import__('os').SCHED_OTHER})"
    assert sb1.stats["infra"] == 0


# -- 2. other jobs' data ------------------------------------------------------------------

SCAN = r"""
import ctypes
def f():
    # needle -> what must follow it for a hit (never stored whole in this program's memory)
    needles = {b"MARK" + b"ER-": (b"EAR", b"LAT", b"RES"), b'"prog' + b'ram": "': (b"def g",)}
    found = set()
    for line in open("/proc/self/maps"):
        parts = line.split()
        if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        try:
            data = ctypes.string_at(lo, hi - lo)
        except Exception:
            continue
        for needle, tails in needles.items():
            i = data.find(needle)
            while i >= 0:
                after = data[i + len(needle):i + len(needle) + 5]
                if any(after.startswith(t) for t in tails):
                    found.add(data[i:i + 24].decode("latin-1"))
                i = data.find(needle, i + 1)
    return sorted(found)
"""
SECRET_PROGRAM = "def g(x):\n    return 'MARK' + 'ER-RESULT-' + x\n"


def test_a_job_cannot_read_other_jobs_of_its_request(sb1):
    # one worker, six jobs: two requests of three, the scanner between two secret jobs
    jobs = [(SECRET_PROGRAM, "g('MARKER-EARLIER')"), (SCAN, "f()", FAST),
            (SECRET_PROGRAM, "g('MARKER-LATER')")] * 2
    rs = sb1.run_many(jobs)
    assert [r.status for r in rs] == ["ok"] * 6, rs
    for scan in (rs[1], rs[4]):
        assert eval(scan.value) == [], scan.value


# -- 3. a program making its own result infra ---------------------------------------------

FORGED = [
    "import os\nos.write(3, b'{\"program\": {}}\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'{\"program\": {}}\\n')\n",
    "import os\nos.write(3, b'F{\"status\": \"infra\", \"calls\": 7}\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'F[1, 2]\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'worker did not answer in time\\n')\nos._exit(0)\n",
    "raise RuntimeError('sandbox worker did not answer in time')\n",
    "import os\nos.write(3, b'[' * 100000 + b']' * 100000 + b'\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'F' + b'{\"a\": ' * 100000 + b'1' + b'}' * 100000 + b'\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'{\"status\": \"ok\", \"value\": ' + b'[' * 50000 + b'\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'\\xff\\xfe garbage\\n\\n\\n')\nos._exit(0)\n",
    # a line of tens of millions of empty arrays: refused before the host builds them
    "import os\nos.write(3, b'F{\"calls\": [' + b'[],' * 5000000 + b'[]]}\\n')\nos._exit(0)\n",
    "import os\nos.write(3, b'F{\"status\": \"ok\", \"calls\": [{\"status\": \"ok\", \"value\": [1]}], \"stdout\": 5}\\n')\nos._exit(0)\n",
]


@pytest.mark.parametrize("k", range(len(FORGED)))
def test_a_program_cannot_make_its_result_infra_or_crash_the_caller(sb1, k):
    attacked, honest = run_then_honest(sb1, (FORGED[k], ["1", "2"], FAST), n_honest=3)
    assert attacked.status == "error", attacked
    assert not attacked.infra and all(c.status != "infra" for c in attacked.calls)
    assert len(attacked.calls) == 2
    assert_honest(honest)
    assert sb1.stats["infra"] == 0


MANY_DIRS = r"""
import os
os.chdir("/tmp")
for i in range(900):
    os.mkdir("d")
    os.chdir("d")
    for j in range(40):
        open(f"f{j}", "w").close()
"""


def test_a_slow_wipe_is_not_infra(sb1):
    attacked, honest = run_then_honest(sb1, (MANY_DIRS, None, Limits(timeout=5.0)))
    assert attacked.status in ("ok", "error", "timeout"), attacked
    assert_honest(honest)
    assert sb1.stats["infra"] == 0


def test_deep_directories_do_not_crash_the_runner(sb1):
    prog = "import os\nos.chdir('/tmp')\nfor i in range(1100):\n    os.mkdir('d')\n    os.chdir('d')\n"
    attacked, honest = run_then_honest(sb1, (prog, None, FAST))
    assert attacked.status == "ok", attacked
    assert_honest(honest)
    assert sb1.run("import os\ndef f():\n    return os.listdir('/tmp')\n", "f()").value == "[]"


# -- 4. poisoning later jobs through /tmp or sys.path --------------------------------------

POISON = r"""
import os
open("/tmp/heapq.py", "w").write(
    "import os\nos.write(3, b'F{\"status\": \"ok\", \"calls\": [{\"status\": \"ok\", \"value\": \"999\"}], "
    "\"stdout\": \"\", \"stderr\": \"\"}\\n')\nos._exit(0)\n")
open("/tmp/sitecustomize.py", "w").write("raise SystemExit")
os.chmod("/tmp", 0o555)
"""


def test_a_job_cannot_poison_later_jobs_through_tmp(sb1):
    victim = ("import heapq\ndef f():\n    return heapq.nsmallest(1, [5, 3, 8])[0]\n", "f()")
    rs = sb1.run_many([(POISON, None, FAST), victim, victim, HONEST])
    assert [(r.status, r.value) for r in rs[1:]] == [("ok", "3"), ("ok", "3"), ("ok", HONEST_VALUE)], rs
    probe = "import os, sys\ndef f():\n    return oct(os.stat('/tmp').st_mode & 0o7777), os.listdir('/tmp'), '' in sys.path\n"
    mode, listing, empty_on_path = eval(sb1.run(probe, "f()").value)
    assert listing == [] and not empty_on_path
    assert mode in ("0o1777", "0o755"), mode


def test_the_tmp_root_cannot_carry_state(sb1):
    prog = ("import os\ntry:\n    os.utime('/tmp', (12345, 12345))\nexcept OSError:\n    pass\n"
            "try:\n    os.chmod('/tmp', 0o700)\nexcept OSError:\n    pass\n")
    probe = "import os\ndef f():\n    s = os.stat('/tmp')\n    return s.st_mtime == 12345, oct(s.st_mode & 0o7777)\n"
    before = sb1.run(probe, "f()").value
    rs = sb1.run_many([(prog, None, FAST), (probe, "f()")])
    assert rs[1].value == before and "True" not in rs[1].value, rs


# -- 5/9/10/11. what comes back to the caller -----------------------------------------------

def test_forged_huge_stdout_is_capped_on_the_host(sb1):
    prog = ("import os\nline = b'F{\"status\": \"ok\", \"calls\": [], \"stdout\": \"' + b'x' * (20 << 20) + b'\", \"stderr\": \"\"}\\n'\n"
            "os.write(3, line)\nos._exit(0)\n")
    lim = Limits(timeout=3.0, memory_mb=512)
    r = sb1.run(prog, None, lim)
    assert len(r.stdout) <= lim.max_output and not r.infra, (r.status, len(r.stdout))


def test_lone_surrogates_come_back(sb1):
    r = sb1.run("print('hi \\ud800')\ndef f():\n    return '\\udfff'\n", "f()")
    assert r.status == "ok" and "hi" in r.stdout
    import json
    json.dumps(r.to_dict(), ensure_ascii=False).encode("utf-8", "replace")


def test_a_value_cannot_lie_about_itself(sb1):
    prog = ("class L(int):\n    __repr__ = lambda s: '42'\n"
            "class M(MemoryError):\n    pass\n"
            "def f():\n    return L(7)\ndef g():\n    raise M('fake')\ndef h():\n    return [1, (2, 'x')]\n")
    r = sb1.run(prog, ["f()", "g()", "h()"])
    lie, mem, plain = r.calls
    assert lie.status == "ok" and not lie.plain and lie.json is None, lie
    assert (mem.status, mem.error_type) == ("error", "M"), mem
    assert plain.plain and plain.value == "[1, (2, 'x')]" and plain.json == '[1, [2, "x"]]', plain


def test_answers_are_not_held_behind_a_long_job(sb1):
    # a quick job then a slow one in the same request: the quick one's answer must not
    # wait for the slow one (the host would time out and re-run the batch)
    quick = ("def f():\n    return 1\n", "f()", Limits(timeout=0.5))
    slow = ("import time\ndef f():\n    time.sleep(6)\n    return 2\n", "f()", Limits(timeout=7.0))
    before = dict(sb1.stats)
    rs = sb1.run_many([quick, slow, quick, quick])  # two requests: [quick, slow], [quick, quick]
    assert [r.value for r in rs] == ["1", "2", "1", "1"], rs
    assert sb1.stats["workers_replaced"] == before["workers_replaced"]


# -- 6. state outside /tmp ------------------------------------------------------------------

def test_dev_and_dev_shm_hold_no_state(sb1):
    prog = ("import os\ndef f():\n    out = []\n    for p in ('/dev/shm/leak', '/dev/leak', '/dev/mqueue/leak'):\n"
            "        try:\n            open(p, 'w').write('x' * 1000)\n            out.append(p)\n"
            "        except OSError:\n            pass\n    return out\n")
    assert sb1.run(prog, "f()", FAST).value == "[]"
    r = sb1.run("def f():\n    return open('/dev/null', 'w').write('x'), len(open('/dev/zero', 'rb').read(3))\n", "f()")
    assert r.value == "(1, 3)", r


# -- 7. a process that outlives its job ------------------------------------------------------

TRACED_STOP = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def f():
    return "planted"
# write an honest-looking result, make the runner this process's tracer, close the result
# pipe and stop: to the runner's waitpid a traced stop looked like an exit, and the stopped
# process lived on into later jobs (a mailbox between them)
res = {"status": "ok", "calls": [{"status": "ok", "value": "'planted'", "json": '"planted"', "plain": True}],
       "stdout": "", "stderr": ""}
os.write(3, b"F" + json.dumps(res).encode() + b"\n")
traced = libc.ptrace(0, 0, 0, 0) == 0  # PTRACE_TRACEME
runner_cpu = int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[36])
others = sorted(os.sched_getaffinity(0) - {runner_cpu})
if others:  # off the runner's CPU: the stop lands before the runner's waitpid (the race won)
    os.sched_setaffinity(0, {others[0]})
libc.close(3)
libc.syscall(234, os.getpid(), os.getpid(), 19)  # tgkill(self, SIGSTOP)
os._exit(0)
"""

LEFTOVERS = r"""
import os
def f():
    return sorted(p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid()))
"""


def test_a_traced_stop_leaves_no_process_behind(sb1):
    for _ in range(3):
        planted = sb1.run(TRACED_STOP, "f()", FAST)
        assert planted.status in ("ok", "killed", "error"), planted
    assert sb1.run(LEFTOVERS, "f()", FAST).value == "[]"
    assert_honest(sb1.run_many([HONEST] * 3))
    assert sb1.stats["infra"] == 0


DENIED = r"""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NUMBERS = {"ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "pidfd_getfd": 438,
           "io_uring_setup": 425, "userfaultfd": 323, "perf_event_open": 298, "bpf": 321, "keyctl": 250}
def f():
    out = {}
    for name, nr in NUMBERS.items():
        ctypes.set_errno(0)
        ret = libc.syscall(nr, 0, 0, 0, 0, 0)
        out[name] = "refused" if ret == -1 and ctypes.get_errno() == 1 else f"ret {ret} errno {ctypes.get_errno()}"
    return out
"""


def test_calls_that_reach_other_processes_or_the_kernels_extras_are_refused(sb1):
    r = sb1.run(DENIED, "f()", FAST)
    assert r.status == "ok", r
    assert set(eval(r.value).values()) == {"refused"}, r.value


# -- 8. one worker's processes against another's limit ----------------------------------------

@pytest.mark.parametrize("kind", [pytest.param("docker", marks=pytest.mark.docker),
                                  pytest.param("bwrap", marks=pytest.mark.bwrap)])
def test_forks_on_one_worker_do_not_count_against_another(kind):
    # docker: a uid of its own per worker; bubblewrap: a user namespace of its own per
    # worker (RLIMIT_NPROC is counted per user namespace)
    sb = make_sandbox(kind, workers=2)
    try:
        hog = (("import os, time\nfor _ in range(30):\n    if os.fork() == 0:\n        time.sleep(2)\n"
                "        os._exit(0)\ntime.sleep(1.5)\n"), None, Limits(timeout=3.0, max_processes=40))
        victim = (("import os, time\ndef f():\n    time.sleep(0.5)\n    pid = os.fork()\n    if pid == 0:\n"
                   "        os._exit(0)\n    os.waitpid(pid, 0)\n    return 'forked'\n"), "f()",
                  Limits(timeout=3.0, max_processes=4))
        hogged, victim_result = sb.run_many([hog, victim])
        assert hogged.status == "ok", hogged
        assert (victim_result.status, victim_result.value) == ("ok", "'forked'"), victim_result
    finally:
        sb.close()


@pytest.mark.parametrize("line, why", [
    (b"F{\"calls\": [" + b"[]," * 200000 + b"[]]}", "more objects"),
    (b"[" + b"{}," * 200000 + b"{}]", "more objects"),
    (b"F{\"calls\": [" + b"1.5," * 2000000 + b"1]}", "more objects, arrays or items"),  # one array, 2M numbers
    (b'F{"x": "' + b'\\"' * 2000000, "not JSON"),  # a string that never closes: one pass, not one per quote
], ids=["arrays", "objects", "numbers", "unclosed-string"])
def test_a_result_line_of_many_items_is_refused_before_it_is_parsed(monkeypatch, line, why):
    """The host parses a job's bytes in its own process: a line of millions of empty arrays,
    objects or numbers (within the size cap) made `json.loads` build them all (1.8 GB
    measured for five calls). Counted first (outside strings, in one pass), it is refused
    unparsed; brackets inside an honest result's strings do not count."""
    from arena.sandbox import result

    monkeypatch.setattr(result.json, "loads", lambda *a, **k: pytest.fail("parsed"))
    out = result.parse_output(line + b"\n", 2, False, False, 0, 65536, 1 << 20)
    assert out["error_type"] == "MalformedResult" and why in out["error"], out["error"]
    monkeypatch.undo()
    honest = {"status": "ok", "calls": [{"status": "ok", "value": "[[1], {2: [3]}]" * 1000, "json": None,
                                         "plain": True}] * 2, "stdout": "[{\"", "stderr": ""}
    out = result.parse_output(b"F" + json.dumps(honest).encode() + b"\n", 2, False, False, 0, 65536, 1 << 20)
    assert out["status"] == "ok" and out["calls"][0]["value"].startswith("[[1], {2: [3]}]")


def test_a_result_of_many_lines_is_refused_before_any_is_parsed(monkeypatch):
    """26 MB of tiny `{"program": ...}` lines (within the size cap) cost the host 3.6 s of
    CPU to parse, one line at a time. An honest result has at most `ncalls + 1` lines (2): more
    is refused first; a second program failure line too."""
    from arena.sandbox import result

    monkeypatch.setattr(result.json, "loads", lambda *a, **k: pytest.fail("parsed"))
    out = result.parse_output(b'{"program": {"status": "error"}}\n' * 5, 2, False, False, 0, 65536, 1 << 20)
    assert out["error_type"] == "MalformedResult" and "more lines than a result has" in out["error"], out
    monkeypatch.undo()
    out = result.parse_output(b'{"program": {"status": "error"}}\n' * 2, 2, False, False, 0, 65536, 1 << 20)
    assert out["error_type"] == "MalformedResult" and "after another line" in out["error"], out


FLOOD = """
import os
def f(x):
    try:
        while True:
            os.write(3, b'{"program": {"status": "error"}}\\n' * 4096)
    except OSError:
        pass
    os._exit(0)
"""


def test_a_flood_of_result_lines_is_one_malformed_result(sb1):
    attacked, honest = run_then_honest(sb1, (FLOOD, ["f(0)"], FAST))
    assert attacked.error_type == "MalformedResult" and "more lines" in attacked.error, attacked
    assert not attacked.infra
    assert_honest(honest)


FD_SENDER = """
import os, fcntl
def f(secret):
    fcntl.fcntl(0, fcntl.F_SETFL, (os.O_NONBLOCK if secret & 1 else 0) | (os.O_APPEND if secret & 2 else 0))
    fcntl.fcntl(0, 10, secret >> 2)  # F_SETSIG
    return secret
"""
FD_RECEIVER = """
import os, fcntl
def f():
    flags = fcntl.fcntl(1, fcntl.F_GETFL)
    return (1 if flags & os.O_NONBLOCK else 0) | (2 if flags & os.O_APPEND else 0) | (fcntl.fcntl(2, 11) << 2)
"""


def test_a_job_cannot_signal_a_later_one_through_its_dev_null(sb1):
    """Fds 0-2 of every job were the runner's one open /dev/null: its flags and F_SETSIG
    number, set by one job, were read by the next (201 sent, 201 read). Each job now opens
    its own."""
    for secret in (201, 77):
        assert sb1.run(FD_SENDER, f"f({secret})").value == str(secret)
        assert sb1.run(FD_RECEIVER, "f()").value == "0"


FRAME_SPY = """
import sys
def f():
    frame, seen = sys._getframe(), []
    while frame is not None:
        runner = frame.f_locals.get("self")
        if runner is not None and hasattr(runner, "pending"):
            seen.append((len(runner.pending), runner.off))
        frame = frame.f_back
    return seen
"""


def test_a_job_does_not_inherit_the_meta_lines_of_earlier_jobs(sb1):
    """The runner's answers not yet sent (a meta line per earlier job of the request: size,
    duration, exit status) were in the child's copy of the runner, a frame walk away."""
    rs = sb1.run_many([(SECRET_PROGRAM, "g('x' * 100)"), (FRAME_SPY, "f()")] * 2)  # two requests of two
    for spy in (rs[1], rs[3]):
        assert spy.status == "ok" and spy.value.startswith("[(0, 0)"), spy
