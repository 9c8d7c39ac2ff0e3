"""What storing episodes costs: a scripted Kuhn Poker run with and without the store.

Plays `--episodes` episodes of `spiral/KuhnPoker-v0` (random against heuristic) with
`arena.rollout.play`, `--repeats` times per variant, interleaved, and keeps each variant's
fastest time (the machine is shared: the minimum is the least disturbed run), in wall-clock and in CPU
seconds (less disturbed by other load; fsync waits are not CPU). Variants:

- `no store`: `play(..., writer=None)`.
- `store`: `play(..., writer=EpisodeWriter(dir))`, the current record format, fsync on.
- `store, no fsync`: the same without `os.fsync` (separates serialisation from the disk).
- `store, json encoder`: the store with the standard-library fallback encoder (orjson
  missing), fsync on.
- `legacy store`: the schema-1 writer (`dataclasses.asdict`, a NaN walk, `json.dumps`
  without `ensure_ascii`), re-implemented here for the before/after comparison.

With `--cli`, it also times the `arena play` command with and without `--out` (the user's
view: process start included). Prints a table (time, ratio to `no store`, bytes per
episode) and writes the numbers as JSON.

    python scripts/bench_store.py --episodes 10000 --repeats 3 --cli --out bench_store.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from arena.agents import make_agent
from rich.console import Console
from rich.table import Table

import arena.records
from arena.episode import (
    Episode,
    _finite,  # the NaN/inf walk the old writer did on every record
)
from arena.rollout import play
from arena.store import EPISODES_FILE, EpisodeWriter

ENV_ID = "spiral/KuhnPoker-v0"


class LegacyWriter(EpisodeWriter):
    """The schema-1 writer's serialisation (arena 0.1), for the comparison."""

    def write(self, episodes: Iterable[Episode | dict[str, Any]]) -> int:
        lines = [json.dumps(_finite(asdict(ep)), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
                 for ep in episodes]
        if not lines:
            return 0
        data = ("\n".join(lines) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if self.fsync:
            os.fsync(self._fd)
        self.count += len(lines)
        return len(lines)


def _agents() -> list:
    return [make_agent("random", seed=1), make_agent("heuristic", seed=2)]


def _one(variant: str, episodes: int, workdir: Path) -> tuple[float, float, int]:
    run = workdir / variant.replace(" ", "_").replace(",", "")
    shutil.rmtree(run, ignore_errors=True)
    writer = None
    if variant == "store":
        writer = EpisodeWriter(run)
    elif variant == "store, no fsync":
        writer = EpisodeWriter(run, fsync=False)
    elif variant == "store, json encoder":
        writer = EpisodeWriter(run)
    elif variant == "legacy store":
        writer = LegacyWriter(run)
    fast = arena.records._orjson
    if variant == "store, json encoder":
        arena.records._orjson = None
    start, cpu = time.perf_counter(), time.process_time()
    try:
        play(ENV_ID, _agents(), episodes, seed=0, writer=writer)
    finally:
        arena.records._orjson = fast
    size = 0
    if writer is not None:
        writer.close()
        size = (run / EPISODES_FILE).stat().st_size
    return time.perf_counter() - start, time.process_time() - cpu, size


def _cli(args: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one `arena` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "arena.cli", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", action="store_true", help="also time `arena play` with and without --out")
    parser.add_argument("--out", default="bench_store.json")
    args = parser.parse_args()

    variants = ["no store", "store", "store, no fsync", "store, json encoder", "legacy store"]
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    sizes: dict[str, int] = {}

    def keep(name: str, w: float, c: float) -> None:
        wall[name] = min(wall.get(name, math.inf), w)
        cpu[name] = min(cpu.get(name, math.inf), c)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _one("no store", min(args.episodes, 500), workdir)  # warm up imports and caches
        for _ in range(args.repeats):
            for variant in variants:
                w, c, size = _one(variant, args.episodes, workdir)
                keep(variant, w, c)
                sizes[variant] = size
        cli = []
        if args.cli:
            cli = ["arena play", "arena play --out"]
            base = ["play", ENV_ID, "--agents", "random,heuristic", "--episodes", str(args.episodes)]
            for _ in range(args.repeats):
                shutil.rmtree(workdir / "cli", ignore_errors=True)
                keep(cli[0], *_cli(base))
                keep(cli[1], *_cli([*base, "--out", str(workdir / "cli")]))

    table = Table(title=f"store cost: {args.episodes} {ENV_ID} episodes, random vs heuristic (best of {args.repeats})")
    for col in ("variant", "wall s", "wall vs none", "cpu s", "cpu vs none", "bytes/episode"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    rows = []
    for name in variants + cli:
        base_name = cli[0] if name in cli else "no store"
        per = sizes.get(name, 0) / args.episodes
        row = {"variant": name, "wall_s": wall[name], "wall_ratio": wall[name] / wall[base_name],
               "cpu_s": cpu[name], "cpu_ratio": cpu[name] / cpu[base_name], "bytes_per_episode": per}
        rows.append(row)
        table.add_row(name, f"{row['wall_s']:.3f}", f"{row['wall_ratio']:.2f}x", f"{row['cpu_s']:.3f}",
                      f"{row['cpu_ratio']:.2f}x", f"{per:.0f}" if per else "-")
    Console().print(table)
    result = {"env_id": ENV_ID, "episodes": args.episodes, "repeats": args.repeats, "rows": rows,
              "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
