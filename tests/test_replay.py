"""Runs as a user meets them: `arena play --out` on existing runs, run.json, Ctrl-C, and
`arena replay` on good, torn, empty and bad episode files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_support import arena, assert_one_line

from arena.episode import Episode
from arena.replay import Mismatch, verify
from arena.store import read_episodes, read_run_info

KUHN = "spiral/KuhnPoker-v0"


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def test_out_existing_run_is_refused_unless_append_or_overwrite(tmp_path, capsys):
    run = tmp_path / "k"
    assert arena(capsys, "play", KUHN, "-n", "4", "--out", run)[0] == 0
    code, _, err = arena(capsys, "play", KUHN, "-n", "4", "--out", run)
    assert code == 2
    assert_one_line(err, "already holds a run (4 episodes of spiral/KuhnPoker-v0): pass --append")

    assert arena(capsys, "play", KUHN, "-n", "3", "--out", run, "--append")[0] == 0
    records = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert [r["metadata"]["index"] for r in records] == list(range(7))
    assert len({r["id"] for r in records}) == 7 and len({r["seed"] for r in records}) == 7
    info = read_run_info(run)
    assert [c["mode"] for c in info["calls"]] == ["new", "append"]
    assert [c["episodes"] for c in info["calls"]] == [4, 3]
    assert info["status"] == "complete" and info["episodes_completed"] == 7

    code, _, err = arena(capsys, "play", "spiral/TicTacToe-v0", "-n", "2", "--out", run, "--append")
    assert code == 2
    assert_one_line(err, "holds episodes of spiral/KuhnPoker-v0, not spiral/TicTacToe-v0")

    assert arena(capsys, "play", "spiral/TicTacToe-v0", "-n", "2", "--out", run, "--overwrite")[0] == 0
    assert {e.env_id for e in read_episodes(run)} == {"spiral/TicTacToe-v0"}
    assert [c["mode"] for c in read_run_info(run)["calls"]] == ["overwrite"]

    (run / "run.json").write_text('{"status": "runn')  # damaged: named, never replaced (--overwrite deleted the episodes)
    for mode in ("--append", "--overwrite"):
        code, _, err = arena(capsys, "play", "spiral/TicTacToe-v0", "-n", "2", "--out", run, mode)
        assert code == 2 and "repair it, or move it aside" in err and "--overwrite" not in err
        assert (run / "run.json").read_text() == '{"status": "runn'
    (run / "run.json").unlink()  # moved aside: the episodes are appended to
    assert arena(capsys, "play", "spiral/TicTacToe-v0", "-n", "2", "--out", run, "--append")[0] == 0
    assert read_run_info(run)["status"] == "complete" and len(list(read_episodes(run))) == 4


def test_append_takes_a_corpus_by_the_file_it_names_not_its_spelling(tmp_path, capsys, monkeypatch):
    """run.json records a SPICE corpus as the episodes do (absolute): appended with the same
    file spelled absolute, or relative from another folder, the run was refused; another
    file still is."""
    import shutil

    data = tmp_path / "d"
    data.mkdir()
    shutil.copy(Path(__file__).parents[1] / "envs/spice/data/stdlib_docs.jsonl", data / "docs.jsonl")
    shutil.copy(data / "docs.jsonl", data / "other.jsonl")
    monkeypatch.chdir(tmp_path)
    spice = ("play", "spice/Corpus-v0", "-n", "1", "--kw", "n=2", "--out", "run")
    assert arena(capsys, *spice, "--kw", "corpus=d/docs.jsonl")[0] == 0
    assert read_run_info(tmp_path / "run")["env_kwargs"] == {"n": 2, "corpus": str(data / "docs.jsonl")}
    assert arena(capsys, *spice, "--kw", f"corpus={data / 'docs.jsonl'}", "--append")[0] == 0
    monkeypatch.chdir(data)
    assert arena(capsys, *spice[:-1], "../run", "--kw", "corpus=docs.jsonl", "--append")[0] == 0
    code, _, err = arena(capsys, *spice[:-1], "../run", "--kw", "corpus=other.jsonl", "--append")
    assert code == 2
    assert_one_line(err, "append only with the same --kw")
    assert len(list(read_episodes(tmp_path / "run"))) == 3


def test_out_refuses_foreign_files_and_bad_places(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "episodes.jsonl").write_text('{"prompt": "a dataset, not a run"}\n')
    for flag in ("--append", "--overwrite"):
        code, _, err = arena(capsys, "play", KUHN, "-n", "2", "--out", data, flag)
        assert code == 2
        assert_one_line(err, "not an arena episode record")
    assert (data / "episodes.jsonl").read_text().startswith('{"prompt"')

    (tmp_path / "file").write_text("x")
    for out, message in [(tmp_path / "file", "is a file, not a run folder"), ("/proc/arena-run", "kernel filesystem"),
                         ("/sys/kernel/arena", "kernel filesystem")]:
        code, _, err = arena(capsys, "play", KUHN, "-n", "2", "--out", out)
        assert code == 2
        assert_one_line(err, message)
    (tmp_path / "d" / "episodes.jsonl").mkdir(parents=True)
    code, _, err = arena(capsys, "play", KUHN, "-n", "2", "--out", tmp_path / "d")
    assert code == 2
    assert_one_line(err, "not a regular file")
    code, _, err = arena(capsys, "play", KUHN, "--seed", "-1")
    assert code == 2 and "Traceback" not in err and "--seed" in err


def test_episode_selects_the_index_not_the_line(tmp_path, capsys):
    run = tmp_path / "k5"
    assert arena(capsys, "play", KUHN, "-n", "6", "--out", run)[0] == 0
    path = run / "episodes.jsonl"
    lines = path.read_text().splitlines()
    random.Random(0).shuffle(lines)  # as a writer in finishing order would have left them
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = arena(capsys, "replay", run, "--episode", "3")
    assert code == 0 and "id  k5-3" in out and "seed  3" in out
    code, out, _ = arena(capsys, "replay", run, "--id", "k5-5")
    assert code == 0 and "id  k5-5" in out
    code, _, err = arena(capsys, "replay", run, "--episode", "9")
    assert code == 2
    assert_one_line(err, "no episode with that index; the run has 6 episodes, indices 0..5")


def test_step_selects_a_training_steps_episodes(tmp_path, capsys):
    run = tmp_path / "k6"
    assert arena(capsys, "play", KUHN, "-n", "6", "--out", run)[0] == 0
    code, _, err = arena(capsys, "replay", run, "--step", "0")
    assert code == 2
    assert_one_line(err, "carry no training step")
    path = run / "episodes.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:  # as `arena train` stores them: metadata.step, the step that played it
        r["metadata"]["step"] = 10 * (r["metadata"]["index"] // 2)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, _ = arena(capsys, "replay", run, "--step", "10")
    assert code == 0 and "id  k6-2" in out and "id  k6-3" in out and "id  k6-1" not in out and "id  k6-4" not in out
    code, out, _ = arena(capsys, "replay", run, "--step", "-1", "--verify")
    assert code == 0 and "verified 2 episodes" in out
    code, _, err = arena(capsys, "replay", run, "--step", "5")
    assert code == 2
    assert_one_line(err, "--step 5: the run played steps 0..20 (3 of them; step S is played after S updates, "
                         "and metrics.csv's row S + 1 trains on it); -1 is the last")
    code, _, err = arena(capsys, "replay", run, "--step", "-4")
    assert code == 2
    code, _, err = arena(capsys, "replay", run, "--step", "0", "--episode", "1")
    assert code == 2
    assert_one_line(err, "give one of --episode, --step")

def _kuhn_record(tmp_path: Path, capsys) -> dict:
    run = tmp_path / "one"
    assert arena(capsys, "play", KUHN, "-n", "1", "--out", run)[0] == 0
    return json.loads((run / "episodes.jsonl").read_text())


@pytest.mark.parametrize("change", ["list", "string", "turn key", "turns string", "reward string", "seed string"])
def test_bad_episode_files_are_one_line_errors(tmp_path, capsys, change):
    record = _kuhn_record(tmp_path, capsys)
    if change == "list":
        record = [1, 2, 3]
    elif change == "string":
        record = "hello"
    elif change == "turn key":
        record["turns"][0]["thoughts"] = "?"
    elif change == "turns string":
        record["turns"] = "abc"
    elif change == "reward string":
        record["rewards"]["player_0"] = "lots"
    else:
        record["seed"] = "7"
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    for extra in ([], ["--verify"]):
        code, _, err = arena(capsys, "replay", path, *extra)
        assert code == 2
        assert_one_line(err, f"{path}:1: ")


def test_null_rewards_replay_as_nan_and_verify_reports_them(tmp_path, capsys):
    record = _kuhn_record(tmp_path, capsys)
    record["rewards"]["player_0"] = None
    path = tmp_path / "null.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert arena(capsys, "replay", path)[0] == 0
    code, out, _ = arena(capsys, "replay", path, "--verify")
    assert code == 1 and "reward of player_0 differs: recorded nan" in out


def test_replay_mentions_torn_lines_and_empty_runs(tmp_path, capsys):
    run = tmp_path / "k"
    assert arena(capsys, "play", KUHN, "-n", "3", "--out", run)[0] == 0
    with open(run / "episodes.jsonl", "a") as f:
        f.write('{"env_id": "spiral/Ku')
    code, out, err = arena(capsys, "replay", run, "--verify")
    assert code == 0 and "verified 3 episodes" in out and "skipped the torn last line 4" in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "episodes.jsonl").write_text("")
    code, _, err = arena(capsys, "replay", tmp_path / "empty")
    assert code == 2
    assert_one_line(err, "holds no episodes")
    code, _, err = arena(capsys, "replay", tmp_path / "nothing")
    assert code == 2 and "no episodes at" in err


def test_verify_shows_where_observations_differ(tmp_path, capsys):
    record = _kuhn_record(tmp_path, capsys)
    observation = record["turns"][0]["observation"]
    at = observation.index("3-card")
    record["turns"][0]["observation"] = observation.replace("3-card", "4-card")
    (mismatch,) = verify(Episode.from_dict(record))
    text = str(mismatch)
    assert f"at character {at} " in text and "4-card" in text and "3-card" in text
    assert str(Mismatch("e", 0, "action", "[bet]", None)) == "episode e, turn 0: action differs: recorded '[bet]', replayed None"


def test_same_named_agents_are_two_agents(tmp_path, capsys):
    code, out, _ = arena(capsys, "play", KUHN, "-a", "random,random", "--swap-seats", "-n", "10", "--out", tmp_path / "r")
    assert code == 0 and "per agent" in out and "random#1" in out and "random#2" in out
    assert read_run_info(tmp_path / "r")["agents"] == ["random#1", "random#2"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_prints_the_summary_so_far_and_records_it(tmp_path, sig, code):
    run = tmp_path / "long"
    # a shell starts background jobs with SIGINT ignored: give the command Python's Ctrl-C handler
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from arena.cli import main; main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", start, "play", KUHN, "-n", "10000000", "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"})
    path = run / "episodes.jsonl"
    deadline = time.monotonic() + 120
    while not (path.exists() and path.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "interrupted after" in err and "(interrupted)" in out and "player_0" in out
    info = read_run_info(run)
    stored = len(path.read_text().splitlines())
    assert info["status"] == "interrupted" and info["episodes_completed"] == stored > 0
    assert info["calls"][-1]["episodes_completed"] == stored and info["episodes"] == 10000000
