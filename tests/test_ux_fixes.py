"""Usability fixes met by a reviewer: `replay --verify` of an env that cannot be imported,
replay streaming and its progress bar, --overwrite and a foreign run.json, empty --agents
entries, --duplicate counts, a damaged local model, and `arena report` on damaged files."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from _cli_support import arena, arena_cmd, assert_one_line, one_line_error
from rich.console import Console

from arena import cli, store
from arena.errors import ArenaError

KUHN = "spiral/KuhnPoker-v0"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")


def _played(tmp_path: Path, capsys, n: int = 3) -> Path:
    run = tmp_path / "k"
    assert arena(capsys, "play", KUHN, "-n", n, "--out", run)[0] == 0
    return run


# -- 1. replay --verify of an env whose module cannot be imported -----------------------------
def test_verify_of_an_env_whose_module_cannot_be_imported_isassert_one_line(tmp_path, monkeypatch):
    code = re.search(r"```python\n(# my_games/coin.py\n.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    (tmp_path / "g" / "my_games").mkdir(parents=True)
    (tmp_path / "g" / "my_games" / "__init__.py").write_text("")
    (tmp_path / "g" / "my_games" / "coin.py").write_text(code)
    (tmp_path / "elsewhere").mkdir()
    env_id = "my_games.coin:mine/CoinGuess-v0"
    monkeypatch.chdir(tmp_path / "g")
    assert arena_cmd("play", env_id, "-n", "3", "--out", tmp_path / "run").returncode == 0
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = arena_cmd("replay", tmp_path / "run", "--verify")
    assert result.returncode == 2, result.stdout
    line = one_line_error(result)
    assert env_id in line and "'my_games" in line and "mismatch" not in result.stdout


def test_a_failing_replay_of_one_episode_is_still_a_mismatch(tmp_path, capsys):
    run = _played(tmp_path, capsys)
    lines = (run / "episodes.jsonl").read_text().splitlines()
    record = json.loads(lines[1])
    record["env_kwargs"] = {"no_such_argument": 1}
    lines[1] = json.dumps(record)
    (run / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    code, out, _ = arena(capsys, "replay", run, "--verify")
    assert code == 1 and "cannot replay" in out and "verified 3 episodes: 1 differ" in out


# -- 2. replay streams; --verify shows a progress bar -----------------------------------------
def test_replay_prints_each_episode_as_it_is_read(tmp_path, capsys, monkeypatch):
    run = _played(tmp_path, capsys, n=4)
    events: list[str] = []
    read = store.read_episodes

    def reading(*args, **kwargs):
        for ep in read(*args, **kwargs):
            events.append(f"read {ep.id}")
            yield ep

    monkeypatch.setattr(store, "read_episodes", reading)
    monkeypatch.setattr("arena.replay.render", lambda ep, console, full=False: events.append(f"show {ep.id}"))
    assert arena(capsys, "replay", run)[0] == 0
    assert events[:4] == ["read k-0", "show k-0", "read k-1", "show k-1"]
    events.clear()
    assert arena(capsys, "replay", run, "--episode", "1")[0] == 0
    assert events == ["read k-0", "read k-1", "show k-1"]  # no further than the episode


def test_verify_shows_a_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    run = _played(tmp_path, capsys)
    with open(run / "episodes.jsonl", "a") as f:
        f.write('{"env_id": "spiral/Ku')  # torn: no episode, so not in the bar's total
    for terminal in (True, False):  # stderr not a terminal: no bar
        bar = io.StringIO()
        monkeypatch.setattr(cli, "err_console", Console(file=bar, force_terminal=terminal, width=120))
        code, out, _ = arena(capsys, "replay", run, "--verify")
        assert code == 0 and "verified 3 episodes" in out
        assert ("3/3" in bar.getvalue()) is terminal and "skipped the torn last line 4" in bar.getvalue()


# -- 3. --overwrite and --append leave a run.json alone that arena did not write --------------
def test_overwrite_refuses_a_run_json_arena_did_not_write(tmp_path, capsys):
    run = tmp_path / "mine"
    run.mkdir()
    (run / "run.json").write_text('{"my":"precious data"}')
    for flag in ("--overwrite", "--append"):
        code, _, err = arena(capsys, "play", KUHN, "-n", "2", "--out", run, flag)
        assert code == 2
        assert_one_line(err, "run.json was not written by arena")
    assert (run / "run.json").read_text() == '{"my":"precious data"}'
    assert not (run / "episodes.jsonl").exists()
    played = _played(tmp_path, capsys)
    assert arena(capsys, "play", KUHN, "-n", "2", "--out", played, "--overwrite")[0] == 0


# -- 4. an empty --agents entry -----------------------------------------------------------------
@pytest.mark.parametrize(("agents", "entry"), [(",heuristic", 1), ("random,,heuristic", 2), ("random,", 2)])
def test_an_empty_agent_entry_is_refused(capsys, agents, entry):
    code, _, err = arena(capsys, "play", KUHN, "-a", agents, "-n", "2")
    assert code == 2
    assert_one_line(err, f"entry {entry} is empty")


# -- 5. --duplicate with a count that is not a multiple of the seats -----------------------------
def test_duplicate_needs_a_multiple_of_the_seats(capsys):
    code, _, err = arena(capsys, "play", KUHN, "--swap-seats", "--duplicate", "-n", "5")
    assert code == 2
    assert_one_line(err, "-n 5: each deal is played from all 2 seats; give a multiple of 2 (e.g. -n 4 or -n 6)")
    code, _, err = arena(capsys, "play", KUHN, "--swap-seats", "--duplicate", "-n", "1")
    assert code == 2 and "(e.g. -n 2)" in err
    assert arena(capsys, "play", KUHN, "--swap-seats", "--duplicate", "-n", "4")[0] == 0


# -- 6. a damaged local model is not a network problem -------------------------------------------
def test_a_damaged_local_model_says_so_not_to_go_offline(tmp_path):
    import shutil

    from arena.agents.hf import load_model
    from arena.agents.tiny import tiny_model_path

    folder = tmp_path / "e2" / "model"
    shutil.copytree(tiny_model_path(), folder)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ArenaError) as info:
        load_model(str(folder))
    assert "damaged or unreadable" in str(info.value) and "network" not in str(info.value)


# -- 7. arena report names what it skips ---------------------------------------------------------
def _training_run(run: Path) -> None:
    run.mkdir()
    rows = ["step,minutes,loss,kuhn/player_0/mean_return"] + [f"{i},{i / 10},{1 / (i + 1)},{i / 100}" for i in range(6)]
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    evals = [{"step": i, "minutes": i, "kuhn/vs_random/win_rate": 0.5, "kuhn/vs_random/invalid_move_rate": 0.0}
             for i in range(3)]
    (run / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))


def test_report_warns_of_a_cut_metrics_row_and_a_torn_eval_line(tmp_path):
    run = tmp_path / "run"
    _training_run(run)
    text = (run / "metrics.csv").read_text()
    (run / "metrics.csv").write_text(text[: text.rindex(",")])  # the last row cut short
    with open(run / "eval.jsonl", "a") as f:
        f.write('{"step": 3, "minu')
    result = arena_cmd("report", run)
    assert result.returncode == 0, result.stderr
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2, result.stderr
    assert "metrics.csv: 1 damaged row(s) skipped (line 7)" in warnings[0]
    assert "eval.jsonl: skipped the torn last line 4" in warnings[1]
    assert {"reward.png", "loss.png", "eval_win_rates.png"} <= {p.name for p in (run / "plots").iterdir()}


def test_report_warns_of_a_garbage_metrics_file(tmp_path):
    run = tmp_path / "run"
    _training_run(run)
    (run / "metrics.csv").write_bytes(b"\x8f\x00garbage,more\x01\n\xff\xfe,1,2\n")
    result = arena_cmd("report", run)
    assert result.returncode == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "metrics.csv: no `step` column" in line and "skipped" in line
    assert [p.name for p in (run / "plots").iterdir()] == ["eval_win_rates.png"]


# -- 8. nothing a user stored is lost: play --out, eval --json, report --out --------------------
def test_play_overwrite_keeps_a_users_env_state_folder(tmp_path, capsys):
    """`--overwrite` deleted DIR/env-state/ of a folder holding no run; without it the error
    called the user's folder AZR's task buffer and named --overwrite."""
    mine = tmp_path / "o"
    (mine / "env-state").mkdir(parents=True)
    (mine / "env-state" / "data.txt").write_text("mine\n")
    for flag in ("--overwrite", "--append"):
        code, _, err = arena(capsys, "play", KUHN, "-a", "random,heuristic", "-n", "2", "--out", mine, flag)
        assert code == 2 if flag == "--overwrite" else code == 0, err
        if flag == "--overwrite":
            assert_one_line(err, "env-state holds files")
            assert "AZR" not in err and "pass --overwrite" not in err
        assert (mine / "env-state" / "data.txt").read_text() == "mine\n"


def test_play_append_to_a_damaged_run_json_names_it_and_not_overwrite(tmp_path, capsys):
    run = _played(tmp_path, capsys)
    (run / "run.json").write_text("hello")
    code, _, err = arena(capsys, "play", KUHN, "-n", "2", "--out", run, "--append")
    assert code == 2
    assert_one_line(err, f"{run / 'run.json'} is not a readable run description")
    assert "repair it, or move it aside" in err and "--overwrite" not in err
    assert (run / "run.json").read_text() == "hello" and len((run / "episodes.jsonl").read_text().splitlines()) == 3


def test_eval_json_keeps_an_earlier_result(tmp_path, capsys):
    """`arena eval RUN2 --json F` replaced F, an earlier result (only the default name was kept)."""
    out = tmp_path / "e.json"
    assert arena(capsys, "eval", "tiny", "--env", KUHN, "-n", "2", "--json", out)[0] == 0
    first = out.read_text()
    code, stdout, err = arena(capsys, "eval", "tiny", "--env", KUHN, "-n", "2", "--seed", "7", "--json", out)
    assert code == 0, err
    assert out.read_text() == first and json.loads((tmp_path / "e-2.json").read_text())["seed"] == 7
    assert f"results written to {tmp_path / 'e-2.json'} ({out} holds an earlier result, kept)" in stdout


def test_eval_into_a_folder_it_cannot_write_stops_before_the_evaluation(tmp_path, capsys, monkeypatch):
    """A read-only run's `arena eval` evaluated, then failed with a PermissionError
    traceback: the results were not saved."""
    import os

    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and Path(path) != tmp_path)
    code, stdout, err = arena(capsys, "eval", "tiny", "--env", KUHN, "-n", "2", "--json", tmp_path / "e.json")
    assert code == 2 and "arena eval" not in stdout
    assert f"cannot write the results in {tmp_path} (not writable): give --json FILE in a folder you can write" in err


def test_report_out_keeps_a_users_png_and_replaces_its_own(tmp_path):
    run, out = tmp_path / "run", tmp_path / "figs"
    _training_run(run)
    out.mkdir()
    (out / "reward.png").write_text("my figure")
    line = one_line_error(arena_cmd("report", run, "--out", out))
    assert f"{out / 'reward.png'} was not written by arena report" in line
    assert (out / "reward.png").read_text() == "my figure" and not (out / "loss.png").exists()
    (out / "reward.png").unlink()
    for _ in range(2):  # its own plots are replaced
        assert arena_cmd("report", run, "--out", out).returncode == 0
    assert (out / "reward.png").read_bytes().startswith(b"\x89PNG")
