"""Sandbox workers: one runner (`arena.sandbox.runner`) each, in a container or a process.

A worker owns a byte channel to its runner. The host writes one request (a header, then
length-prefixed job frames) and reads back per job a meta line and the bytes the job
wrote (protocol: `arena.sandbox.runner`). Two kinds:

- `DockerWorker`: a long-lived container of the sandbox image (``--network none``,
  read-only root, tmpfs /tmp, memory/pids/CPU cgroup limits, a non-root user, all
  capabilities dropped, ``no-new-privileges``, no mounts, IPC namespace without /dev/shm),
  created with stdin open and attached *before* it starts; the runner is PID 1, so the
  programs it forks cannot signal it. The stream is Docker's multiplexed attach protocol
  (8-byte frame headers); closing it closes the runner's stdin, so the runner exits and the
  container (``auto_remove``) disappears even if the host dies without cleaning up.
- `ProcessWorker`: the runner under ``bwrap --unshare-all --die-with-parent --as-pid-1``
  with read-only binds of the interpreter only and a tmpfs /tmp, as an unprivileged user
  (root drops to nobody first, so RLIMIT_NPROC applies); or, only with
  ``allow_unsafe=True``, a plain subprocess with rlimits and the runner's seccomp filter
  (no isolation: the program can read what that user can, and signal its processes).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from arena.sandbox.channel import BufferedReader
from arena.sandbox.config import SandboxConfig
from arena.sandbox.runner import encode_job
from arena.sandbox.seccomp import filter_program

log = logging.getLogger("arena.sandbox")

LABEL = "arena.sandbox"
"""Every container the sandbox creates carries ``arena.sandbox=1``; `clean` removes them."""
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
    """A runner behind a byte channel; subclasses provide `_send`, `_recv` and `_fileno`."""

    kind = "worker"

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._buf = bytearray()
        self._log: collections.deque[bytes] = collections.deque(maxlen=64)
        self.alive = False
        self.jobs_done = 0
        self.info: dict[str, Any] = {}
        self.cpu: int | None = None  # the core this worker is pinned to (None: not pinned)

    # channel primitives
    def _send(self, data: bytes) -> None: ...
    def _recv(self) -> bytes | None: ...  # b"" at EOF, None for "nothing yet"; when readable
    def _fileno(self) -> int: ...
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
            r, _, _ = select.select([self._fileno()], [], [], remaining)
            if not r:
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
        if self._buf:
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
        data = b"".join(parts)
        try:
            self._send(data)
        except OSError as e:
            raise WorkerError(f"{self.kind} stdin closed: {e}") from None

    def stderr_tail(self) -> str:
        return b"".join(self._log).decode("utf-8", "replace")[-2000:]

    def close(self) -> None:
        self.alive = False


# ---------------------------------------------------------------------------------------
# process backend

def system_python(config: SandboxConfig) -> str:
    if config.python:
        return config.python
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _unprivileged() -> dict:
    """Popen arguments that run the child as nobody when we are root (so RLIMIT_NPROC
    applies and the sandbox user owns nothing), done in C by _posixsubprocess: no
    preexec_fn, which is unsafe in a threaded host."""
    if os.geteuid() != 0:
        return {}
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def bwrap_status() -> tuple[bool, str]:
    """(works, reason): whether ``bwrap --unshare-all`` runs a command here."""
    exe = shutil.which("bwrap")
    if not exe:
        return False, "bwrap not found (apt-get install bubblewrap)"
    fd = _seccomp_fd()
    cmd = [exe, *_bwrap_args(system_python(SandboxConfig()), 16, fd), "/usr/bin/env", "true"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=20, check=False,
                           pass_fds=() if fd is None else (fd,), **_unprivileged())
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to run: {e}"
    finally:
        if fd is not None:
            os.close(fd)
    if p.returncode != 0:
        return False, f"bwrap --unshare-all fails here: {p.stderr.decode(errors='replace').strip()[:300]}"
    extra = "with a seccomp filter" if fd is not None else "no seccomp filter on this architecture"
    return True, f"{exe} works (user namespaces available; {extra})"


def _seccomp_fd() -> int | None:
    """A pipe's read end holding the seccomp filter (`arena.sandbox.seccomp`) for
    ``bwrap --seccomp``, or None where there is no filter for this architecture."""
    prog = filter_program()
    if prog is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, prog)  # about a kilobyte: fits in the pipe
    finally:
        os.close(w)
    return r


def _bwrap_args(python: str, tmpfs_mb: int, seccomp_fd: int | None = None) -> list[str]:
    args = ["--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1",
            "--cap-drop", "ALL", "--hostname", "sandbox", "--clearenv"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    # Only what the interpreter needs: /usr (and the /lib* /bin symlinks or dirs), plus the
    # interpreter's own prefix when it lives elsewhere. No /home, /root, /etc, project dir.
    for d in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if os.path.islink(d):
            args += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            args += ["--ro-bind", d, d]
    real = os.path.realpath(python)
    prefix = str(Path(real).parent.parent)
    if not real.startswith(("/usr/", "/lib", "/bin/")):
        args += ["--ro-bind", prefix, prefix]
    # /dev read-only (its tmpfs has no size limit and is never wiped: no /dev/shm either)
    args += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--size", str(tmpfs_mb << 20), "--tmpfs", "/tmp", "--remount-ro", "/",
             "--chdir", "/tmp"]
    return args


class ProcessWorker(Worker):
    """The runner as a local subprocess, under bubblewrap when ``use_bwrap``."""

    def __init__(self, config: SandboxConfig, use_bwrap: bool, cpu: int | None = None) -> None:
        super().__init__(config)
        self.kind = "bwrap worker" if use_bwrap else "process worker"
        self.cpu = cpu
        python = system_python(config)
        env = {"PYTHONHASHSEED": str(config.hash_seed), "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        runner = ["-S", "-s", "-c", runner_source(), "--workdir", "/tmp", "--scratch", "/tmp"]
        if config.preload:
            runner += ["--preload", ",".join(config.preload)]
        if cpu is not None:  # the runner pins itself; its children inherit the affinity
            runner += ["--cpu", str(cpu)]
        root = os.geteuid() == 0
        self._tmp: str | None = None
        seccomp_fd = _seccomp_fd() if use_bwrap else None
        if use_bwrap:
            cmd = [shutil.which("bwrap") or "bwrap", *_bwrap_args(python, config.tmpfs_mb, seccomp_fd)]
            for k, v in env.items():
                cmd += ["--setenv", k, v]
            cmd += [python, *runner]
        else:
            self._tmp = tempfile.mkdtemp(prefix="arena-sandbox-")
            if root:
                os.chown(self._tmp, NOBODY, NOBODY)
            runner[runner.index("/tmp")] = self._tmp
            runner[runner.index("/tmp")] = self._tmp
            cmd = [python, *runner]
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, cwd=self._tmp or "/", start_new_session=True, close_fds=True,
                pass_fds=() if seccomp_fd is None else (seccomp_fd,), bufsize=0,
                **_unprivileged())
        finally:
            if seccomp_fd is not None:
                os.close(seccomp_fd)
        os.set_blocking(self.proc.stderr.fileno(), False)

    def _send(self, data: bytes) -> None:
        self.proc.stdin.write(data)

    def _recv(self) -> bytes:
        return os.read(self.proc.stdout.fileno(), 1 << 16)

    def _fileno(self) -> int:
        return self.proc.stdout.fileno()

    def stderr_tail(self) -> str:
        try:
            data = os.read(self.proc.stderr.fileno(), 1 << 16)
            if data:
                self._log.append(data)
        except (BlockingIOError, OSError, ValueError):
            pass
        return super().stderr_tail()

    def close(self) -> None:
        super().close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)  # the runner started its own session
            except (ProcessLookupError, PermissionError):
                pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# docker backend

_client_lock = threading.Lock()
_clients: dict[str | None, Any] = {}


def docker_client(url: str | None = None, timeout: int = 60):
    """A cached docker SDK client (raises WorkerError with the fix when unavailable)."""
    with _client_lock:
        if url in _clients:
            return _clients[url]
        try:
            import docker
        except ImportError:
            raise WorkerError("the docker Python package is missing: pip install 'docker>=7.1'") from None
        try:
            client = docker.DockerClient(base_url=url, timeout=timeout) if url else docker.from_env(timeout=timeout)
            client.ping()
        except Exception as e:  # noqa: BLE001
            raise WorkerError(f"no Docker engine answers ({type(e).__name__}): start one "
                              "(systemctl start docker, or dockerd &)") from None
        _clients[url] = client
        return client


def docker_status(image: str, url: str | None = None) -> tuple[bool, str]:
    """(works, reason): whether the engine answers and the sandbox image exists."""
    try:
        client = docker_client(url, timeout=10)
    except WorkerError as e:
        return False, str(e)
    try:
        client.images.get(image)
    except Exception:  # noqa: BLE001
        return False, f"image {image} is missing: run 'arena sandbox build'"
    return True, f"engine answers and image {image} exists"


def docker_cpus(url: str | None = None) -> int:
    """Cores of the Docker engine's machine (``NCPU``), for pinning containers."""
    try:
        return int(docker_client(url).info().get("NCPU") or 0) or (os.cpu_count() or 1)
    except Exception:  # noqa: BLE001
        return os.cpu_count() or 1


NO_IPC_SYSCTLS = {"kernel.shmmni": "0", "kernel.msgmni": "0", "kernel.sem": "0 0 0 0",
                  "fs.mqueue.queues_max": "0"}
"""The container's own IPC namespace may hold no System V IPC object and no POSIX message
queue: they outlive the process that made them, so one job could leave data for the next
(Docker's seccomp profile allows the calls; these namespaced sysctls make them fail)."""


UID_BASE = 200_000
_uid_lock = threading.Lock()
_uids_given: set[int] = set()


def _fresh_uid() -> int:
    """A uid no other worker of this process uses (random: other processes pick theirs
    from 2**20 values too), so RLIMIT_NPROC counts one worker's processes only."""
    import secrets

    with _uid_lock:
        while True:
            uid = UID_BASE + secrets.randbelow(1 << 20)
            if uid not in _uids_given:
                _uids_given.add(uid)
                return uid


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot, /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_labels() -> dict[str, str]:
    """Labels naming the process that owns a container: host name, pid and start time."""
    return {f"{LABEL}.host": socket.gethostname(), f"{LABEL}.host_pid": str(os.getpid()),
            f"{LABEL}.host_start": _start_time(os.getpid()) or ""}


def owner_alive(labels: dict[str, str]) -> bool:
    """True unless the container's owner process is known to be gone: same host, and no
    process with that pid and start time. Containers of another host count as alive."""
    host = labels.get(f"{LABEL}.host")
    if host is not None and host != socket.gethostname():
        return True
    try:
        pid = int(labels.get(f"{LABEL}.host_pid", ""))
    except ValueError:
        return False  # no owner recorded: a leftover
    started = _start_time(pid)
    if started is None:
        return False
    return not labels.get(f"{LABEL}.host_start") or labels[f"{LABEL}.host_start"] == started


class DockerWorker(Worker):
    """One long-lived sandbox container running the runner as PID 1."""

    kind = "container"

    def __init__(self, config: SandboxConfig, session: str, cpu: int | None = None) -> None:
        super().__init__(config)
        self.cpu = cpu
        client = docker_client(config.docker_url)
        cmd = ["python3", "-S", "-s", "-c", runner_source(), "--workdir", "/tmp", "--scratch", "/tmp"]
        if config.preload:
            cmd += ["--preload", ",".join(config.preload)]
        mem = f"{config.container_memory_mb}m"
        api = client.api
        host_config = api.create_host_config(
            network_mode="none", read_only=True, ipc_mode="none", auto_remove=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={config.tmpfs_mb}m,mode=1777"},
            mem_limit=mem, memswap_limit=mem, pids_limit=config.container_pids,
            nano_cpus=int(config.cpus_per_worker * 1e9) or None, cap_drop=["ALL"],
            cpuset_cpus=None if cpu is None else str(cpu), sysctls=NO_IPC_SYSCTLS,
            security_opt=["no-new-privileges"], init=False)
        self.name = f"arena-sandbox-{session}-{uuid.uuid4().hex[:8]}"
        self.user = config.user or f"{_fresh_uid()}:10001"
        cfg = api.create_container_config(
            config.image, cmd, hostname="sandbox", user=self.user, detach=True,
            stdin_open=True, tty=False, network_disabled=True, working_dir="/tmp",
            host_config=host_config,
            labels={LABEL: "1", f"{LABEL}.session": session, **owner_labels()},
            environment={"PYTHONHASHSEED": str(config.hash_seed), "PYTHONDONTWRITEBYTECODE": "1",
                         "LANG": "C.UTF-8"})
        cfg["StdinOnce"] = True  # closing our attach stream closes the runner's stdin
        created = api.create_container_from_config(cfg, self.name)
        self.id = created["Id"]
        self._api = api
        try:
            sock = api.attach_socket(self.id, params={
                "stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._sock: socket.socket = getattr(sock, "_sock", sock)
            self._sock.setblocking(True)
            api.start(self.id)
        except Exception:
            self._remove()
            raise
        self._raw = bytearray()

    def _send(self, data: bytes) -> None:
        self._sock.sendall(data)

    def _fileno(self) -> int:
        return self._sock.fileno()

    def _recv(self) -> bytes | None:
        """Read from the socket and demultiplex: stdout payload is returned, stderr kept."""
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            return b""
        self._raw += chunk
        out = bytearray()
        while len(self._raw) >= 8:
            stream, size = self._raw[0], struct.unpack(">I", self._raw[4:8])[0]
            if len(self._raw) < 8 + size:
                break
            payload = bytes(self._raw[8:8 + size])
            del self._raw[:8 + size]
            if stream == 1:
                out += payload
            else:
                self._log.append(payload)
        return bytes(out) if out else None

    def _remove(self) -> None:
        try:
            self._api.remove_container(self.id, force=True)
        except Exception as e:  # noqa: BLE001 - already gone (auto_remove) is fine
            if "404" not in str(e) and "No such container" not in str(e) and "in progress" not in str(e):
                log.warning("could not remove sandbox container %s: %s", self.name, e)

    def close(self) -> None:
        super().close()
        try:
            self._sock.close()
        except OSError:
            pass
        self._remove()
