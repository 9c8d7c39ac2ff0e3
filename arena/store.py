"""Append-only JSONL episode store.

`RUN_DIR/episodes.jsonl` holds one episode per line (`Episode.to_dict()`), written by
`EpisodeWriter` one batch at a time with a single `write` followed by `flush` and `fsync`.
Readers (`read_episodes`) only take complete lines, so the file is readable while a run
writes it, and a writer killed mid-write (SIGKILL) leaves at worst a torn last line, which
readers skip and the next writer cuts off before appending. `RUN_DIR/run.json` describes
the run (env, agents, arguments, arena version).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from arena.episode import Episode
from arena.errors import ArenaError

EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "run.json"


def _repair_tail(path: Path) -> None:
    """Cut a torn last line (no trailing newline) left by a killed writer."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # walk back to the last newline
        pos = size
        chunk = 1 << 16
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            idx = data.rfind(b"\n")
            if idx >= 0:
                f.truncate(start + idx + 1)
                return
            pos = start
        f.truncate(0)


class EpisodeWriter:
    """Appends episodes to `RUN_DIR/episodes.jsonl`, a batch per write.

    Args:
        run_dir: the run folder (created if missing).
        fsync: also `os.fsync` after each batch (durable against power loss, not only
            against the process being killed).
    """

    def __init__(self, run_dir: str | os.PathLike[str], fsync: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / EPISODES_FILE
        _repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.fsync = fsync
        self.count = 0

    def write(self, episodes: Iterable[Episode | dict[str, Any]]) -> int:
        """Append a batch; returns how many episodes were written."""
        lines = []
        for ep in episodes:
            record = ep.to_dict() if isinstance(ep, Episode) else ep
            lines.append(json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)
        self.count += len(lines)
        return len(lines)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def episodes_path(run: str | os.PathLike[str]) -> Path:
    """The episodes file of a run folder (or the file itself)."""
    path = Path(run)
    if path.is_dir():
        path = path / EPISODES_FILE
    if not path.exists():
        raise ArenaError(f"no episodes at {path}: give a run folder written by `arena play` (or its {EPISODES_FILE})")
    return path


def read_records(run: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield the JSON records of every complete line; a torn last line is skipped."""
    path = episodes_path(run)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return  # torn tail of a killed writer, or a line still being written
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ArenaError(f"{path}:{lineno}: not a JSON episode record ({exc.msg})") from None


def read_episodes(run: str | os.PathLike[str]) -> Iterator[Episode]:
    """Yield the `Episode`s of a run folder or episodes file."""
    for record in read_records(run):
        yield Episode.from_dict(record)


def write_run_info(run_dir: str | os.PathLike[str], info: dict[str, Any]) -> None:
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    return json.loads(path.read_text()) if path.exists() else {}
