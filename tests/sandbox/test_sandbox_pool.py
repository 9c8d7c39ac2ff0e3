"""Pool behaviour: dead workers are replaced, infra failures are reported as such, the
plain backend is refused unless allowed (and warns then), config validation, backend
selection, cleanup."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings

import pytest
from _sandbox_support import (
    docker_ok,
    make_sandbox,
    require_bwrap,
    require_docker,
    runner_processes,
)
from arena.sandbox import (
    Limits,
    Sandbox,
    SandboxConfig,
    SandboxUnavailable,
    WeakIsolationWarning,
    clean,
    list_containers,
    resolve_backend,
)
from arena.sandbox.docker_worker import docker_client

ADD = "def f(a, b):\n    return a + b\n"


def test_config_validation():
    with pytest.raises(ValueError, match="timeout"):
        Limits(timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=-1)
    with pytest.raises(ValueError, match="backend"):
        SandboxConfig(backend="vm")
    with pytest.raises(ValueError, match="workers"):
        SandboxConfig(workers=0)
    assert SandboxConfig(limits={"timeout": 3}).limits == Limits(timeout=3)
    assert Limits().to_wire()["memory_mb"] == 256


def test_bad_job_input(plain_sandbox):
    with pytest.raises(TypeError, match="program"):
        plain_sandbox.run_many([(123, "f()")])
    with pytest.raises(TypeError, match="call"):
        plain_sandbox.run(ADD, [1])


def _no_isolating_backend(monkeypatch):
    """As on a machine with neither Docker nor bubblewrap."""
    import arena.sandbox.pool as pool_module

    monkeypatch.setattr(pool_module, "docker_status", lambda *a, **k: (False, "no engine (test)"))
    monkeypatch.setattr(pool_module, "bwrap_status", lambda: (False, "bwrap not found (test)"))


@pytest.mark.parametrize("backend, kw", [("auto", {}), ("process", {}), ("process", {"use_bwrap": False})])
def test_plain_backend_is_refused_without_allow_unsafe(monkeypatch, backend, kw):
    # Model-written code never runs unisolated by default: neither auto nor process falls
    # back to plain subprocesses, and asking for them needs the explicit opt-in.
    _no_isolating_backend(monkeypatch)
    before = set(runner_processes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SandboxUnavailable) as info:
            Sandbox(backend, SandboxConfig(workers=1, **kw))
    msg = str(info.value)
    assert "\n" not in msg and "allow_unsafe=True" in msg, msg
    if "use_bwrap" not in kw:
        assert "bubblewrap" in msg and "docker" in msg.lower(), msg
    assert set(runner_processes()) == before  # nothing started


@pytest.mark.parametrize("backend", ["auto", "process"])
def test_allow_unsafe_opts_in_to_the_plain_backend(monkeypatch, backend):
    _no_isolating_backend(monkeypatch)
    assert resolve_backend(SandboxConfig(backend=backend, allow_unsafe=True))[:2] == ("process", False)
    with pytest.warns(WeakIsolationWarning, match="allow_unsafe"):
        sb = Sandbox(backend, SandboxConfig(workers=1, allow_unsafe=True))
    with sb:
        assert sb.label == "process" and sb.run(ADD, "f(2, 3)").value == "5"


def test_allow_unsafe_does_not_replace_an_isolating_backend():
    require_bwrap()
    backend, use_bwrap, _ = resolve_backend(SandboxConfig(backend="process", allow_unsafe=True))
    assert (backend, use_bwrap) == ("process", True)


def test_plain_fallback_warns_and_runs():
    with pytest.warns(WeakIsolationWarning, match="isolation"):
        sb = Sandbox("process", SandboxConfig(use_bwrap=False, allow_unsafe=True, workers=1))
    with sb:
        assert sb.label == "process"
        r = sb.run(ADD, ["f(2, 3)"])
        assert r.status == "ok" and r.value == "5"
        r = sb.run("while True:\n    pass\n", None, Limits(timeout=0.5))
        assert r.status == "timeout"
        r = sb.run("x = bytearray(8 * 1024 ** 3)\n")
        assert r.status == "memory"
        r = sb.run("import os\nos.fork()\n")
        assert (r.status, r.error_type) == ("error", "BlockingIOError")


def test_plain_fallback_runner_cannot_be_killed_by_program(plain_sandbox):
    # Without a PID namespace the runner is an ordinary process of the same uid: the
    # per-job seccomp filter refuses signals to it (and to process groups).
    r = plain_sandbox.run("import os\nos.kill(os.getppid(), 9)\n")
    assert (r.status, r.error_type) == ("error", "PermissionError") and not r.infra
    r = plain_sandbox.run("import os\nos.kill(-1, 9)\n")
    assert (r.status, r.error_type) == ("error", "PermissionError") and not r.infra
    # nor through a file that signals its owner when ready (SIGIO, or F_SETSIG's SIGKILL):
    # the runner died of a write to a pipe whose owner it was made
    for setup in SIGNAL_OWNERS:
        r = plain_sandbox.run(f"import fcntl, os, signal, socket, struct\n{setup}\n")
        assert (r.status, r.error_type) == ("error", "PermissionError") and not r.infra, (setup, r)
    assert plain_sandbox.healthy() and plain_sandbox.stats["workers_replaced"] == 0


SIGNAL_OWNERS = [
    ("r, w = os.pipe()\nfcntl.fcntl(r, 10, signal.SIGKILL)\n"
     "fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)\n"
     "fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())\nos.write(w, b'x')"),
    "r, w = os.pipe()\nfcntl.fcntl(r, 15, struct.pack('ii', 1, os.getppid()))",  # F_SETOWN_EX, F_OWNER_PID
    "a, b = socket.socketpair()\nfcntl.ioctl(a, 0x8901, struct.pack('i', os.getppid()))",  # FIOSETOWN
    "a, b = socket.socketpair()\nfcntl.ioctl(a, 0x8902, struct.pack('i', os.getppid()))",  # SIOCSPGRP
]


def test_auto_backend_prefers_docker():
    backend, _, reason = resolve_backend(SandboxConfig())
    if docker_ok()[0]:
        assert backend == "docker"
    else:
        assert backend == "process" and "docker" in reason


def test_docker_unavailable_is_a_clear_error():
    with pytest.raises(SandboxUnavailable, match="arena sandbox build|start_docker"):
        Sandbox("docker", SandboxConfig(image="arena-sandbox:no-such-tag"))


@pytest.mark.docker
def test_dead_container_is_replaced(docker_sandbox):
    sb = docker_sandbox
    assert sb.healthy()
    client = docker_client()
    started = sb.stats["workers_started"]
    for c in client.containers.list(ignore_removed=True, filters={"label": f"arena.sandbox.session={sb.session}"}):
        c.kill()
    rs = sb.run_many([(ADD, f"f({i}, 1)") for i in range(10)])
    assert [r.value for r in rs] == [str(i + 1) for i in range(10)]
    assert sb.stats["workers_started"] > started


@pytest.mark.docker
def test_container_killed_mid_job_is_retried(docker_sandbox):
    sb = docker_sandbox
    client = docker_client()
    box = {}

    def run():
        box["r"] = sb.run("import time\ntime.sleep(0.8)\ndef f():\n    return 'slept'\n", "f()",
                          Limits(timeout=1.5))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    idle = list(sb._idle.queue)
    busy = [w for w in list(sb._workers) if w not in idle]
    assert len(busy) == 1
    client.containers.get(busy[0].id).kill()
    t.join(10)
    assert box["r"].status == "ok" and box["r"].value == "'slept'"


@pytest.mark.docker
def test_infra_when_workers_cannot_start():
    require_docker()
    sb = make_sandbox("docker", workers=1)
    try:
        assert sb.healthy()
        sb.config.image = "arena-sandbox:no-such-tag"  # new workers will fail to start
        for c in docker_client().containers.list(ignore_removed=True, filters={"label": f"arena.sandbox.session={sb.session}"}):
            c.kill()
        r = sb.run(ADD, "f(1, 2)")
        assert r.status == "infra" and r.infra and r.calls[0].status == "infra"
        assert "could not start" in r.error or "brought" not in r.error
    finally:
        sb.close()


@pytest.mark.docker
def test_containers_are_locked_down(docker_sandbox):
    sb = docker_sandbox
    sb.healthy()
    client = docker_client()
    cs = client.containers.list(ignore_removed=True, filters={"label": f"arena.sandbox.session={sb.session}"})
    assert cs
    hc = cs[0].attrs["HostConfig"]
    assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and "no-new-privileges" in hc["SecurityOpt"]
    assert hc["Memory"] > 0 and hc["PidsLimit"] > 0 and hc["NanoCpus"] > 0
    assert not hc.get("Binds") and not cs[0].attrs.get("Mounts")
    assert hc["Sysctls"]["kernel.shmmni"] == "0" and hc["Sysctls"]["fs.mqueue.queues_max"] == "0"
    assert len(hc["CpusetCpus"].split(",")) == 1  # pinned to one core
    assert cs[0].attrs["Config"]["User"] not in ("", "0", "root")
    r = sb.run("import os\ndef f():\n    return os.getuid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n", "f()")
    uid, capeff = eval(r.value)
    assert uid != 0 and int(capeff, 16) == 0


@pytest.mark.docker
def test_close_removes_containers():
    require_docker()
    sb = make_sandbox("docker", workers=2)
    session = sb.session
    assert sb.healthy()
    client = docker_client()
    assert client.containers.list(ignore_removed=True, filters={"label": f"arena.sandbox.session={session}"})
    sb.close()
    sb.close()  # idempotent
    assert not client.containers.list(all=True, ignore_removed=True, filters={"label": f"arena.sandbox.session={session}"})
    with pytest.raises(RuntimeError, match="closed"):
        sb.run(ADD, "f(1, 2)")


@pytest.mark.docker
def test_clean_removes_leftovers():
    require_docker()
    client = docker_client()
    from arena.sandbox._version import DEFAULT_IMAGE
    c = client.containers.run(DEFAULT_IMAGE, ["python3", "-c", "import time; time.sleep(60)"],
                              detach=True, labels={"arena.sandbox": "1"}, network_mode="none")
    try:
        assert c.name in list_containers()
        assert c.name in clean()
        assert c.name not in list_containers()
    finally:
        with contextlib.suppress(Exception):  # removed by clean()
            c.remove(force=True)


def test_bwrap_workers_die_with_the_pool():
    sb = make_sandbox("bwrap", workers=2)
    assert sb.healthy()
    pids = {w.proc.pid for w in sb._workers}
    assert len(pids) == 2 and pids <= set(runner_processes())
    sb.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pids & set(runner_processes()):
        time.sleep(0.1)
    assert not pids & set(runner_processes())


def test_context_manager_and_warning_free_bwrap():
    require_bwrap()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # bwrap isolation: no WeakIsolationWarning
        sb = Sandbox("process", SandboxConfig(use_bwrap=True, workers=1))
    with sb:
        assert sb.run(ADD, "f(1, 1)").value == "2"


@pytest.mark.parametrize("kind", [pytest.param("docker", marks=pytest.mark.docker),
                                  pytest.param("bwrap", marks=pytest.mark.bwrap)])
def test_host_killed_leaves_nothing(kind):
    """kill -9 of the host process: containers (stdin closes, runner exits, auto-remove)
    and bubblewrap sandboxes (die-with-parent) disappear by themselves."""
    import subprocess
    import sys

    if kind == "docker":
        require_docker()
    else:
        require_bwrap()
    backend = "docker" if kind == "docker" else "process"
    code = ("import os\nfrom arena.sandbox import Sandbox\n"
            f"sb = Sandbox({backend!r}, workers=2).start()\n"
            "print(sb.session, sb.run('def f():\\n    return 1\\n', 'f()').status, flush=True)\n"
            "os.kill(os.getpid(), 9)\n")
    before = set(runner_processes())
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    words = p.stdout.split()
    assert len(words) == 2 and words[1] == "ok" and p.returncode == -9, \
        f"host process: rc={p.returncode} stdout={p.stdout!r} stderr={p.stderr[-2000:]!r}"
    session = words[0]
    deadline = time.monotonic() + 60  # generous: a busy Docker engine removes containers slowly
    while time.monotonic() < deadline:
        left = (docker_client().containers.list(  # ignore_removed: auto-remove races the listing
                    all=True, ignore_removed=True, filters={"label": f"arena.sandbox.session={session}"})
                if kind == "docker" else [])
        new_runners = set(runner_processes()) - before  # runners and the compile helper
        if not left and not new_runners:
            return
        time.sleep(0.3)
    pytest.fail(f"left behind: containers {left}, runners {new_runners}")


@pytest.mark.docker
def test_pinning_to_a_missing_core_falls_back_to_unpinned():
    # An engine whose cgroup does not offer the core (here: core 63 of 64 claimed cores)
    # refuses to start the container; the pool logs it and runs its workers unpinned.
    require_docker()
    sb = Sandbox(config=SandboxConfig(backend="docker", workers=1, pin_cpus=True))
    try:
        sb._cpus = [63]  # as if the engine had 64 cores
        r = sb.run(ADD, "f(2, 3)")
        assert r.value == "5"
        assert [w.cpu for w in sb._workers] == [None]
    finally:
        sb.close()


@pytest.mark.parametrize("kind", [pytest.param("docker", marks=pytest.mark.docker),
                                  pytest.param("bwrap", marks=pytest.mark.bwrap)])
def test_a_batch_larger_than_the_pipes_does_not_deadlock(kind):
    """The host once wrote a whole batch before reading any answer: a job printing 64 KB,
    then jobs that each run > 20 ms (the runner sends earlier answers meanwhile) and more
    than 64 KB of programs still to send, filled both pipes and `run_many` never returned
    (the worker was not found hung). The request is now written as the runner takes it."""
    noisy = "def f(x):\n    print('x' * 70000)\n    return x\n"
    table = ", ".join(str(k) for k in range(1500))  # ~7 KB of source each

    def slow(i: int) -> str:
        return f"T = [{table}]\ndef f(x):\n    s = 0\n    for _ in range(400_000): s += 1\n    return s + len(T) + x\n"

    jobs = [(noisy, ["f(0)"])] + [(slow(i), [f"f({i})"]) for i in range(30)]
    sandbox = make_sandbox(kind, workers=1)
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(sandbox.run_many(jobs, Limits(timeout=10, max_output=1 << 20))), daemon=True)
    thread.start()
    thread.join(60)
    hung = thread.is_alive()
    if hung:  # unblock the host's write (the runner goes) so that the pool can close
        for w in list(sandbox._workers):
            w.close()
    sandbox.close()
    assert not hung, "run_many deadlocked"
    assert [r.status for r in out] == ["ok"] * len(jobs)
    assert [r.value for r in out[1:]] == [str(400_000 + 1500 + i) for i in range(30)]


def test_answers_sent_before_a_runner_stopped_reading_are_still_read():
    """A runner that retires (or dies) while the host still writes its request: the write
    fails with EPIPE, and the answers and the retire line already in the pipe were dropped
    for a "stdin closed" error (the pool then blamed the next job). A real process stands in
    for the runner: it answers, says retire, exits without reading."""
    import os
    import subprocess
    import sys

    from arena.sandbox.workers import Worker, WorkerError

    class Exiting(Worker):
        kind = "test worker"

        def __init__(self) -> None:
            super().__init__(SandboxConfig())
            self.proc = subprocess.Popen([sys.executable, "-c", "import os; os.write(1, b'answer\\n{\"retire\": 1}\\n')"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
            os.set_blocking(self.proc.stdin.fileno(), False)

        def _send_some(self, data):
            return os.write(self.proc.stdin.fileno(), data)

        def _send_fileno(self):
            return self.proc.stdin.fileno()

        def _recv(self):
            return os.read(self.proc.stdout.fileno(), 1 << 16)

        def _fileno(self):
            return self.proc.stdout.fileno()

    w = Exiting()
    try:
        w._send(b"x" * (1 << 20))  # more than the pipe holds
        w.proc.wait(10)
        assert w.readline(time.monotonic() + 5) == b"answer"
        assert w.readline(time.monotonic() + 5) == b'{"retire": 1}'
        with pytest.raises(WorkerError, match="runner exited"):
            w.readline(time.monotonic() + 5)
        assert not w.check_alive()
    finally:
        w.proc.stdin.close()
        w.proc.stdout.close()


def test_jobs_run_together_go_to_one_runner_in_order(plain_sandbox):
    """`together=True`: one request to one worker (AZR's spacer then the job it checks)."""
    program = "import os\ndef f():\n    return os.getppid()\n"
    together = plain_sandbox.run_many([(program, "f()")] * 6, together=True)
    assert len({r.value for r in together}) == 1 and all(r.status == "ok" for r in together), together
