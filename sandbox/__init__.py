"""arena.sandbox: isolated, fast execution of untrusted Python for verifiable rewards.

- `Sandbox` (pool.py): ``run(program, calls, limits) -> ExecResult`` and ``run_many``.
- backends: ``docker`` (docker_worker.py: a pool of locked-down long-lived containers,
  and ``clean``/``list_containers`` for them) and ``process`` (process_worker.py:
  bubblewrap; plain subprocesses without isolation only with ``allow_unsafe=True``);
  workers.py: what both share (the base class and its protocol with the runner).
- runner.py: the stdlib-only program inside each worker that forks one process per job.
- channel.py: lines and exact-length frames from a child's byte stream (workers, compiler).
- compiler.py: compiles each distinct program and call once on the host (a helper
  process); jobs load the marshalled code instead of compiling in their forked process.
- checks.py: AZR's task-validity rules (syntax, banned imports, size) and the
  determinism check; not a security boundary (the runner's design is: see runner.py).
- cli.py: ``arena sandbox build | doctor | clean | run``.
"""

from arena.sandbox._version import DEFAULT_IMAGE, IMAGE_VERSION
from arena.sandbox.config import Limits, SandboxConfig
from arena.sandbox.docker_worker import clean, list_containers
from arena.sandbox.pool import Sandbox, SandboxUnavailable, WeakIsolationWarning, resolve_backend
from arena.sandbox.result import STATUSES, CallResult, ExecResult

__all__ = [
    "DEFAULT_IMAGE",
    "IMAGE_VERSION",
    "STATUSES",
    "CallResult",
    "ExecResult",
    "Limits",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "WeakIsolationWarning",
    "clean",
    "list_containers",
    "resolve_backend",
]
