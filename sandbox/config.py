"""Configuration of the sandbox: per-job `Limits` and the pool-wide `SandboxConfig`.

Every field is documented and has a default (TRL style): ``SandboxConfig()`` is a working
configuration on a 2-core machine, and the CLI reads the same dataclasses.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from arena.sandbox._version import DEFAULT_IMAGE

BACKENDS = ("auto", "docker", "process")
MAX_TIMEOUT_S = 86_400.0  # a day: a job's wall-clock limit beyond it is a typo, and 1e12 overflowed the runner


MAX_MEMORY_MB = 1 << 20
"""The largest `Limits.memory_mb`: 1 TiB."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to one job (a program plus its calls), in its own process.

    The wall-clock ``timeout`` covers the whole job: exec of the program and every call.
    Calls that finished before the deadline keep their results; the rest are ``timeout``.
    """

    timeout: float = 2.0
    """Wall-clock seconds for the whole job. RLIMIT_CPU is set to ``int(timeout) + 1`` s."""
    memory_mb: int = 256
    """Address-space limit (RLIMIT_AS) of the program's process, in MiB. Exceeding it
    raises MemoryError inside the program: status ``memory``. It counts virtual memory:
    each thread reserves a stack (8 MiB) and possibly a malloc arena (64 MiB)."""
    max_output: int = 65536
    """Characters of stdout and of stderr kept. Writing more raises an uncatchable-by-
    ``except Exception`` error in the program and the job's status is ``output_limit``."""
    max_value: int = 1 << 20
    """Characters allowed for one call's ``repr`` (and its JSON). Larger: ``output_limit``."""
    max_file_bytes: int = 1 << 20
    """RLIMIT_FSIZE: largest file the program may write in its scratch dir, in bytes."""
    max_open_files: int = 64
    """RLIMIT_NOFILE of the program's process."""
    max_processes: int = 0
    """RLIMIT_NPROC of the program's process. It counts every process and thread of the
    sandbox user, so the default 0 means: the program can neither fork nor start threads.
    Above 0, everything the job started is killed when it ends (the whole PID namespace in
    the docker and bubblewrap backends; only the process group in the plain fallback, where
    a descendant that left the group with setsid() can survive)."""
    recursion_limit: int = 1000
    """``sys.setrecursionlimit`` in the program's process (Python's default)."""

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= MAX_TIMEOUT_S:  # NaN and infinity too: the runner's deadline is a time_t
            raise ValueError(f"Limits.timeout must be > 0 and at most {MAX_TIMEOUT_S:.0f} seconds, got {self.timeout}")
        for name in ("memory_mb", "max_output", "max_value", "max_file_bytes", "max_open_files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be > 0, got {getattr(self, name)}")
        if self.memory_mb > MAX_MEMORY_MB:  # RLIMIT_AS in bytes: beyond what any machine has, a typo
            raise ValueError(f"Limits.memory_mb must be at most {MAX_MEMORY_MB} (1 TiB), got {self.memory_mb}")
        if self.max_processes < 0 or self.recursion_limit < 50:
            raise ValueError("Limits.max_processes must be >= 0 and recursion_limit >= 50")

    def to_wire(self) -> dict[str, Any]:
        """The dict the runner reads (same keys)."""
        return dataclasses.asdict(self)


@dataclass
class SandboxConfig:
    """Configuration of a `Sandbox` pool (all backends unless a field says otherwise)."""

    backend: str = "auto"
    """``docker``, ``process``, or ``auto`` (docker when the engine answers and the image
    exists, else process under bubblewrap; neither: `SandboxUnavailable` unless
    ``allow_unsafe``)."""
    workers: int | None = None
    """Sandbox workers (containers or bubblewrap sandboxes), each running one job at a
    time. None: ``os.cpu_count()``: jobs go out in batches, so a worker seldom waits on the
    host, and more workers than cores only add context switches (measured)."""
    limits: Limits = field(default_factory=Limits)
    """Default limits of a job when `Sandbox.run` is given none."""
    batch_size: int = 32
    """Most jobs sent to one worker in one round trip by `Sandbox.run_many`."""
    grace_s: float = 5.0
    """Seconds the host waits beyond a job's timeout before it declares the worker hung,
    replaces it, and reports ``infra``."""
    start_timeout_s: float = 60.0
    """Seconds a new worker may take to answer its first ``ready`` line."""
    infra_retries: int = 1
    """Times a job whose worker failed under it is retried on a fresh worker before it is
    reported as ``infra`` (or ``killed`` when the job itself keeps bringing workers down)."""
    hash_seed: int = 0
    """PYTHONHASHSEED of the runner, so set and dict-of-str orders are the same in every
    worker and every run (the determinism check relies on it)."""
    pin_cpus: bool = False
    """Pin each worker to one core (a container's cpuset, or the runner's CPU affinity in
    the process backend), spreading workers round-robin over the cores, so that a runner
    and the programs it forks never change core. Off by default: on a machine where other
    work also runs (a trainer, other users) a pinned worker cannot move off a busy core.
    On the shared 2-core VM (load average 6-9 from others), in two interleaved runs pinned
    pools reached 0.39-0.84x the fork-per-program baseline's rate and unpinned pools
    0.94-0.98x; in `scripts/bench_sandbox.py --compare-pin` runs pinning lost as much in
    one run and won a little in another. Pinning saves CPU time per job (fewer cross-core
    wake-ups and TLB shoot-downs): turn it on where the sandbox has the cores to itself."""
    host_compile: bool = True
    """Compile each distinct program and call once on the host (in a helper process, with
    an LRU cache) and send the jobs marshalled code, when the worker's Python has the same
    bytecode magic number: a compile in the job's freshly forked process cost ~0.3 ms of
    CPU per job in copy-on-write faults (`arena.sandbox.compiler`). Sources the helper does not compile
    cleanly and quickly are compiled in the job as before; results do not depend on it."""
    preload: tuple[str, ...] = ()
    """Modules the runner imports once before forking (e.g. ``("collections", "re")``):
    faster for programs that import them, slower forks for all others."""

    # --- docker backend ---
    image: str = DEFAULT_IMAGE
    """Docker image (build it with ``arena sandbox build``)."""
    container_memory_mb: int = 768
    """Memory cgroup limit of each container (swap disabled): the runner, one program and
    the tmpfs scratch dir must fit."""
    container_pids: int = 64
    """pids cgroup limit of each container."""
    cpus_per_worker: float = 1.0
    """CPU quota of each container, in cores (``nano_cpus``); 0 for no quota."""
    tmpfs_mb: int = 64
    """Size of the writable tmpfs scratch dir (/tmp) of each worker."""
    user: str | None = None
    """uid:gid the container runs as (never root). None: a uid of its own for each worker
    (``UID_BASE`` + a random offset, gid 10001), because RLIMIT_NPROC counts the processes
    of a uid across the whole host: with one shared uid, a job forking on one worker
    would make ``fork()`` fail in a job on another."""
    docker_url: str | None = None
    """Docker engine URL; None: the environment's (DOCKER_HOST or the local socket)."""

    # --- process backend ---
    python: str | None = None
    """Interpreter for the process backend. None: /usr/bin/python3 when present (a system
    interpreter needs no bind of a home directory), else the current one."""
    use_bwrap: bool | None = None
    """Run workers under bubblewrap. None: when bwrap is installed and works; False: plain
    subprocesses (needs ``allow_unsafe``)."""
    allow_unsafe: bool = False
    """Allow the plain process backend: the runner as an ordinary subprocess of the host
    user, with rlimits and the runner's seccomp filter but no namespace, so a program sees
    the host's files, network and processes (it can signal other pools' runners). For
    trusted code, tests and development only. Without it a pool refuses to start when
    neither Docker nor bubblewrap works (``auto`` and ``process`` never fall back to it
    silently); with it, such a pool starts with a `WeakIsolationWarning`."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"SandboxConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"SandboxConfig.workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"SandboxConfig.batch_size must be >= 1, got {self.batch_size}")
        if isinstance(self.limits, dict):
            self.limits = Limits(**self.limits)
        self.preload = tuple(self.preload)

    @property
    def n_workers(self) -> int:
        return self.workers or (os.cpu_count() or 1)
