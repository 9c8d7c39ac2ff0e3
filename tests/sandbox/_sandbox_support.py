"""Helpers shared by the sandbox tests and their conftest: skip logic, pools, leak probes.

Docker-marked tests skip with the exact missing piece (engine, image, SDK) unless
``ARENA_REQUIRE_DOCKER=1`` (CI), where they fail instead. After the whole session no
container labelled ``arena.sandbox=1`` and no runner process may remain.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from arena.sandbox import Limits, Sandbox, SandboxConfig
from arena.sandbox._version import DEFAULT_IMAGE
from arena.sandbox.docker_worker import docker_status
from arena.sandbox.process_worker import bwrap_status

REQUIRE_DOCKER = os.environ.get("ARENA_REQUIRE_DOCKER") == "1"
TEST_LIMITS = Limits(timeout=1.5, memory_mb=256)
RUNNER_MARK = "The arena sandbox runner"  # first line of runner.py, in every runner's argv
HELPER_MARK = "a compile that warns fails here"  # in the compile helper's argv (compiler.HELPER)

_docker = None
_bwrap = None


def docker_ok() -> tuple[bool, str]:
    global _docker
    if _docker is None:
        _docker = docker_status(DEFAULT_IMAGE)
    return _docker


def bwrap_ok() -> tuple[bool, str]:
    global _bwrap
    if _bwrap is None:
        _bwrap = bwrap_status()
    return _bwrap


def require_docker() -> None:
    ok, why = docker_ok()
    if not ok:
        if REQUIRE_DOCKER:
            pytest.fail(f"ARENA_REQUIRE_DOCKER=1 but Docker is unavailable: {why}", pytrace=False)
        pytest.skip(f"Docker unavailable: {why}")


def require_bwrap() -> None:
    ok, why = bwrap_ok()
    if not ok:
        if REQUIRE_DOCKER:  # CI installs bubblewrap as well as Docker: both backends must run there
            pytest.fail(f"ARENA_REQUIRE_DOCKER=1 (CI) but bubblewrap is unavailable: {why}", pytrace=False)
        pytest.skip(f"bubblewrap unavailable: {why}")


def runner_processes() -> list[int]:
    """PIDs of live sandbox runners (any backend) and compile helpers on this host."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (RUNNER_MARK.encode() in cmd or HELPER_MARK.encode() in cmd) and state != "Z":
            pids.append(int(d.name))
    return pids


def make_sandbox(kind: str, workers: int = 2, **kw) -> Sandbox:
    if kind == "docker":
        require_docker()
        cfg = SandboxConfig(backend="docker", workers=workers, limits=TEST_LIMITS, **kw)
    elif kind == "bwrap":
        require_bwrap()
        cfg = SandboxConfig(backend="process", use_bwrap=True, workers=workers,
                            limits=TEST_LIMITS, **kw)
    elif kind == "plain":
        cfg = SandboxConfig(backend="process", use_bwrap=False, allow_unsafe=True,
                            workers=workers, limits=TEST_LIMITS, **kw)
    else:  # pragma: no cover
        raise ValueError(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Sandbox(config=cfg).start()


