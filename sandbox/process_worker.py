"""The process kind of sandbox worker (shared protocol: `arena.sandbox.workers`).

- `ProcessWorker`: the runner under ``bwrap --unshare-all --die-with-parent --as-pid-1``
  with read-only binds of the interpreter only and a tmpfs /tmp, as an unprivileged user
  (root drops to nobody first, so RLIMIT_NPROC applies); or, only with
  ``allow_unsafe=True``, a plain subprocess with rlimits and the runner's seccomp filter
  (no isolation: the program can read what that user can, and signal its processes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from arena.sandbox.config import SandboxConfig
from arena.sandbox.seccomp import filter_program
from arena.sandbox.workers import NOBODY, Worker, runner_source


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
        os.set_blocking(self.proc.stdin.fileno(), False)  # the request is written as the runner takes it

    def _send_some(self, data: memoryview) -> int:
        return os.write(self.proc.stdin.fileno(), data)

    def _send_fileno(self) -> int:
        return self.proc.stdin.fileno()

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
