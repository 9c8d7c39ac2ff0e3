"""Usage errors of the real `arena` command: usage and message, exit 2, never a traceback.

These run the installed typer (and the click it carries, whichever that is), so they fail
when the CLI's error handling does not match the versions a fresh install resolves.
"""

from __future__ import annotations

import os
import re
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


@pytest.mark.parametrize("args", [[], ["play"], ["replay"], ["eval"], ["report"], ["sandbox"], ["sandbox", "run"], ["train"]])
def test_dash_h_is_help_everywhere(args):
    """`-h` worked for `arena train` alone ("No such option: -h" elsewhere)."""
    result = arena_cmd(*args, "-h")
    assert result.returncode == 0 and "Usage: arena" in result.stdout, result.stderr


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


def test_user_text_is_never_markup():
    result = arena_cmd("play", "[/x]")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown env id '[/x]'" in result.stderr


def test_broken_env_is_listed_literally():
    code = ("import arena; arena.register('test/Broken-v0', 'arena.no_such_module:Env'); "
            "from arena.cli import main; main(['envs'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[broken] test/Broken-v0: cannot import module" in result.stdout


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_piped_envs_keep_every_id_on_one_line(columns):
    result = arena_cmd("envs", columns=columns)
    assert result.returncode == 0, result.stderr
    for env_id in arena.registry:
        assert any(env_id in line for line in result.stdout.splitlines()), (env_id, result.stdout)


def test_play_numbers_are_never_cut_in_a_narrow_terminal():
    result = arena_cmd("play", "spiral/KuhnPoker-v0", "-a", "random,heuristic", "-n", "20", "--swap-seats", columns=60)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    rows = [line for line in result.stdout.splitlines() if "player_" in line or line.startswith(("│ heuristic", "│ random"))]
    assert len(rows) == 4, result.stdout
    for line in rows:
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert re.fullmatch(r"[+-]\d+\.\d{3}", cells[-1]) and all(re.fullmatch(r"\d+\.\d%", c) for c in cells[-5:-1]), cells


def test_human_play_shows_moves_retries_a_typo_and_shows_the_end():
    result = subprocess.run([sys.executable, "-m", "arena.cli", "play", "spiral/KuhnPoker-v0", "-a", "human,random", "-n", "1"],
                            input="chekc\ncheck\ncall\ncheck\nfold\n", capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "120"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Available Moves: '[check]', '[bet]'" in result.stdout
    assert "'chekc' is not a legal move (legal: [check]  [bet]); try again" in result.stdout
    assert "game over — you were player_0" in result.stdout
    assert re.search(r"outcome: \w+; winner: player_\d; returns: player_0 [+-]\d\.\d{3}, player_1 [+-]\d\.\d{3}", result.stdout)
    human_row = next(line for line in result.stdout.splitlines() if "│ human" in line)
    assert [c.strip() for c in human_row.strip("│").split("│")][5] == "0.0%"  # no invalid move was sent


def test_verify_prints_recorded_actions_literally(tmp_path):
    import json

    run = tmp_path / "k"
    assert arena_cmd("play", "spiral/KuhnPoker-v0", "-n", "2", "--out", str(run)).returncode == 0
    path = run / "episodes.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[0]["turns"][0]["action"] = "[/oops]"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = arena_cmd("replay", str(run), "--verify")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "action differs" in result.stdout and "recorded '[/oops]', replayed '[" in result.stdout


def test_tables_on_a_pipe_without_columns_are_not_squeezed_to_80():
    """`arena train --help | less` wrapped its help column at 20 characters (681 lines)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "arena.cli", "train", "--help"], capture_output=True, text=True,
                            env=env, check=False)
    assert result.returncode == 0 and len(result.stdout.splitlines()) < 300, len(result.stdout.splitlines())
    assert max(len(line) for line in result.stdout.splitlines()) <= 120


@pytest.mark.parametrize("command", ["play", "check"])
def test_env_as_a_flag_where_it_is_the_argument_says_so(command):
    """`arena play --env ID`, as train and eval take it, was answered with "Possible options:
    --agents, --append" alone."""
    result = arena_cmd(command, "--env", "spiral/KuhnPoker-v0")
    assert result.returncode == 2
    assert f"hint: the env id is arena {command}'s argument, not a flag: arena {command} spiral/TicTacToe-v0" in result.stderr
