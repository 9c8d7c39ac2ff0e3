"""Episode store: JSONL round trip, torn tails, SIGKILL mid-write, reading while written."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import arena.records
from arena import ArenaError
from arena.episode import SCHEMA_VERSION, Episode, Turn
from arena.store import (
    EpisodeWriter,
    encode_record,
    encode_record_json,
    open_run,
    read_episodes,
    read_records,
    read_run_info,
    scan_run,
    update_run_info,
)


def _episode(i: int, size: int = 10) -> Episode:
    return Episode(env_id="spiral/TicTacToe-v0", seed=i, agents={"player_0": "random", "player_1": "random"},
                   turns=[Turn(index=0, role="player_0", agent="random", observation="o" * size, completion="\\boxed{[4]}",
                               action="[4]", legal=True, reward=1.0)],
                   rewards={"player_0": 1.0, "player_1": -1.0}, outcome={"reason": "win", "winner": "player_0"}, id=str(i))


@pytest.fixture(params=["orjson", "json"])
def encoder(request, monkeypatch):
    """Run a test with orjson (the default) and with the standard-library fallback."""
    if request.param == "json":
        monkeypatch.setattr(arena.records, "_orjson", None)
    else:
        pytest.importorskip("orjson")
    return request.param


def test_round_trip_and_schema(tmp_path, encoder):
    with EpisodeWriter(tmp_path) as w:
        w.write([_episode(0), _episode(1)])
        w.write([_episode(2)])
    eps = list(read_episodes(tmp_path))
    assert [e.id for e in eps] == ["0", "1", "2"]
    assert eps[0] == _episode(0)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert all(json.loads(line)["schema"] == SCHEMA_VERSION for line in lines)


def test_nan_rewards_stay_strict_json(tmp_path, encoder):
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


def test_last_line_without_newline_is_a_complete_record(tmp_path):
    """jq, pandas and json.loads read 3 records from a file without its final newline: so
    do the readers, and the next writer keeps the third record."""
    path = tmp_path / "episodes.jsonl"
    lines = [json.dumps(_episode(i).to_dict()) for i in range(3)]
    path.write_text("\n".join(lines))  # no trailing newline
    assert [e.id for e in read_episodes(tmp_path)] == ["0", "1", "2"]
    with EpisodeWriter(tmp_path) as w:
        w.write([_episode(3)])
    assert [e.id for e in read_episodes(tmp_path)] == ["0", "1", "2", "3"]
    assert path.read_text().count("\n") == 4


def test_torn_tail_is_reported(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_episode(0).to_dict()) + "\n" + '{"env_id": "spi')
    skipped: list[int] = []
    assert [e.id for e in read_episodes(tmp_path, skipped=skipped)] == ["0"]
    assert skipped == [2]


def test_schema_1_records_still_load(tmp_path):
    """A line exactly as arena 0.1 wrote it (schema 1: every turn field, token fields null)."""
    old = ('{"env_id":"spiral/TicTacToe-v0","seed":4,"env_kwargs":{},"options":{},"agents":{"player_0":"random",'
           '"player_1":"random"},"turns":[{"index":0,"role":"player_0","agent":"random","observation":"o",'
           '"completion":"\\\\boxed{[4]}","action":"[4]","legal":true,"reward":1.0,"prompt_ids":null,"token_ids":null,'
           '"logprobs":null,"info":{"seconds":1e-05}}],"rewards":{"player_0":1.0,"player_1":-1.0},'
           '"outcome":{"reason":"win","winner":"player_0"},"sandbox_calls":[],"metadata":{"index":4},"id":"k-4","schema":1}')
    (tmp_path / "episodes.jsonl").write_text(old + "\n")
    (ep,) = read_episodes(tmp_path)
    assert ep.seed == 4 and ep.turns[0].completion == "\\boxed{[4]}" and ep.turns[0].token_ids is None
    assert ep.schema == SCHEMA_VERSION


def test_compact_records_keep_extra_metadata_and_turn_info(tmp_path, encoder):
    ep = _episode(0)
    ep.metadata.update({"index": 0, "step": 3})
    ep.turns[0].info["allowed_token_ids"] = [1, 2, 3]
    ep.turns[0].token_ids, ep.turns[0].logprobs = [5, 6], [-0.5, float("-inf")]
    with EpisodeWriter(tmp_path) as w:
        w.write([ep])
    line = json.loads((tmp_path / "episodes.jsonl").read_text())
    assert "prompt_ids" not in line["turns"][0] and line["turns"][0]["logprobs"] == [-0.5, None]
    (back,) = read_episodes(tmp_path)
    assert back.metadata == {"index": 0, "step": 3} and back.turns[0].info["allowed_token_ids"] == [1, 2, 3]
    assert back.turns[0].token_ids == [5, 6] and back.turns[0].prompt_ids is None
    assert Episode.from_dict(_episode(1).to_dict()) == _episode(1)


def test_text_with_lone_surrogates_and_non_ascii_round_trips(tmp_path, encoder):
    ep = _episode(0)
    ep.turns[0].completion = "caf\u00e9 \ud800 \U0001f600"
    with EpisodeWriter(tmp_path) as w:
        w.write([ep])
    assert (tmp_path / "episodes.jsonl").read_bytes().isascii()
    assert next(read_episodes(tmp_path)).turns[0].completion == ep.turns[0].completion


class _Numpyish:
    """Stands for a numpy scalar: only `item` makes it JSON."""

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


def _exotic_record() -> dict:
    record = _episode(0).record()
    record["turns"][0].update(
        observation="caf\u00e9 \u2028 \x00\x1f \"q\" \\ \U0001f600 \r\n\t", completion="\u00fc" * 3,
        logprobs=[0.1, 1 / 3, 1e16, 4e-06, -0.0, 5e-324, 1.7976931348623157e308, float("nan"), float("-inf")],
        token_ids=[0, 2**63 - 1, -(2**63)],
        info={"np": _Numpyish(0.25), "arr": [1, 2], "set": {3, 1, 2}, "tuple": (1, "a"), "nested": {"x": [{"y": None}]}})
    return record


def test_orjson_and_json_encodings_read_back_the_same(encoder):
    """Both encoders: strict JSON (null for NaN and infinities), every value read back exactly,
    floats included; the fallback is pure ASCII."""
    pytest.importorskip("orjson")
    record = _exotic_record()
    fast, plain = encode_record(record), encode_record_json(record)
    assert plain.isascii() and b"\n" not in fast and b"\n" not in plain
    assert json.loads(fast) == json.loads(plain)
    back = json.loads(fast)["turns"][0]
    assert back["logprobs"][:7] == record["turns"][0]["logprobs"][:7] and back["logprobs"][7:] == [None, None]
    assert math.copysign(1, back["logprobs"][4]) == -1
    assert back["info"]["np"] == 0.25 and back["info"]["set"] == [1, 2, 3] and back["info"]["tuple"] == [1, "a"]
    assert back["observation"] == record["turns"][0]["observation"]
    assert json.loads(fast, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


@pytest.mark.parametrize("value", ["a \ud800 lone surrogate", 2**64, {1: "int key"}])
def test_what_orjson_refuses_goes_through_the_standard_encoder(value, encoder):
    record = _episode(0).record()
    record["turns"][0]["info"]["x"] = value
    line = encode_record(record)
    assert line == encode_record_json(record)
    assert json.loads(line)["turns"][0]["info"]["x"] == (json.loads(json.dumps(value)) if not isinstance(value, str)
                                                        else value)


def test_numpy_non_finite_values_and_keys_beside_what_orjson_refuses_are_stored(encoder):
    """The standard encoder's retry cleans numpy scalars too: a float32 NaN (not a float) once
    raised a traceback there, and an np.int64 key was refused."""
    np = pytest.importorskip("numpy")
    record = _episode(0).record()
    record["turns"][0]["info"]["x"] = {"text": "\ud800", "nan": np.float32("nan"), np.int64(3): np.array([1.0, np.inf])}
    back = json.loads(encode_record(record))["turns"][0]["info"]["x"]
    assert back == {"text": "\ud800", "nan": None, "3": [1.0, None]}


@pytest.mark.parametrize("value", [object(), _episode(0), __import__("datetime").datetime(2024, 1, 1)])
def test_unstorable_values_are_one_line_errors_with_both_encoders(tmp_path, encoder, value):
    ep = _episode(0)
    ep.turns[0].info["x"] = value
    with EpisodeWriter(tmp_path) as w, pytest.raises(ArenaError, match="cannot be stored as JSON"):
        w.write([ep])


def test_both_encoders_write_files_that_read_back_the_same(tmp_path, monkeypatch):
    pytest.importorskip("orjson")
    eps = [_episode(i) for i in range(3)]
    eps[1].turns[0].observation = "caf\u00e9 \u2028 \U0001f600"
    eps[2].rewards["player_0"] = float("nan")
    with EpisodeWriter(tmp_path / "fast") as w:
        w.write(eps)
    monkeypatch.setattr(arena.records, "_orjson", None)
    with EpisodeWriter(tmp_path / "plain") as w:
        w.write(eps)
    fast, plain = list(read_records(tmp_path / "fast")), list(read_records(tmp_path / "plain"))
    assert fast == plain and len(fast) == 3
    assert not (tmp_path / "fast" / "episodes.jsonl").read_bytes().isascii()
    assert (tmp_path / "plain" / "episodes.jsonl").read_bytes().isascii()


def test_records_read_with_jq(tmp_path, encoder):
    jq = __import__("shutil").which("jq")
    if jq is None:
        pytest.skip("jq is not installed")
    ep = _episode(0)
    ep.turns[0].observation = "caf\u00e9 \u2028 \U0001f600\nline"
    ep.rewards["player_0"] = float("inf")
    with EpisodeWriter(tmp_path) as w:
        w.write([ep, _episode(1)])
    out = subprocess.run([jq, "-c", "[.turns[0].observation, .rewards.player_0, .id]", str(tmp_path / "episodes.jsonl")],
                         capture_output=True, text=True, check=True).stdout.split("\n")[:-1]
    assert [json.loads(line) for line in out] == [[ep.turns[0].observation, None, "0"], ["o" * 10, 1.0, "1"]]


def test_null_rewards_read_back_as_nan(tmp_path, encoder):
    ep = _episode(0)
    ep.rewards["player_0"] = float("inf")
    ep.turns[0].reward = float("nan")
    with EpisodeWriter(tmp_path) as w:
        w.write([ep])
    (back,) = read_episodes(tmp_path)
    assert math.isnan(back.rewards["player_0"]) and math.isnan(back.turns[0].reward)


def _line(**changes) -> str:
    record = _episode(0).to_dict()
    record.update(changes)
    return json.dumps(record)


def _turn_line(**changes) -> str:
    record = _episode(0).to_dict()
    record["turns"][0].update(changes)
    return json.dumps(record)


@pytest.mark.parametrize(("line", "message"), [
    ("[1,2,3]", "a JSON list, not an object"),
    ('"hello"', "a JSON string, not an object"),
    ('{"a": 1}', "no `schema` field"),
    (_line(turns="abc"), "'turns' must be a list"),
    (_line(turns=[1]), "'turns[0]' must be a turn object"),
    (_turn_line(bogus=1), "unknown key(s) 'bogus'"),
    (_turn_line(reward="x"), "'turns[0].reward' must be a number or null"),
    (_turn_line(legal="yes"), "'turns[0].legal' must be boolean or null"),
    (_line(rewards={"player_0": "high"}), "'rewards.player_0' must be a number"),
    (_line(rewards=[1]), "'rewards' must be a JSON object"),
    (_line(seed="7"), "'seed' must be an integer or null, got string"),
    (_line(schema=2.5), "schema 2.5"),
    (_line(extra=1), "unknown field(s) 'extra'"),
])
def test_bad_records_are_one_line_errors_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_episode(0).to_dict()) + "\n" + line + "\n")
    with pytest.raises(ArenaError) as info:
        list(read_episodes(tmp_path))
    text = str(info.value)
    assert text.startswith(f"{path}:2: ") and message in text and "\n" not in text


def test_bad_run_folders_are_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArenaError, match="is a file, not a run folder"):
        EpisodeWriter(tmp_path / "file")
    with pytest.raises(ArenaError, match="cannot create run folder"):
        EpisodeWriter(tmp_path / "file" / "run")
    for kernel in ("/proc/arena-run", "/sys/arena-run", "/proc/self"):
        with pytest.raises(ArenaError, match="kernel filesystem"):
            EpisodeWriter(kernel)
    (tmp_path / "dir" / "episodes.jsonl").mkdir(parents=True)
    with pytest.raises(ArenaError, match="not a regular file"):
        EpisodeWriter(tmp_path / "dir")
    for run in (tmp_path / "dir", tmp_path / "dir" / "episodes.jsonl"):
        with pytest.raises(ArenaError, match="episodes.jsonl is a folder, not an episodes file"):
            list(read_episodes(run))


INFO = {"command": "play", "env_id": "spiral/TicTacToe-v0", "env_kwargs": {}, "seed": 0, "episodes": 2}


def _indexed(i: int, seed: int | None = None) -> Episode:
    ep = _episode(i)
    ep.seed = i if seed is None else seed
    ep.metadata["index"] = i
    return ep


def test_open_run_new_refuses_an_existing_run(tmp_path):
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        w.write([_indexed(0), _indexed(1)])
        w.finish("complete")
    with pytest.raises(ArenaError, match=r"already holds a run \(2 episodes of spiral/TicTacToe-v0\): pass --append"):
        open_run(run, info=INFO)
    open_run(tmp_path / "empty", info=INFO).close()  # an empty or missing folder is fine


def test_open_run_append_continues_indices_and_records_every_call(tmp_path):
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        assert w.next_index == 0
        w.write([_indexed(0), _indexed(1)])
        assert w.next_index == 2
        w.finish("complete")
    with open_run(run, mode="append", info=INFO) as w:
        assert w.next_index == 2
        w.write([_indexed(2), _indexed(3)])
        w.finish("interrupted")
    info = read_run_info(run)
    assert [c["mode"] for c in info["calls"]] == ["new", "append"]
    assert [c["first_index"] for c in info["calls"]] == [0, 2]
    assert [c["episodes_completed"] for c in info["calls"]] == [2, 2]
    assert [c["status"] for c in info["calls"]] == ["complete", "interrupted"]
    assert info["status"] == "interrupted" and info["episodes_completed"] == 4
    assert EpisodeWriter(run).next_index == 4


def test_open_run_append_refuses_other_env_kwargs_schema_seeds_and_foreign_files(tmp_path):
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        w.write([_indexed(0), _indexed(1)])
    with pytest.raises(ArenaError, match="holds episodes of spiral/TicTacToe-v0, not spiral/KuhnPoker-v0"):
        open_run(run, mode="append", info={**INFO, "env_id": "spiral/KuhnPoker-v0"})
    with pytest.raises(ArenaError, match="arguments"):
        open_run(run, mode="append", info={**INFO, "env_kwargs": {"mode": "eval"}})
    # records with seeds 2 and 3 at indices 0 and 1: --seed 0 would play seeds 2 and 3 again
    (run / "episodes.jsonl").write_text("".join(json.dumps(_indexed(i, seed=i + 2).to_dict()) + "\n" for i in range(2)))
    with pytest.raises(ArenaError, match=r"seeds 2..3 were already played .* --seed 2 or more"):
        open_run(run, mode="append", info=INFO)
    open_run(run, mode="append", info={**INFO, "seed": 2}).close()
    # duplicate deals (each seed played from 2 seats): indices 2 and 3 get seed + 1, which --seed 2 played
    with pytest.raises(ArenaError, match=r"seeds 3..3 were already played .* --seed 3 or more"):
        open_run(run, mode="append", info={**INFO, "seed": 2, "duplicate": 2})
    open_run(run, mode="append", info={**INFO, "seed": 3, "duplicate": 2}).close()
    old = tmp_path / "old"
    old.mkdir()
    (old / "episodes.jsonl").write_text(_line(schema=1) + "\n")
    with pytest.raises(ArenaError, match="schema 1; this arena writes schema 2: use --overwrite"):
        open_run(old, mode="append", info=INFO)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "episodes.jsonl").write_text('{"text": "a dataset line"}\n')
    for mode in ("append", "overwrite"):
        with pytest.raises(ArenaError, match="episodes.jsonl:1: not an arena episode record"):
            open_run(foreign, mode=mode, info=INFO)
    assert (foreign / "episodes.jsonl").exists()


def test_open_run_overwrite_replaces_the_run_files_only(tmp_path):
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        w.write([_indexed(0), _indexed(1)])
    (run / "notes.txt").write_text("mine")
    with open_run(run, mode="overwrite", info=INFO) as w:
        assert w.next_index == 0
        w.write([_indexed(0)])
    assert scan_run(run).count == 1 and (run / "notes.txt").read_text() == "mine"
    assert [c["mode"] for c in read_run_info(run)["calls"]] == ["overwrite"]


def test_update_run_info_merges(tmp_path):
    with open_run(tmp_path, info=INFO):
        pass
    info = update_run_info(tmp_path, step=5, call={"status": "failed"})
    assert info["step"] == 5 and info["calls"][-1]["status"] == "failed" and info["env_id"] == INFO["env_id"]
    assert read_run_info(tmp_path) == info


WRITER = r"""
import sys
from arena.store import EpisodeWriter
sys.path.insert(0, {tests!r})
from test_store import _episode
w = EpisodeWriter({run!r}, fsync=False)
i = 0
while sys.stdin.readline():  # one batch per line from the test: the file stays small
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
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(3 + attempt):
            proc.stdin.write("\n")
            proc.stdin.flush()
            assert proc.stdout.readline(), "writer died early"
        # readable while being written
        assert len(list(read_records(run))) >= 8
        proc.stdin.write("\n")  # one more batch, killed while it is being written
        proc.stdin.flush()
        time.sleep(0.002 * attempt)
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


def test_record_keeps_field_order_and_only_the_fields():
    ep = _episode(0)
    ep.turns[0].extra = "not a field"  # an attribute set on the instance is not stored
    ep.turns.append(Turn(index=1, role="player_1", agent="random", observation="p", completion="c", token_ids=[1]))
    first, second = ep.record()["turns"]
    assert list(first) == ["index", "role", "agent", "observation", "completion", "action", "legal", "reward", "info"]
    assert list(second) == [*list(first)[:-1], "token_ids", "info"]
    assert list(ep.record(compact=False)["turns"][0])[8:] == ["prompt_ids", "token_ids", "logprobs", "info"]


def test_an_interrupt_inside_a_write_after_its_bytes_landed_is_still_counted(tmp_path, monkeypatch):
    """Ctrl-C (or the CLI's SIGTERM) raised in the fsync that follows a batch's write: the
    batch is in the file but `write` never counted it. An interrupted call's run.json counts
    what the file holds (`arena play` once recorded 395 of 418 stored episodes this way)."""
    run = tmp_path / "run"
    writer = open_run(run, info=INFO)
    writer.fsync_every = 0  # sync after every batch
    writer.write([_episode(i) for i in range(3)])

    def interrupted_sync() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_sync", interrupted_sync)
    with pytest.raises(KeyboardInterrupt):
        writer.write([_episode(i) for i in range(3, 7)])
    monkeypatch.undo()
    assert writer.count == 3  # the race: 7 records stored, 3 counted
    writer.close()
    writer.finish("interrupted")
    stored = len((run / "episodes.jsonl").read_text().splitlines())
    info = read_run_info(run)
    assert stored == 7 and writer.count == 7
    assert info["episodes_completed"] == 7 and info["calls"][-1]["episodes_completed"] == 7
    assert info["status"] == "interrupted"


def test_write_missing_stores_the_held_back_episodes_once(tmp_path):
    """An interrupted `play` holds episodes that finished ahead of an earlier one (it writes in
    index order); `write_missing` stores those the file lacks, never one twice."""
    run = tmp_path / "run"
    writer = open_run(run, info=INFO)
    writer.write([_indexed(0), _indexed(1)])
    with open(run / "episodes.jsonl", "ab") as f:  # a batch interrupted mid-write: stored, torn, uncounted
        f.write(encode_record(_indexed(2).record()) + b"\n" + encode_record(_indexed(3).record())[:20])
    assert writer.write_missing([_indexed(i) for i in (0, 1, 2, 3, 5, 6)]) == 3
    writer.close()
    writer.finish("interrupted")
    indices = [ep.metadata["index"] for ep in read_episodes(run)]
    assert indices == [0, 1, 2, 3, 5, 6] and writer.count == 6
    assert read_run_info(run)["episodes_completed"] == 6


@pytest.mark.parametrize("marker", ["run.json", "metrics.csv", "checkpoints"])
@pytest.mark.parametrize("mode", ["new", "append", "overwrite"])
def test_open_run_refuses_a_training_run(tmp_path, marker, mode):
    """`arena play --out RUN --append/--overwrite` on a folder `arena train` wrote appended to
    its episodes and replaced its run.json (or deleted both)."""
    run = tmp_path / "train"
    with EpisodeWriter(run) as w:  # as the trainer writes its episodes
        w.write([_indexed(0)])
    if marker == "run.json":
        (run / "run.json").write_text(json.dumps({"command": "train", "config": {"env": ["spiral/TicTacToe-v0"]},
                                                  "status": "complete"}))
    elif marker == "metrics.csv":
        (run / "metrics.csv").write_text("step,loss\n1,0.5\n")
    else:
        (run / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ArenaError, match=rf"^{run} is a training run \(arena train\): choose another --out$"):
        open_run(run, mode=mode, info=INFO)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_torn_line_mid_file_names_line_and_whole_json_error(tmp_path):
    path = tmp_path / "episodes.jsonl"
    good = json.dumps(_episode(0).to_dict())
    path.write_text(good + "\n" + good[:39] + "\x01" + good[39:] + "\n" + good + "\n")
    with pytest.raises(ArenaError) as info:
        list(read_episodes(tmp_path))
    assert str(info.value) == (f"{path}:2: not a JSON episode record (Invalid control character at: line 2 column 40 "
                               "(char 39)): repair or delete that line")


@pytest.mark.parametrize(("fields", "message"), [
    (["seed"], "no 'seed' field:"),
    (["env_id", "seed"], "no 'env_id', 'seed' fields:"),
])
def test_a_record_without_seed_is_a_one_line_error(tmp_path, fields, message):
    record = _episode(0).to_dict()
    for name in fields:
        del record[name]
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_episode(0).to_dict()) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ArenaError) as info:
        list(read_episodes(tmp_path))
    assert str(info.value).startswith(f"{path}:2: episode record has {message}")


def test_a_run_folder_has_one_writer_at_a_time(tmp_path):
    """Two appends at once took the same indices and seeds, and run.json kept one of the two
    calls: the second writer of a folder is refused in one line, and the folder is free again
    once the first closes."""
    from arena.store import lock_run, open_run

    info = {"env_id": "spiral/TicTacToe-v0", "env_kwargs": {}, "seed": 0, "episodes": 1}
    first = open_run(tmp_path / "run", mode="append", info=info)
    for attempt in (lambda: open_run(tmp_path / "run", mode="append", info={**info, "seed": 5}),
                    lambda: EpisodeWriter(tmp_path / "run"), lambda: lock_run(tmp_path / "run")):
        with pytest.raises(ArenaError, match="being written by another arena command"):
            attempt()
    first.write([_episode(0)])
    first.finish("complete")
    first.close()
    second = open_run(tmp_path / "run", mode="append", info={**info, "seed": 5})
    second.close()
    assert [c["status"] for c in read_run_info(tmp_path / "run")["calls"]] == ["complete", "running"]


# -- nothing a user stored is lost: foreign run files, env-state, torn tails, killed calls ------
def test_overwrite_deletes_env_state_only_beside_an_arena_run_json(tmp_path):
    """`--overwrite` deleted a user's `env-state/` in a folder that held no run; without it,
    the refusal called the user's folder AZR's task buffer and named --overwrite."""
    mine = tmp_path / "mine"
    (mine / "env-state").mkdir(parents=True)
    (mine / "env-state" / "data.txt").write_text("mine")
    for mode, says in (("new", "holds the env state of an earlier run or other files in"), ("overwrite", "no arena run.json")):
        with pytest.raises(ArenaError, match=says) as info:
            open_run(mine, mode=mode, info=INFO)
        assert "AZR" not in str(info.value) and "--overwrite to" not in str(info.value)
    assert (mine / "env-state" / "data.txt").read_text() == "mine" and not (mine / "run.json").exists()
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        w.write([_indexed(0)])
        w.finish("complete")
    (run / "env-state" / "azr").mkdir(parents=True)
    (run / "env-state" / "azr" / "azr_tasks.jsonl").write_text("{}\n")
    open_run(run, mode="overwrite", info=INFO).close()  # an arena run's own env state goes with it
    assert not (run / "env-state").exists()


@pytest.mark.parametrize("mode", ["new", "append", "overwrite"])
def test_a_run_json_that_does_not_parse_is_refused_naming_it(tmp_path, mode):
    """A run.json holding `hello` was replaced by --overwrite without a word, and --append's
    message steered to --overwrite, which deletes the episodes."""
    run = tmp_path / "run"
    with open_run(run, info=INFO) as w:
        w.write([_indexed(0)])
        w.finish("complete")
    (run / "run.json").write_text("hello")
    with pytest.raises(ArenaError, match=r"run.json is not a readable run description .*repair it, or move it aside") as info:
        open_run(run, mode=mode, info=INFO)
    assert "--overwrite" not in str(info.value)
    assert (run / "run.json").read_text() == "hello" and scan_run(run).count == 1


@pytest.mark.parametrize("mode", ["new", "append", "overwrite"])
def test_an_episodes_file_without_an_arena_episode_is_refused(tmp_path, mode):
    """One line of notes without a newline read as a torn tail: --append and --overwrite erased it."""
    (tmp_path / "episodes.jsonl").write_text("my precious notes")
    with pytest.raises(ArenaError, match="episodes.jsonl holds no complete arena episode"):
        open_run(tmp_path, mode=mode, info=INFO)
    assert (tmp_path / "episodes.jsonl").read_text() == "my precious notes"
    assert not (tmp_path / "episodes.torn.jsonl").exists()


def test_a_torn_tail_is_moved_to_a_side_file_not_deleted(tmp_path):
    with open_run(tmp_path, info=INFO) as w:
        w.write([_indexed(0), _indexed(1)])
        w.finish("complete")
    with open(tmp_path / "episodes.jsonl", "a") as f:
        f.write('{"env_id": "spi')
    with open_run(tmp_path, mode="append", info=INFO) as w:
        assert w.moved_torn == tmp_path / "episodes.torn.jsonl"
        w.write([_indexed(2)])
    assert [e.metadata["index"] for e in read_episodes(tmp_path)] == [0, 1, 2]
    assert (tmp_path / "episodes.torn.jsonl").read_text() == '{"env_id": "spi\n'


def test_a_killed_call_is_marked_unfinished_with_what_it_stored_by_the_next(tmp_path):
    """A SIGKILLed `arena play` stayed `running` with 0 episodes in run.json after every later call."""
    with open_run(tmp_path, info=INFO) as w:  # killed: no finish
        w.write([_indexed(0), _indexed(1), _indexed(2)])
    with open_run(tmp_path, mode="append", info={**INFO, "seed": 3}) as w:
        w.write([_indexed(3)])
        w.finish("complete")
    calls = read_run_info(tmp_path)["calls"]
    assert [(c["status"], c["episodes_completed"]) for c in calls] == [("unfinished", 3), ("complete", 1)]


def test_an_interrupted_call_records_its_last_index_and_the_indices_it_did_not_store(tmp_path):
    """After Ctrl-C run.json said 3 episodes while the file's largest index was 4: episodes
    finished ahead of one still playing are stored, so run.json names the gap."""
    with open_run(tmp_path, info=INFO) as w:
        w.write([_indexed(0), _indexed(1), _indexed(4)])
        w.close()
        w.finish("interrupted")
    call = read_run_info(tmp_path)["calls"][-1]
    assert (call["episodes_completed"], call["last_index"], call["missing_indices"]) == (3, 4, [2, 3])
