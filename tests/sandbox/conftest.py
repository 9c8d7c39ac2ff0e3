"""Fixtures for the sandbox tests: one pool per backend per module, skip logic, leak checks.

Docker-marked tests skip with the exact missing piece (engine, image, SDK) unless
``ARENA_REQUIRE_DOCKER=1`` (CI), where they fail instead. After the whole session no
container labelled ``arena.sandbox=1`` and no runner process may remain.
"""

from __future__ import annotations

import time

import pytest
from _sandbox_support import docker_ok, make_sandbox, runner_processes
from arena.sandbox import list_containers


@pytest.fixture(scope="module")
def docker_sandbox():
    sb = make_sandbox("docker")
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def bwrap_sandbox():
    sb = make_sandbox("bwrap")
    yield sb
    sb.close()


@pytest.fixture(scope="module")
def plain_sandbox():
    sb = make_sandbox("plain")
    yield sb
    sb.close()


@pytest.fixture(scope="module", params=[
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("bwrap", marks=pytest.mark.bwrap),
])
def sb(request):
    """The module's pool for each isolating backend (docker, bubblewrap)."""
    return request.getfixturevalue(f"{request.param}_sandbox")


@pytest.fixture(scope="session", autouse=True)
def no_leaks():
    """After the session: no arena-labelled container and no runner process remains."""
    yield
    deadline = time.monotonic() + 15
    containers: list[str] = []
    runners: list[int] = []
    while time.monotonic() < deadline:
        containers = list_containers() if docker_ok()[0] else []
        runners = runner_processes()
        if not containers and not runners:
            return
        time.sleep(0.5)
    pytest.fail(f"sandbox leak: containers {containers}, runner processes {runners}")
