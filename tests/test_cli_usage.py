"""Usage errors of the real `arena` command: usage and message, exit 2, never a traceback.

These run the installed typer (and the click it carries, whichever that is), so they fail
when the CLI's error handling does not match the versions a fresh install resolves.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import arena


def arena_cmd(*args: str, columns: int = 160) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "arena.cli", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [[], ["sandbox"]])
def test_bare_group_prints_help_and_exits_0(args):
    result = arena_cmd(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Usage:" in result.stdout and "Commands" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["play"], "Missing argument 'ENV_ID'"),
        (["play", "spiral/TicTacToe-v0", "--bogus"], "No such option: --bogus"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["play", "spiral/TicTacToe-v0", "-n", "0"], "Invalid value for '--episodes' / '-n'"),
        (["play", "spiral/TicTacToe-v0", "-n", "abc"], "Invalid value for '--episodes' / '-n'"),
        (["play", "spiral/TicTacToe-v0", "--concurrency", "0"], "Invalid value for '--concurrency'"),
        (["check"], "Missing argument 'ENV_ID'"),
        (["replay"], "Missing argument 'RUN'"),
    ],
)
def test_usage_errors_print_usage_and_exit_2(args, message):
    result = arena_cmd(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Usage: " in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_version_option_and_command():
    for args in (["--version"], ["version"]):
        result = arena_cmd(*args)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"arena {arena.__version__}" or result.stdout.strip() == arena.__version__


def test_help_lists_commands():
    result = arena_cmd("--help")
    assert result.returncode == 0, result.stderr
    for command in ("envs", "play", "replay", "check"):
        assert command in result.stdout


@pytest.mark.parametrize("kw, message", [
    ("rounds=2.5", "spiral/KuhnPoker-v0: argument rounds must be an integer, got 2.5"),
    ("rounds=true", "spiral/KuhnPoker-v0: argument rounds must be an integer, got True"),
    ("rounds=0", "spiral/KuhnPoker-v0: rounds must be >= 1, got 0"),
])
def test_env_argument_errors_name_the_env_and_kw(kw, message):
    result = arena_cmd("play", "spiral/KuhnPoker-v0", "--kw", kw, "-n", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and "--kw KEY=VALUE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
