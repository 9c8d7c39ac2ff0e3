"""The `arena` command as a user runs it: play, replay, verify, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def arena(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "arena.cli", *args], check=False, capture_output=True, text=True,
                          env=env, timeout=300, input=input)


def test_play_then_replay_and_verify(tmp_path):
    run = tmp_path / "ttt"
    result = arena("play", "spiral/TicTacToe-v0", "--agents", "random,heuristic", "-n", "40", "--out", str(run), "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "player_1" in result.stdout and "heuristic" in result.stdout
    lines = (run / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 40
    info = json.loads((run / "run.json").read_text())
    assert info["env_id"] == "spiral/TicTacToe-v0" and info["agents"] == ["random", "heuristic"]
    # the perfect player never loses
    records = [json.loads(line) for line in lines]
    assert all(r["rewards"]["player_1"] >= 0 for r in records)

    shown = arena("replay", str(run), "--episode", "2")
    assert shown.returncode == 0, shown.stderr
    assert "turn 0 · player_0" in shown.stdout and "Available Moves" in shown.stdout
    assert "action [" in shown.stdout  # bracketed actions are shown, not eaten as markup

    verified = arena("replay", str(run), "--verify")
    assert verified.returncode == 0 and "verified 40 episodes: all replay exactly" in verified.stdout

    # tamper with one recorded reward: --verify must notice and exit non-zero
    records[5]["rewards"]["player_0"] = 7.0
    (run / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    tampered = arena("replay", str(run), "--verify")
    assert tampered.returncode == 1
    assert "reward of player_0 differs: recorded 7.0" in tampered.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["play", "spiral/TicTacToe-v7"], "did you mean 'spiral/TicTacToe-v0'"),
        (["play", "spiral/TicTacToe-v0", "--agents", "randum"], "unknown agent 'randum'; did you mean 'random'"),
        (["play", "spiral/TicTacToe-v0", "--agents", "random,random,random"], "give one per role"),
        (["play", "spiral/TicTacToe-v0", "--kw", "mode"], "KEY=VALUE"),
        (["play", "spiral/TicTacToe-v0", "--kw", "modee=eval"], "did you mean 'mode'"),
        (["replay", "/nonexistent/run"], "no episodes at /nonexistent/run"),
        (["play", "spiral/KuhnPoker-v0", "--agents", "random,heuristic", "--duplicate"], "add --swap-seats"),
    ],
)
def test_bad_input_is_one_line_naming_the_fix(args, message):
    result = arena(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_replay_episode_out_of_range(tmp_path):
    arena("play", "spiral/TicTacToe-v0", "-n", "3", "--out", str(tmp_path / "r"))
    result = arena("replay", str(tmp_path / "r"), "--episode", "3")
    assert result.returncode == 2 and "no episode with that index; the run has 3 episodes, indices 0..2" in result.stderr


def test_human_agent_plays_from_stdin(tmp_path):
    """A person (here: a pipe) plays seat 0 against the perfect player."""
    moves = "4\n0\n8\n6\n2\n1\n3\n5\n7\n"
    result = arena("play", "spiral/TicTacToe-v0", "--agents", "human,heuristic", "-n", "1", "--out", str(tmp_path / "h"), input=moves)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "h" / "episodes.jsonl").read_text())
    assert record["turns"][0]["completion"] == "4" and record["turns"][0]["action"] == "[4]"
    assert record["rewards"]["player_1"] >= 0


def test_check_command():
    result = arena("check", "spiral/TicTacToe-v0", "--fuzz-steps", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout and "PettingZoo api_test" in result.stdout
