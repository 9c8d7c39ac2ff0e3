"""The mirror of a run's env state (`arena.env_state`): what data-parallel processes and
Ray actors play with, sent as the bytes the writer's files gained."""

from __future__ import annotations

import os

import pytest

from arena.env_state import StateMirror, apply_tail, file_sizes
from arena.errors import ArenaError


def _same(a, b) -> bool:
    return file_sizes(a) == file_sizes(b) and all((a / n).read_bytes() == (b / n).read_bytes() for n in file_sizes(a))


def test_a_mirror_gets_new_files_whole_then_their_new_bytes_only(tmp_path):
    state, copy = tmp_path / "env-state", tmp_path / "copy"
    (state / "azr").mkdir(parents=True)
    (state / "azr" / "tasks.jsonl").write_bytes(b'{"a": 1}\n')
    (state / "azr" / "tasks.after-checkpoint.jsonl").write_bytes(b"moved aside\n")  # never sent
    sent = StateMirror()
    first = sent.tail(state)
    assert first == {"azr/tasks.jsonl": (0, b'{"a": 1}\n')}
    apply_tail(copy, first)
    with open(state / "azr" / "tasks.jsonl", "ab") as f:
        f.write(b'{"b": 2}\n')
    (state / "other.jsonl").write_bytes(b"x\n")
    second = sent.tail(state)
    assert second == {"azr/tasks.jsonl": (9, b'{"b": 2}\n'), "other.jsonl": (0, b"x\n")}
    apply_tail(copy, second)
    assert _same(state, copy) and not (copy / "azr" / "tasks.after-checkpoint.jsonl").exists()
    assert sent.tail(state) == {}
    os.truncate(state / "azr" / "tasks.jsonl", 9)  # cut back: sent whole again
    apply_tail(copy, sent.tail(state))
    assert _same(state, copy)
    replaced = tmp_path / "replaced"  # a replaced Ray actor starts from nothing
    sent.reset()
    apply_tail(replaced, sent.tail(state))
    assert _same(state, replaced)


def test_a_tail_that_does_not_fit_the_mirror_or_leaves_it_is_refused(tmp_path):
    with pytest.raises(ArenaError, match="holds 0 bytes"):
        apply_tail(tmp_path, {"a.jsonl": (5, b"x\n")})
    with pytest.raises(ArenaError, match="outside the state folder"):
        apply_tail(tmp_path / "m", {"../escape.jsonl": (0, b"x\n")})
    assert not (tmp_path / "escape.jsonl").exists()
