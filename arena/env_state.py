"""State that lasts a run (AZR's task buffer): a fold of the run's episodes in index order.

An env that keeps such state says where in `ArenaEnv.run_kwargs` (files under the run's
`env-state/` folder) and grows it in `ArenaEnv.after_episode`, which is called once per
episode, in index order:

- `arena.rollout.play` calls it as each episode is finished and stored (`arena play`
  through `FoldAsStored`, which also folds what an interrupt leaves to `write_missing`);
- training calls it after each step for the step's whole batch (`fold_episodes`), in the
  process that writes the episodes. Every episode of a step therefore sees the state as it
  was at the step's start, however the step is split over data-parallel processes or Ray
  actors and whatever the concurrency: the state after step t is a function of the episodes
  of steps < t, and a resume that cuts the episodes and `env-state/` back to a checkpoint
  continues it exactly.

The processes that play shares of a step without writing (data-parallel ranks > 0, Ray
actors, possibly on other machines) hold a mirror of the writer's `env-state/` folder in a
folder of their own: before each step they receive what the writer's files gained since
their last copy (`StateMirror.tail`, `apply_tail`; the files are append-only, so that is
their new bytes).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arena.episode import Episode
from arena.errors import ArenaError

#: {file under the folder: (offset, bytes from that offset on)}
Tail = dict[str, tuple[int, bytes]]


def file_sizes(root: Path) -> dict[str, int]:
    """{path under `root`: bytes} of every file envs keep there, those a resume moved aside
    (`*.after-checkpoint.*`) left out."""
    root = Path(root)
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and ".after-checkpoint" not in p.name}


def fold_episodes(env_ids: Sequence[str], kwargs_of: Sequence[Mapping[str, Any]],
                  episodes: Sequence[Episode]) -> None:
    """Call `after_episode(kwargs, episode)` of each episode's env class, in the order given
    (index order), with the env's run arguments (`kwargs_of[i]` for `env_ids[i]`)."""
    fold = episode_fold(env_ids, kwargs_of)
    if fold is not None:
        fold(episodes)


def episode_fold(env_ids: Sequence[str], kwargs_of: Sequence[Mapping[str, Any]]
                 ) -> Callable[[Sequence[Episode]], None] | None:
    """`fold_episodes` for these envs as one function of the episodes (its lookups done once),
    or None when none of the envs keeps state over a run (`after_episode` not overridden)."""
    from arena.protocol import ArenaEnv
    from arena.registry import spec

    by_id = {}
    for e, kwargs in zip(env_ids, kwargs_of, strict=True):
        cls = spec(e).load()
        if getattr(cls.after_episode, "__func__", None) is not ArenaEnv.after_episode.__func__:
            by_id[e] = cls, cls.resolve_kwargs({**spec(e).kwargs, **kwargs})  # as `make` builds the env
    if not by_id:
        return None

    def fold(episodes: Sequence[Episode]) -> None:
        for ep in episodes:
            if ep.env_id in by_id:
                cls, kwargs = by_id[ep.env_id]
                cls.after_episode(dict(kwargs), ep)
            elif ep.env_id not in env_ids:
                raise ArenaError(f"episode {ep.id} plays {ep.env_id}, not one of the run's envs ({', '.join(env_ids)})")

    return fold


class FoldAsStored:
    """Stands in for a run's `EpisodeWriter` in `arena.rollout.play` (which then folds
    nothing itself: `run_state=False`): stores each batch, then folds its episodes into the
    run's env state, and remembers which it folded. After an interrupt, `store_rest` stores
    the finished episodes the file lacks and folds every stored one not folded yet, so each
    stored episode is folded exactly once, whichever line the interrupt fell on (`arena
    play`: an episode that finished ahead of an earlier one waits in memory).

    Args:
        writer: the run's writer.
        fold: `episode_fold` of the run's envs (None: nothing to fold).
    """

    def __init__(self, writer: Any, fold: Callable[[Sequence[Episode]], None] | None):
        self.writer, self.fold = writer, fold
        self.folded: set[Any] = set()

    def write(self, episodes: Sequence[Episode]) -> int:
        count = self.writer.write(episodes)
        self._fold(episodes)
        return count

    def store_rest(self, finished: Sequence[Episode]) -> None:
        self.writer.write_missing(finished)
        stored = self.writer.stored_indices()
        self._fold(sorted((ep for ep in finished if ep.metadata.get("index") in stored),
                          key=lambda ep: ep.metadata.get("index")))

    def _fold(self, episodes: Sequence[Episode]) -> None:
        for ep in episodes:
            index = ep.metadata.get("index")
            if self.fold is not None and index not in self.folded:
                self.fold([ep])
                self.folded.add(index)


class StateMirror:
    """What one mirror of a writer's state folder already holds: `tail(root)` gives the
    bytes it lacks and counts them as sent. A new mirror (or `reset()`, for a replaced
    Ray actor) gets every file whole."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    def reset(self) -> None:
        self.sent = {}

    def tail(self, root: Path) -> Tail:
        out: Tail = {}
        for name, size in file_sizes(root).items():
            have = self.sent.get(name, 0)
            if size == have:
                continue
            start = have if size > have else 0  # a file cut back (never within a run's session): sent whole
            with open(Path(root) / name, "rb") as f:
                f.seek(start)
                out[name] = (start, f.read(size - start))
            self.sent[name] = size
        return out


def apply_tail(root: Path, tail: Tail) -> None:
    """Make the mirror folder `root` hold what `tail` adds: each file cut to its offset and the
    bytes written from there."""
    root = Path(root)
    for name, (offset, data) in tail.items():
        path = root / name
        if not path.resolve().is_relative_to(root.resolve()):
            raise ArenaError(f"env state file {name!r} is outside the state folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            if f.tell() < offset:
                raise ArenaError(f"the mirror of {name} holds {f.tell()} bytes, the writer's tail starts at {offset}")
            f.truncate(offset)
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(data)


def mirror_folder() -> Path:
    """A new, empty folder for a mirror of the run's env state, removed when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="arena-env-state-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
