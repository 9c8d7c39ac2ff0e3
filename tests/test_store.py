"""Episode store: JSONL round trip, torn tails, SIGKILL mid-write, reading while written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from arena import ArenaError
from arena.episode import SCHEMA_VERSION, Episode, Turn
from arena.store import EpisodeWriter, read_episodes, read_records


def _episode(i: int, size: int = 10) -> Episode:
    return Episode(env_id="spiral/TicTacToe-v0", seed=i, agents={"player_0": "random", "player_1": "random"},
                   turns=[Turn(index=0, role="player_0", agent="random", observation="o" * size, completion="\\boxed{[4]}",
                               action="[4]", legal=True, reward=1.0)],
                   rewards={"player_0": 1.0, "player_1": -1.0}, outcome={"reason": "win", "winner": "player_0"}, id=str(i))


def test_round_trip_and_schema(tmp_path):
    with EpisodeWriter(tmp_path) as w:
        w.write([_episode(0), _episode(1)])
        w.write([_episode(2)])
    eps = list(read_episodes(tmp_path))
    assert [e.id for e in eps] == ["0", "1", "2"]
    assert eps[0] == _episode(0)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert all(json.loads(line)["schema"] == SCHEMA_VERSION for line in lines)


def test_nan_rewards_stay_strict_json(tmp_path):
    ep = _episode(0)
    ep.rewards["player_0"] = float("nan")
    with EpisodeWriter(tmp_path) as w:
        w.write([ep])
    record = next(read_records(tmp_path))
    assert record["rewards"]["player_0"] is None


def test_torn_tail_is_skipped_and_cut_by_next_writer(tmp_path):
    with EpisodeWriter(tmp_path) as w:
        w.write([_episode(0), _episode(1)])
    path = tmp_path / "episodes.jsonl"
    with open(path, "ab") as f:
        f.write(json.dumps(_episode(2).to_dict()).encode()[:37])  # a line cut mid-way
    assert [e.id for e in read_episodes(tmp_path)] == ["0", "1"]
    with EpisodeWriter(tmp_path) as w:
        w.write([_episode(3)])
    assert [e.id for e in read_episodes(tmp_path)] == ["0", "1", "3"]


def test_foreign_schema_and_garbage_are_clear_errors(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({**_episode(0).to_dict(), "schema": 99}) + "\n")
    with pytest.raises(ArenaError, match="schema 99"):
        list(read_episodes(tmp_path))
    path.write_text("this is not json\n")
    with pytest.raises(ArenaError, match="episodes.jsonl:1: not a JSON episode record"):
        list(read_episodes(tmp_path))
    with pytest.raises(ArenaError, match="no episodes at"):
        list(read_episodes(tmp_path / "nowhere"))


WRITER = r"""
import sys
from arena.store import EpisodeWriter
sys.path.insert(0, {tests!r})
from test_store import _episode
w = EpisodeWriter({run!r}, fsync=False)
i = 0
while True:
    w.write([_episode(i + k, size=200_000) for k in range(8)])  # ~1.6 MB a batch
    i += 8
    print(i, flush=True)
"""


def test_sigkill_mid_write_leaves_a_readable_file(tmp_path):
    """Kill a writer while it writes large batches: every complete line reads back, the
    torn tail (if any) is skipped, and a new writer appends after it."""
    run = tmp_path / "run"
    code = WRITER.format(tests=str(Path(__file__).parent), run=str(run))
    torn_seen = False
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3 + attempt):
            assert proc.stdout.readline(), "writer died early"
        # readable while being written
        assert len(list(read_records(run))) >= 8
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = (run / "episodes.jsonl").read_bytes()
        torn_seen |= not data.endswith(b"\n")
        episodes = list(read_episodes(run))
        assert len(episodes) >= 8 * (3 + attempt)
        assert all(ep.env_id == "spiral/TicTacToe-v0" for ep in episodes)
        with EpisodeWriter(run) as w:
            w.write([_episode(10**6)])
        again = list(read_episodes(run))
        assert again[-1].id == str(10**6) and len(again) == len(episodes) + 1
        if torn_seen:
            break
    # a torn tail is likely but not guaranteed with a real kill; the deterministic torn-tail
    # test above covers it either way
    os.sync()
