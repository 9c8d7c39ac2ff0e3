"""Append-only JSONL episode store.

`RUN_DIR/episodes.jsonl` holds one episode per line (`Episode.record()`), written by
`EpisodeWriter` one batch at a time with a single `write`: a killed process loses nothing
written. `fsync` (durability against power loss) follows at most once a second and at
`close`: an fsync per batch of a fast scripted run cost more than its encoding. A torn last
line (a killed writer's) is moved by the next writer to `episodes.torn.jsonl`, never
deleted. Encoding a record and reading the file are `arena.records` (`encode_record`,
`read_records`, `read_episodes`), re-exported here.

`RUN_DIR/run.json` describes the run (`arena.run_info`: the latest call's arguments,
`calls`, `status`, `episodes_completed`). `open_run` prepares a run folder: a new run, an
append (same env, arguments and schema, checked; indices and seeds continue) or a
deliberate overwrite; `EpisodeWriter` alone appends to a folder the caller has prepared.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from arena.episode import SCHEMA_VERSION, Episode
from arena.errors import ArenaError
from arena.records import (
    EPISODES_FILE,
    _parses,
    count_lines,
    encode_record,
    encode_record_json,
    episodes_path,
    read_episodes,
    read_lines,
    read_records,
)
from arena.run_info import (
    CHECKPOINTS_DIR,
    ENV_STATE_DIR,
    RUN_FILE,
    STATE_FILE,
    _now,
    is_training_run,
    last_checkpoint,
    read_run_info,
    resume_checkpoint,
    run_around,
    update_run_info,
    write_run_info,
)

# run.json and the checkpoints live in `arena.run_info`, the record format in `arena.records`;
# their names stay importable from here
__all__ = [
    "CHECKPOINTS_DIR",
    "EPISODES_FILE",
    "RUN_FILE",
    "RUN_MODES",
    "STATE_FILE",
    "EpisodeWriter",
    "RunContents",
    "count_lines",
    "encode_record",
    "encode_record_json",
    "episodes_path",
    "last_checkpoint",
    "lock_run",
    "open_run",
    "read_episodes",
    "read_lines",
    "read_records",
    "read_run_info",
    "resume_checkpoint",
    "scan_run",
    "update_run_info",
    "write_run_info",
]

RUN_MODES = ("new", "append", "overwrite")
_KERNEL_FS = ("/proc", "/sys", "/dev")
_INFO_EVERY_S = 5.0  # how often a writer opened by `open_run` refreshes run.json's counts


def _check_run_dir(run_dir: Path) -> Path:
    """Create the run folder, or one line saying why it cannot be one."""
    resolved = run_dir.resolve()
    for root in _KERNEL_FS:
        if resolved == Path(root) or Path(root) in resolved.parents:
            raise ArenaError(f"{run_dir} is under {root}, a kernel filesystem, not storage: give --out a folder on disk")
    if resolved.exists() and not resolved.is_dir():
        raise ArenaError(f"{run_dir} is a file, not a run folder: give --out a new or existing folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create run folder {run_dir}: {exc.strerror or exc}: give --out a writable folder") from None
    path = run_dir / EPISODES_FILE
    if path.exists() and not path.is_file():
        raise ArenaError(f"{path} is not a regular file: remove it or give --out another folder")
    return path


def torn_path(path: Path) -> Path:
    """`episodes.jsonl` -> `episodes.torn.jsonl`: where a torn last line is kept."""
    return path.with_name(f"{path.stem}.torn{path.suffix}")


def repair_tail(path: Path) -> Path | None:
    """Make the file end with a newline: a last line that parses gets its newline, a torn
    one (left by a killed writer) moves to `torn_path(path)` (returned; None when nothing
    moved), appended with a newline: its bytes may be a user's, so they are kept."""
    if not path.exists():
        return None
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        pos, chunk, start_of_line = size, 1 << 16, 0
        while pos > 0:  # walk back to the last newline
            start = max(0, pos - chunk)
            f.seek(start)
            idx = f.read(pos - start).rfind(b"\n")
            if idx >= 0:
                start_of_line = start + idx + 1
                break
            pos = start
        f.seek(start_of_line)
        tail = f.read(size - start_of_line)
        if _parses(tail):
            f.seek(size)
            f.write(b"\n")
            return None
        side = torn_path(path)
        with open(side, "ab") as keep:  # kept before the cut: a kill in between duplicates, never loses
            keep.write(tail + b"\n")
        f.truncate(start_of_line)
        return side


def lock_run(run_dir: Path) -> int:
    """An exclusive lock on the run folder (`flock` on the folder itself: no file is added),
    held by one writer for its life; returns its descriptor (`os.close` releases it). A
    second writer of the folder, in this process or another, is one line: two `--append`
    at once took the same indices and seeds, and run.json kept one call of the two. Where
    the filesystem has no `flock` (some network mounts) writers go unguarded, as before."""
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ArenaError(f"{run_dir} is being written by another arena command: wait for it to end, or give "
                         "another --out") from None
    except OSError:
        pass
    return fd


class EpisodeWriter:
    """Appends episodes to `RUN_DIR/episodes.jsonl`, a batch per write.

    Plain append to a folder the caller has prepared (see `open_run` for the checked way).

    Args:
        run_dir: the run folder (created if missing).
        lock: the folder's lock (`lock_run`) when the caller took it already; else taken
            here. Released at `close`.
        fsync: also `os.fsync` (durable against power loss, not only against the process
            being killed): after a batch when `fsync_every` seconds have passed since the
            last one, and at `close`. `fsync_every=0` syncs every batch.
    """

    def __init__(self, run_dir: str | os.PathLike[str], fsync: bool = True, fsync_every: float = 1.0,
                 lock: int | None = None):
        self.run_dir = Path(run_dir)
        self.path = _check_run_dir(self.run_dir)
        self._lock = lock_run(self.run_dir) if lock is None else lock
        try:
            self.moved_torn = repair_tail(self.path)  # another writer's line in progress is not torn: the lock first
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            if lock is None:  # the caller's own lock is the caller's to release
                os.close(self._lock)
            raise ArenaError(f"cannot open {self.path} for writing: {exc.strerror or exc}") from None
        self._start_size = os.fstat(self._fd).st_size  # where this writer's records begin
        self.fsync = fsync
        self.fsync_every = fsync_every
        self._synced = time.monotonic()
        self._dirty = False
        self.count = 0
        self._next_index: int | None = None
        self._first_index: int | None = None  # set by open_run: the call's first episode index
        self._base_count: int | None = None
        self._track_run = False  # set by open_run: refresh run.json's counts as episodes land
        self._info_time = time.monotonic()

    @property
    def next_index(self) -> int:
        """The episode index to use next: one past the largest `metadata.index` in the file
        (or the number of records, when larger), counting what this writer wrote."""
        if self._next_index is None:
            contents = scan_run(self.run_dir) if self.path.stat().st_size else RunContents()
            self._base_count = contents.count - self.count
            self._next_index = max(contents.count, contents.max_index + 1)
        return self._next_index

    @property
    def total(self) -> int:
        """Records in the file: those there before this writer plus those it wrote."""
        if self._base_count is None:
            _ = self.next_index  # scans the file once
        return (self._base_count or 0) + self.count

    def write(self, episodes: Iterable[Episode | dict[str, Any]]) -> int:
        """Append a batch; returns how many episodes were written."""
        lines = []
        indices = []
        for ep in episodes:
            record = ep.record() if isinstance(ep, Episode) else ep
            lines.append(encode_record(record))
            index = (record.get("metadata") or {}).get("index")
            indices.append(index if isinstance(index, int) else None)
        if not lines:
            return 0
        lines.append(b"")
        view = memoryview(b"\n".join(lines))
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self._dirty = True
            if self.fsync and time.monotonic() - self._synced >= self.fsync_every:
                self._sync()
        except OSError as exc:
            raise ArenaError(f"cannot write episodes to {self.path}: {exc.strerror or exc}") from None
        n = len(lines) - 1
        self.count += n
        if self._next_index is not None:
            for index in indices:
                self._next_index = max(self._next_index + (index is None), (index or 0) + 1)
        if self._track_run and time.monotonic() - self._info_time > _INFO_EVERY_S:
            self._info_time = time.monotonic()
            update_run_info(self.run_dir, call={"episodes_completed": self.count}, episodes_completed=self.total)
        return n

    def write_missing(self, episodes: Iterable[Episode]) -> int:
        """Append those of `episodes` whose `metadata.index` is not yet among the records this
        writer appended; returns how many. For an interrupted `arena.rollout.play`: it writes
        in index order, so episodes that finished while an earlier one still played wait in
        memory (an interrupted `arena play` once stored 1 of 31 finished episodes). The file
        is read back rather than trusted to `count`: an interrupt inside `write` can leave a
        batch stored but uncounted, or a torn line (cut off here, as `finish` would)."""
        self._recount()
        stored = self.stored_indices()
        return self.write([ep for ep in episodes if ep.metadata.get("index") not in stored])

    def stored_indices(self) -> set[Any]:
        """The `metadata.index` of every record this writer appended (None for one without)."""
        indices: set[Any] = set()
        with open(self.path, "rb") as f:
            f.seek(self._start_size)
            for raw in f:
                if not raw.strip():
                    continue
                record = json.loads(raw)
                metadata = record.get("metadata") if isinstance(record, dict) else None
                indices.add(metadata.get("index") if isinstance(metadata, dict) else None)
        return indices

    def finish(self, status: str, **fields: Any) -> None:
        """Record the end of this writer's call in run.json: status and completed counts.

        A call that did not complete is counted from the file (`_recount`): a Ctrl-C (or the
        CLI's SIGTERM) raised inside `write` after its bytes landed, e.g. in the fsync, skips
        `count`, and run.json would then say fewer episodes than the file holds."""
        if status != "complete":
            self._recount()
            fields = {**self._gaps(), **fields}
        stamp = _now()
        update_run_info(self.run_dir, call={"status": status, "episodes_completed": self.count, "ended": stamp, **fields},
                        status=status, episodes_completed=self.total, updated=stamp)

    def _gaps(self) -> dict[str, Any]:
        """For a call that stopped early: the last index it stored and the indices below it
        that it did not (episodes still playing when it stopped, while later ones finished
        and were stored), so that run.json's count agrees with the indices in the file."""
        stored = {i for i in self.stored_indices() if isinstance(i, int)}
        if self._first_index is None or not stored:
            return {}
        last = max(stored)
        return {"last_index": last, "missing_indices": sorted(set(range(self._first_index, last)) - stored)}

    def _recount(self) -> None:
        """Set `count` to the records this writer's file holds past where it began: a torn
        last line is cut off first (`repair_tail`, as the next open would), then newlines
        are counted, reading only what this writer appended."""
        if self._fd >= 0 and self._dirty and self.fsync:
            self._sync()
        repair_tail(self.path)
        counted = 0
        with open(self.path, "rb") as f:
            f.seek(self._start_size)
            while chunk := f.read(1 << 20):
                counted += chunk.count(b"\n")
        if counted != self.count:
            self._next_index = None  # rescanned on next use; the records before this writer stay as counted
            self.count = counted

    def _sync(self) -> None:
        os.fsync(self._fd)
        self._synced = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        """Sync what is not yet synced (with `fsync`), close the file, release the folder."""
        if self._fd >= 0:
            try:
                if self.fsync and self._dirty:
                    self._sync()
            finally:
                os.close(self._fd)
                self._fd = -1
                os.close(self._lock)

    def __del__(self) -> None:  # a writer dropped unclosed lets go of the file and the folder
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class RunContents:
    """What an episodes file holds, as `scan_run` found it."""

    count: int = 0
    max_index: int = -1
    schemas: set[Any] = field(default_factory=set)
    env_ids: set[str] = field(default_factory=set)
    env_kwargs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # env id -> distinct kwargs
    seeds: set[int] = field(default_factory=set)
    torn_lines: list[int] = field(default_factory=list)


def scan_run(run: str | os.PathLike[str]) -> RunContents:
    """Read every record's header fields; `ArenaError` naming file and line for a line that
    is not an arena episode record (so nothing appends to, or deletes, a foreign file)."""
    path = episodes_path(run)
    out = RunContents()
    for lineno, record in read_lines(path, skipped=out.torn_lines):
        if not isinstance(record, dict) or "schema" not in record or not isinstance(record.get("env_id"), str):
            raise ArenaError(f"{path}:{lineno}: not an arena episode record: this file was not written by arena")
        out.count += 1
        out.schemas.add(record["schema"])
        env_id = record["env_id"]
        out.env_ids.add(env_id)
        kwargs = record.get("env_kwargs") or {}
        seen = out.env_kwargs.setdefault(env_id, [])
        if kwargs not in seen:
            seen.append(kwargs)
        if isinstance(record.get("seed"), int):
            out.seeds.add(record["seed"])
        index = (record.get("metadata") or {}).get("index") if isinstance(record.get("metadata"), dict) else None
        if isinstance(index, int) and index > out.max_index:
            out.max_index = index
    return out


def _planned(info: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(env id, kwargs) pairs a call's info declares: `env_id` (a string or a list) with
    `env_kwargs` (a dict, or a list of one dict per env)."""
    env_id = info.get("env_id")
    if env_id is None:
        return []
    ids = [env_id] if isinstance(env_id, str) else list(env_id)
    kwargs = info.get("env_kwargs") or {}
    kwargs_of = [kwargs] * len(ids) if isinstance(kwargs, dict) else list(kwargs)
    return list(zip(ids, kwargs_of))


def _check_append(run_dir: Path, contents: RunContents, info: dict[str, Any], start: int) -> None:
    where = run_dir / EPISODES_FILE
    foreign = sorted(map(repr, contents.schemas - {SCHEMA_VERSION}))
    if foreign:
        raise ArenaError(f"{where} holds episode records of schema {', '.join(foreign)}; this arena writes schema "
                         f"{SCHEMA_VERSION}: use --overwrite or another --out (old files still load for replay)")
    planned = _planned(info)
    if planned:
        ids = {env_id for env_id, _ in planned}
        other = sorted(contents.env_ids - ids)
        if other:
            raise ArenaError(f"{where} holds episodes of {', '.join(other)}, not {', '.join(sorted(ids))}: "
                             "append only the same env, or give another --out")
        previous = read_run_info(run_dir)
        before = {p[0]: p[1] for p in _planned(previous)}
        from arena.registry import spec

        for env_id, kwargs in planned:
            # compared as the episodes record them: a corpus given as `d/c.jsonl` before and as
            # `/abs/d/c.jsonl` (or from another folder) now is the same file
            resolve = spec(env_id).load().resolve_kwargs
            kwargs = resolve(dict(kwargs))
            if env_id in before and resolve(dict(before[env_id])) != kwargs:
                raise ArenaError(f"{run_dir} was played with {env_id} arguments {before[env_id]}, not {kwargs}: "
                                 "append only with the same --kw, or give another --out")
            for stored in contents.env_kwargs.get(env_id, []):
                stored = resolve(dict(stored))  # episodes recorded before a path argument was resolved
                differ = sorted(k for k, v in kwargs.items() if k in stored and stored[k] != v)
                if differ:
                    raise ArenaError(f"{where} holds {env_id} episodes with {', '.join(f'{k}={stored[k]!r}' for k in differ)}, "
                                     f"not {', '.join(f'{k}={kwargs[k]!r}' for k in differ)}: append only with the same --kw")
    seed, episodes = info.get("seed"), info.get("episodes")
    stride = int(info.get("duplicate") or 1)  # duplicate deals: that many episodes share a seed
    if isinstance(seed, int) and isinstance(episodes, int) and contents.seeds:
        new = range(seed + start // stride, seed + (start + episodes - 1) // stride + 1)
        repeated = sorted(s for s in contents.seeds if s in new)
        if repeated:
            free = max(contents.seeds) + 1 - start // stride
            raise ArenaError(f"seeds {repeated[0]}..{repeated[-1]} were already played in {run_dir} "
                             f"({len(repeated)} repeats): append with --seed {max(free, 0)} or more")


def _is_training_run(run: Path) -> bool:
    """Whether `run` is a folder `arena train` wrote: `run_info.is_training_run` (its
    config.yaml), or run.json says `command: train`, or it has a training run's metrics.csv
    or checkpoints (a config.yaml lost). Appending play episodes there mixed them into the
    training record and replaced run.json's config; overwriting deleted the training episodes."""
    if not run.is_dir():
        return False
    if is_training_run(run):
        return True
    try:
        command = read_run_info(run).get("command")
    except ArenaError:  # an unreadable run.json: the files below still tell
        command = None
    return command == "train" or (run / "metrics.csv").is_file() or (run / CHECKPOINTS_DIR).is_dir()


def open_run(run_dir: str | os.PathLike[str], *, mode: str = "new", info: dict[str, Any],
             fsync: bool = True) -> EpisodeWriter:
    """Prepare a run folder for a call that writes episodes, record the call, return its writer.

    Modes:
        new: the folder must not hold a run yet (episodes.jsonl or run.json).
        append: add to an existing run (or start one): every record must be an arena record
            of this schema and of the env(s) in `info` (`env_id`, `env_kwargs`), the
            arguments must match the run's; `writer.next_index` continues the episode
            indices, and with `info["seed"]` and `info["episodes"]` no seed repeats
            (episode i's seed is `seed + i`, or `seed + i // info["duplicate"]` for duplicate
            deals played from that many seats).
        overwrite: delete the run's episodes.jsonl and run.json (only if they are arena's)
            and the env state of their episodes (`env-state/`, AZR's task buffer; only when
            run.json is arena's), then start afresh. Other files in the folder are left alone.

    A run.json or episodes.jsonl that is not arena's (no arena record in it) is refused in
    every mode, naming it. Calls run.json still says are running (killed) are marked
    `unfinished` with the episodes they stored.

    A training run's folder (`arena train`'s) is refused in every mode.

    run.json gets `info` at top level (the latest call), `status: running`, and `info`
    appended to its `calls` list with the mode, start time and first index. Call
    `writer.finish(status)` at the end (or `update_run_info`).
    """
    if mode not in RUN_MODES:
        raise ArenaError(f"run mode {mode!r} is not one of {', '.join(RUN_MODES)}")
    run = Path(run_dir)
    if _is_training_run(run):  # its episodes and run.json belong to the training run, whatever the mode
        raise ArenaError(f"{run} is a training run (arena train): choose another --out")
    outer = run_around(run)
    if outer is not None:  # RUN/model or RUN/checkpoints: replaced whole by the training run's resume
        raise ArenaError(f"{run} is inside the training run folder {outer}, which writes there: choose an --out "
                         "outside it")
    path = _check_run_dir(run)
    lock = lock_run(run)  # before the folder is read: another writer's records are not yet all there
    try:
        return _open_locked(run, path, lock, mode, info, fsync)
    except BaseException:
        os.close(lock)
        raise


def remove_unstored_run(run_dir: str | os.PathLike[str], *, remove_dir: bool) -> None:
    """Undo a new run (`open_run(mode="new")`) whose call failed before it stored an episode:
    its run.json (that one call's record), its empty episodes file and empty `env-state/`
    folders, and the folder itself when the call made it and it is left empty. Else the
    corrected command was refused ("already holds a run (0 episodes of no env)"). Anything
    holding data stays."""
    run = Path(run_dir)
    episodes = run / EPISODES_FILE
    if episodes.is_file() and episodes.stat().st_size:
        return
    episodes.unlink(missing_ok=True)
    (run / RUN_FILE).unlink(missing_ok=True)
    state = run / ENV_STATE_DIR
    for folder in sorted((p for p in state.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):  # not empty: kept
            folder.rmdir()
    with contextlib.suppress(OSError):
        state.rmdir()
    if remove_dir:
        with contextlib.suppress(OSError):
            run.rmdir()


def _arena_run_info(run_file: Path) -> dict[str, Any]:
    """run.json as arena wrote it ({} when there is none). A file that does not parse, or has
    no `calls` (`arena play`) or `command` (older versions, training), is one line naming
    it, in every mode: --overwrite replaced it and --append's fix (--overwrite) deleted the
    episodes too. arena replaces run.json atomically, so a damaged one is not its own doing."""
    if not run_file.exists():
        return {}
    info = read_run_info(run_file.parent)
    if not {"calls", "command"} & info.keys():
        raise ArenaError(f"{run_file} was not written by arena (it has no `calls` or `command`): move it away, "
                         "or give another --out")
    return info


def _check_env_state(run: Path, mode: str, arena_run: bool) -> None:
    """Keep a new run off files in `env-state/` (it would go on from them), and let
    --overwrite delete that folder only when an arena run.json says the folder holds a run's
    env state: else it deleted a user's `env-state/` in a folder that held no run."""
    state = run / ENV_STATE_DIR
    if mode == "append" or not (state.is_dir() and any(p.is_file() for p in state.rglob("*"))):
        return
    if mode == "new":
        raise ArenaError(f"{run} holds the env state of an earlier run or other files in {state}, which a new run "
                         "would go on from: move the folder aside, or give another --out")
    if not arena_run:
        raise ArenaError(f"{state} holds files but {run} holds no arena run.json saying they are a run's env state, "
                         "so --overwrite leaves them: move the folder aside, or give another --out")
    shutil.rmtree(state)  # the state of the episodes replaced (AZR's task buffer)


def _close_unfinished(run: Path, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Calls run.json still says are `running` ended without finishing (SIGKILL, a crash):
    the folder's lock is ours, so none of them writes any more. Each is marked `unfinished`
    with the episodes it stored (those of its index range); else run.json kept `running`
    and 0 episodes for them after every later call."""
    stale = [i for i, call in enumerate(calls) if call.get("status") == "running"]
    if not stale:
        return calls
    path = run / EPISODES_FILE
    indices = [] if not path.is_file() else [
        r["metadata"].get("index") for r in read_records(path) if isinstance(r, dict) and isinstance(r.get("metadata"), dict)]
    calls = list(calls)
    for i in stale:
        call = {**calls[i], "status": "unfinished"}
        lo = call.get("first_index")
        hi = calls[i + 1].get("first_index") if i + 1 < len(calls) else None
        if isinstance(lo, int):
            call["episodes_completed"] = sum(isinstance(x, int) and x >= lo and (hi is None or x < hi) for x in indices)
        calls[i] = call
    return calls


def _open_locked(run: Path, path: Path, lock: int, mode: str, info: dict[str, Any], fsync: bool) -> EpisodeWriter:
    run_file = run / RUN_FILE
    previous = _arena_run_info(run_file)
    has_episodes = path.exists() and path.stat().st_size > 0
    contents = scan_run(run) if has_episodes else RunContents()
    if has_episodes and not contents.count:  # e.g. one line of notes without a newline: not a torn tail of arena's
        raise ArenaError(f"{path} holds no complete arena episode, so it is not arena's: move it aside, or give "
                         "another --out")
    existing = has_episodes or run_file.exists()
    if existing and mode == "new":
        what = f"{contents.count} episodes of {', '.join(sorted(contents.env_ids)) or 'no env'}"
        raise ArenaError(f"{run} already holds a run ({what}): pass --append to add episodes to it, "
                         "--overwrite to replace it, or give another --out")
    _check_env_state(run, mode, arena_run=bool(previous))
    calls: list[dict[str, Any]] = []
    if existing and mode == "overwrite":
        for stale in (path, run_file):
            stale.unlink(missing_ok=True)
        contents = RunContents()
    elif existing:
        calls = _close_unfinished(run, list(previous.get("calls") or ([] if not previous else [dict(previous)])))
    start = max(contents.count, contents.max_index + 1)
    if mode == "append":
        _check_append(run, contents, info, start)
    writer = EpisodeWriter(run, fsync=fsync, lock=lock)
    writer._next_index, writer._base_count, writer._first_index = start, contents.count, start
    stamp = _now()
    call = {**info, "mode": mode, "started": stamp, "first_index": start, "status": "running", "episodes_completed": 0}
    write_run_info(run, {**info, "status": "running", "episodes_completed": contents.count, "updated": stamp,
                         "calls": [*calls, call]})
    writer._track_run = True
    return writer
