"""The `arena` command as a user runs it: play, replay, verify, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_a_play_that_failed_before_storing_an_episode_leaves_no_run_to_refuse_the_retry(tmp_path):
    """stdin closed mid-game: the empty episodes file and run.json of the failed call made
    the same command with a working stdin one line, "already holds a run (0 episodes)"."""
    run = tmp_path / "h"
    failed = arena("play", "spiral/TicTacToe-v0", "--agents", "human,heuristic", "-n", "1", "--out", str(run), input="4\n")
    assert failed.returncode == 2 and "standard input closed" in failed.stderr
    assert not run.exists()
    run.mkdir()
    (run / "notes.txt").write_text("mine")  # a folder the user made: it and what it holds stay
    arena("play", "spiral/TicTacToe-v0", "--agents", "human,heuristic", "-n", "1", "--out", str(run), input="4\n")
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]
    moves = "4\n0\n8\n6\n2\n1\n3\n5\n7\n"
    result = arena("play", "spiral/TicTacToe-v0", "--agents", "human,heuristic", "-n", "1", "--out", str(run), input=moves)
    assert result.returncode == 0, result.stderr


def test_check_command():
    result = arena("check", "spiral/TicTacToe-v0", "--fuzz-steps", "300")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout and "PettingZoo api_test" in result.stdout


@pytest.mark.parametrize("args", [[], ["sandbox"]])
def test_bare_group_prints_its_help_once(args):
    """typer's help printed itself while click built the no-arguments exception, and the CLI
    printed it again: 55 lines for bare `arena` against 28 for `arena --help`."""
    bare = arena(*args)
    helped = arena(*args, "--help")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.count("Usage:") == 1
    assert bare.stdout.strip() == helped.stdout.strip()


class _InterruptedAt:
    """An agent that plays like `inner` until its `calls`-th request batch, where it raises
    KeyboardInterrupt as Ctrl-C would."""

    def __init__(self, inner, calls: int):
        self.inner, self.name, self.calls = inner, inner.name, calls

    def act(self, requests):
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.inner.act(requests)


def test_interrupted_play_stores_every_finished_episode(tmp_path, monkeypatch, capsys):
    """`play` writes in index order; episodes that finished while an earlier one still played
    waited in memory, and an interrupt lost them (31 finished, 1 stored)."""
    import arena.agents

    from arena.cli import main

    make_agent = arena.agents.make_agent
    monkeypatch.setattr(arena.agents, "make_agent", lambda name, seed=None: _InterruptedAt(make_agent(name, seed=seed), 12))
    run = tmp_path / "pi"
    with pytest.raises(SystemExit) as exited:
        main(["play", "spiral/TicTacToe-v0", "-a", "random,random", "-n", "200", "--concurrency", "64", "--out", str(run)])
    assert exited.value.code == 130
    err = capsys.readouterr().err
    finished = int(err.split("interrupted after ")[1].split(" of ")[0])
    indices = sorted(json.loads(line)["metadata"]["index"] for line in (run / "episodes.jsonl").read_text().splitlines())
    assert len(indices) == finished and f"; {finished} stored in {run}" in err
    assert indices != list(range(finished))  # some had finished ahead of an earlier one, which never did
    assert json.loads((run / "run.json").read_text())["episodes_completed"] == finished


@pytest.mark.parametrize("where", ["agent", "write"])
def test_an_interrupted_play_folds_exactly_the_stored_episodes_into_the_runs_state(tmp_path, monkeypatch, capsys,
                                                                                   where):
    """`after_episode` (the state an env keeps over a run, AZR's task buffer) sees every
    episode stored once and no other: those an interrupt while the agents played stored out
    of order, and a batch on disk when the interrupt fell inside the write, before its fold."""
    import arena.agents
    from arena.envs.spiral.tictactoe import TicTacToe

    from arena.cli import main
    from arena.registry import _REGISTRY
    from arena.store import EpisodeWriter

    class Folded(TicTacToe):
        def __init__(self, log: str | None = None, **kwargs):
            super().__init__(**kwargs)

        @classmethod
        def run_kwargs(cls, kwargs, run, folder):
            return {**kwargs, "log": str(folder / "folded.txt")}

        @classmethod
        def after_episode(cls, kwargs, episode):
            Path(kwargs["log"]).parent.mkdir(parents=True, exist_ok=True)
            with open(kwargs["log"], "a") as f:
                f.write(f"{episode.metadata['index']}\n")

    arena.register("test/FoldedTicTacToe-v0", Folded, override=True)
    if where == "agent":
        make_agent = arena.agents.make_agent
        monkeypatch.setattr(arena.agents, "make_agent",
                            lambda name, seed=None: _InterruptedAt(make_agent(name, seed=seed), 12))
    else:
        write, writes = EpisodeWriter.write, []

        def interrupted_write(self, episodes):
            count = write(self, episodes)
            writes.append(count)
            if len(writes) == 3:
                raise KeyboardInterrupt  # the batch is on disk
            return count

        monkeypatch.setattr(EpisodeWriter, "write", interrupted_write)
    run = tmp_path / "pi"
    try:
        with pytest.raises(SystemExit) as exited:
            main(["play", "test/FoldedTicTacToe-v0", "-a", "random,random", "-n", "200", "--concurrency", "64",
                  "--out", str(run)])
    finally:
        _REGISTRY.pop("test/FoldedTicTacToe-v0", None)
    assert exited.value.code == 130 and "interrupted after" in capsys.readouterr().err
    indices = [json.loads(line)["metadata"]["index"] for line in (run / "episodes.jsonl").read_text().splitlines()]
    if where == "agent":
        assert sorted(indices) != list(range(len(indices)))  # some finished ahead of one that never did
    assert sorted(int(i) for i in (run / "env-state" / "folded.txt").read_text().split()) == sorted(indices)


def test_device_without_hardware_is_one_line(tmp_path, monkeypatch):
    """torch's AssertionError (no CUDA) or RuntimeError (no such device type) once the model
    loaded; now one line before anything loads, for any command that calls check_device."""
    import torch

    from arena import ArenaError
    from arena.devices import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ArenaError, match=r"^--device cuda: no CUDA device here \(.*\); use --device cpu$"):
        check_device("cuda")
    with pytest.raises(ArenaError, match=r"^ARENA_DEVICE=cuda:1: no CUDA device here .*; use ARENA_DEVICE=cpu$"):
        check_device("cuda:1", flag="ARENA_DEVICE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ArenaError, match=r"has 2 CUDA device\(s\), cuda:0..cuda:1"):
        check_device("cuda:2")
    assert check_device("cuda:1") == "cuda:1" and check_device("cpu") == "cpu"

    result = arena("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--device", "tpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --device 'tpu' is not a torch device: use --device cpu or --device cuda (cuda:N for one GPU)"
    if not torch.cuda.is_available():
        for args in (["eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--device", "cuda"],
                     ["play", "spiral/TicTacToe-v0", "-a", "tiny", "-n", "1"]):
            monkeypatch.setenv("ARENA_DEVICE", "cuda")  # play's model agents load where ARENA_DEVICE says
            result = arena(*args)
            assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
            assert "no CUDA device here" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_replay_of_a_record_without_seed_is_one_line(tmp_path):
    run = tmp_path / "r"
    assert arena("play", "spiral/TicTacToe-v0", "-n", "2", "--out", str(run)).returncode == 0
    path = run / "episodes.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    del records[1]["seed"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = arena("replay", str(run), "--verify")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {path}:2: episode record has no 'seed' field")
    assert len(result.stderr.strip().splitlines()) == 1


def test_envs_table_never_splits_a_default_in_a_pipe():
    """`max_turns=1` / `0` on two lines read as max_turns=1: each default sits whole on its
    own line of the cell, in the 80 columns of a pipe too."""
    import arena as arena_pkg

    result = subprocess.run([sys.executable, "-m", "arena.cli", "envs"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "80"}, check=False)
    assert result.returncode == 0, result.stderr
    cells = [cell.strip() for line in result.stdout.splitlines() for cell in line.split("│")]
    for env_id, spec in arena_pkg.registry().items():
        for key, value in spec.kwargs.items():
            shown = f"{key}={value if isinstance(value, str) else json.dumps(value)}"
            assert shown in cells, (env_id, shown)


@pytest.mark.parametrize("command", [["eval", "--help"], ["play", "--help"], ["sandbox", "run", "--help"]])
def test_help_in_a_pipe_cuts_nothing(command):
    """At rich's 80 columns typer cut option names and defaults with an ellipsis
    (`--chat-template-…`); a pipe gets help wide enough to hold them."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH", "LINES")}
    result = subprocess.run([sys.executable, "-m", "arena.cli", *command], capture_output=True, text=True,
                            timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout, result.stdout
