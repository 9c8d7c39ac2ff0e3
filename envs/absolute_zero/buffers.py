"""Absolute Zero's task buffers: one per task type, seeded with the identity triplet, grown
with the valid proposals (an env's own store as its proposals pass; a named, shared one
from finished episodes: `AbsoluteZero.after_episode`), saved as JSONL and restorable; each
task's lineage (the tasks its propose prompt showed) is a `networkx` graph.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from arena.envs.absolute_zero.tasks import TASK_TYPES

from arena.errors import ArenaError

if TYPE_CHECKING:
    import networkx as nx

IDENTITY_PROGRAM = "def f(a):\n    return a\n"
IDENTITY_MESSAGE = "Write a function that returns whatever you input."
IDENTITY_INDUCTION_INPUTS = ("'Hello world'", "1", "[1, 2, 3]", "(4, 'five')", "{'a': 1}", "None")
TASKS_FILE = "azr_tasks.jsonl"
LINEAGE_FILE = "azr_lineage.json"


@dataclass
class Task:
    """A (program, inputs, outputs) task of one type.

    Deduction and abduction tasks have one input and its output; induction tasks several,
    and the proposer's `message`. `inputs` are argument lists of literals (`'Hello world'`,
    `[1, 2], 3`); `outputs` are reprs of builtin values. `parents`: ids of the tasks the
    propose prompt showed (the lineage).
    """

    type: str
    program: str
    inputs: list[str]
    outputs: list[str]
    message: str = ""
    parents: list[str] = field(default_factory=list)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            key = json.dumps([self.type, self.program, self.inputs, self.message])
            self.id = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Task:
        """A task from its JSON record; `ArenaError` naming the problem for anything else."""
        try:
            if not isinstance(d, dict) or d.get("type") not in TASK_TYPES:
                raise TypeError("not a task record")
            task = cls(type=d["type"], program=str(d["program"]), inputs=[str(x) for x in d["inputs"]],
                       outputs=[str(x) for x in d["outputs"]], message=str(d.get("message", "")),
                       parents=[str(p) for p in d.get("parents", [])], id=str(d.get("id", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArenaError(f"bad Absolute Zero task record ({exc}): {str(d)[:120]}") from None
        if len(task.inputs) != len(task.outputs) or not task.inputs:
            raise ArenaError(f"bad Absolute Zero task record: {len(task.inputs)} inputs, {len(task.outputs)} outputs")
        return task


def seed_tasks() -> list[Task]:
    """AZR's seed: the identity function with input and output `'Hello world'` for deduction
    and abduction; for induction the same function with six inputs and a message."""
    hello = ["'Hello world'"]
    return [
        Task("deduction", IDENTITY_PROGRAM, hello, hello, id="seed-deduction"),
        Task("abduction", IDENTITY_PROGRAM, hello, hello, id="seed-abduction"),
        Task("induction", IDENTITY_PROGRAM, list(IDENTITY_INDUCTION_INPUTS),
             ["'Hello world'", "1", "[1, 2, 3]", "(4, 'five')", "{'a': 1}", "None"], IDENTITY_MESSAGE,
             id="seed-induction"),
    ]


class TaskStore:
    """The task buffers (one list per type) and the lineage graph.

    Args:
        path: a folder; when given, tasks already saved there are loaded, and every new
            task is appended to `PATH/azr_tasks.jsonl` as it is added (kill-safe, one line
            each); `save()` also writes the lineage graph there.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        import networkx as nx

        self.buffers: dict[str, list[Task]] = {t: [] for t in TASK_TYPES}
        self.graph: nx.DiGraph = nx.DiGraph()
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self.path = Path(path) if path is not None else None
        if self.path is not None:  # checked when the env is made, not at the first valid proposal
            from arena.run_info import file_in_the_way

            blocker = file_in_the_way(self.path)
            if blocker is not None:
                raise ArenaError(f"buffer_path {self.path}: {blocker} is a file, not a folder; give a folder for the "
                                 f"task buffer ({TASKS_FILE} is written in it)")
        for task in seed_tasks():
            self._add(task)
        self.size = 0  # bytes of the tasks file read and written: `shared_store` reads what was added since
        if self.path is not None and (self.path / TASKS_FILE).exists():
            from arena.store import repair_tail

            repair_tail(self.path / TASKS_FILE)  # a line torn by a kill is cut: the next task starts a line
            for task in load_tasks(self.path / TASKS_FILE):
                self._add(task)
            self.size = (self.path / TASKS_FILE).stat().st_size

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers.values())

    def _add(self, task: Task) -> bool:
        self.graph.add_node(task.id, type=task.type)
        for parent in task.parents:
            self.graph.add_edge(parent, task.id)
        if task.id in self._ids:
            return False
        self._ids.add(task.id)
        self.buffers[task.type].append(task)
        return True

    def add(self, task: Task) -> bool:
        """Add a valid task and its lineage edges; False when the task was already there (a
        repeat proposal: only its new lineage edges are added, and recorded)."""
        with self._lock:
            if self.path is not None:
                self.path.mkdir(parents=True, exist_ok=True)
                line = (json.dumps(task.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
                with open(self.path / TASKS_FILE, "ab") as fh:
                    if fh.seek(0, os.SEEK_END) > self.size:  # another writer's tasks first, in file order
                        self._read_new()
                    fh.write(line)
                self.size += len(line)
            return self._add(task)

    def read_new(self) -> None:
        """Add the tasks another process appended to the tasks file since this store last
        read or wrote it (whole lines only)."""
        with self._lock:
            self._read_new()

    def _read_new(self) -> None:
        with open(self.path / TASKS_FILE, "rb") as fh:
            fh.seek(self.size)
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                self._add(Task.from_dict(json.loads(line)))
                self.size += len(line)

    def sample(self, task_type: str, k: int, rng: np.random.Generator) -> list[Task]:
        """`k` reference tasks of `task_type`, uniformly without replacement (all of them when
        the buffer holds fewer)."""
        buffer = self.buffers[task_type]
        if len(buffer) <= k:
            return list(buffer)
        return [buffer[i] for i in sorted(rng.choice(len(buffer), size=k, replace=False))]

    def sample_program(self, rng: np.random.Generator) -> Task:
        """One task of the deduction or abduction buffers, uniformly: the program an induction
        proposer writes inputs for."""
        pool = self.buffers["deduction"] + self.buffers["abduction"]
        return pool[int(rng.integers(len(pool)))]

    def lineage(self, task_id: str) -> nx.DiGraph:
        """The ancestors of `task_id` and itself, as a subgraph."""
        import networkx as nx

        return self.graph.subgraph(nx.ancestors(self.graph, task_id) | {task_id}).copy()

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write every task (`azr_tasks.jsonl`, seeds included) and the lineage graph
        (`azr_lineage.json`, networkx node-link JSON) to the folder `path`."""
        import networkx as nx

        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise ArenaError("TaskStore.save needs a folder: pass path, or build the store with path=")
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            tasks = [t for b in self.buffers.values() for t in b]
            _atomic_write(folder / TASKS_FILE, "".join(json.dumps(t.to_dict(), ensure_ascii=False) + "\n" for t in tasks))
            _atomic_write(folder / LINEAGE_FILE, json.dumps(nx.node_link_data(self.graph, edges="edges")))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> TaskStore:
        """A store restored from a folder written by `save` (or by a store built with path=)."""
        if not (Path(path) / TASKS_FILE).exists():
            raise ArenaError(f"no {TASKS_FILE} in {path}: give the folder a TaskStore saved its tasks to")
        return cls(path)


def load_tasks(file: str | os.PathLike) -> list[Task]:
    """The tasks of a JSONL file; a torn last line (a killed writer) is skipped."""
    out = []
    with open(file, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            out.append(Task.from_dict(json.loads(line)))
    return out


def _atomic_write(file: Path, text: str) -> None:
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, file)


_SHARED: dict[tuple[str, str | None], TaskStore] = {}


def shared_store(name: str, path: str | None = None) -> TaskStore:
    """The process-wide store called `name` (one buffer for every env built with it, as
    AZR's one dataset manager for all concurrent rollouts). With a `path` whose tasks file
    is shorter than what the store read and wrote (a resumed run cut it back to its
    checkpoint), the store is read again from the file; where it is longer, its new tasks
    are added."""
    key = (name, path)
    store = _SHARED.get(key)
    size = _file_size(Path(path) / TASKS_FILE) if path is not None else 0
    if store is None or size < store.size:
        store = _SHARED[key] = TaskStore(path)
    elif size > store.size:  # a mirror of a run's buffer got the writer's new tasks (`arena.env_state`)
        store.read_new()
    return store


def _file_size(file: Path) -> int:
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def references_from(records: Sequence[Any]) -> list[Task]:
    """Tasks from an episode's recorded references (its `options["references"]`)."""
    if not isinstance(records, (list, tuple)):
        raise ArenaError("options['references'] must be a list of task records")
    return [Task.from_dict(r) for r in records]
