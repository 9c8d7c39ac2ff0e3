"""The Docker kind of sandbox worker (shared protocol: `arena.sandbox.workers`), and the
housekeeping of its containers (`clean`, `list_containers`).

- `DockerWorker`: a long-lived container of the sandbox image (``--network none``,
  read-only root, tmpfs /tmp, memory/pids/CPU cgroup limits, a non-root user, all
  capabilities dropped, ``no-new-privileges``, no mounts, IPC namespace without /dev/shm),
  created with stdin open and attached *before* it starts; the runner is PID 1, so the
  programs it forks cannot signal it. The stream is Docker's multiplexed attach protocol
  (8-byte frame headers); closing it closes the runner's stdin, so the runner exits and the
  container (``auto_remove``) disappears even if the host dies without cleaning up.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import uuid
from typing import Any

from arena.sandbox.config import SandboxConfig
from arena.sandbox.workers import LABEL, Worker, WorkerError, runner_source

log = logging.getLogger("arena.sandbox")

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
            raise WorkerError(f"no Docker engine answers ({type(e).__name__}): start one with "
                              "`bash scripts/start_docker.sh` (or systemctl start docker)") from None
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

    def _send_some(self, data: memoryview) -> int:
        try:
            return self._sock.send(data, socket.MSG_DONTWAIT)
        except ValueError:  # a TLS socket takes no flags: written whole, blocking (`docker_url` over TLS)
            self._sock.sendall(data)
            return len(data)

    def _send_fileno(self) -> int:
        return self._sock.fileno()

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


def clean(docker_url: str | None = None, everything: bool = False) -> list[str]:
    """Remove the containers labelled ``arena.sandbox=1`` whose owner process is gone
    (leftovers of killed runs); with ``everything``, those of live pools too.

    Returns the names removed. Raises WorkerError when no engine answers."""
    client = docker_client(docker_url)
    removed = []
    for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL}=1"}):
        if not everything and owner_alive(c.labels or {}):
            continue
        try:
            c.remove(force=True)
            removed.append(c.name)
        except Exception as e:  # noqa: BLE001
            if "404" not in str(e) and "No such container" not in str(e):
                log.warning("could not remove %s: %s", c.name, e)
    return removed


def list_containers(docker_url: str | None = None) -> list[str]:
    """Names of the containers labelled ``arena.sandbox=1`` (running or not)."""
    client = docker_client(docker_url)
    return [c.name for c in client.containers.list(all=True, ignore_removed=True, filters={"label": f"{LABEL}=1"})]
