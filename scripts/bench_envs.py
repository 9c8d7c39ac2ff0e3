"""Env stepping speed: arena's Kuhn Poker and TicTacToe against TextArena's same games.

Each measurement plays whole episodes for `--seconds` seconds and reports steps per
second (resets included). A step is what a rollout does per turn: read the acting seat's
observation, pick a random legal move, step. arena reads the legal moves from
`env.legal_actions()`; TextArena (played through `reset` / `get_observation` / `step` /
`close`, with its default wrappers, as SPIRAL does) from the last `'[...]'` list in the
observation, the way SPIRAL's action parser does. The `garbage` rows step random text
instead (each game ends on the first invalid move in arena; TextArena allows one error).

    python scripts/bench_envs.py --seconds 2 --out bench_envs.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

import arena

_QUOTED_MOVE = re.compile(r"'(\[[^'\]]+\])'")
_GARBAGE = "abcdefghijklmnopqrstuvwxyz[]{}0123456789 \\"


def _measure(run_episode: Callable[[int], int], seconds: float) -> dict[str, float]:
    """Play episodes until `seconds` pass; return steps, episodes and steps/s."""
    steps = episodes = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += run_episode(episodes)
        episodes += 1
    elapsed = time.perf_counter() - start
    return {"steps": steps, "episodes": episodes, "seconds": elapsed, "steps_per_s": steps / elapsed}


def _garbage(rng: random.Random) -> str:
    return "".join(rng.choice(_GARBAGE) for _ in range(rng.randint(0, 20)))


def arena_episode(env_id: str, garbage: bool, **kwargs) -> Callable[[int], int]:
    env = arena.make(env_id, **kwargs)
    rng = random.Random(0)

    def run(seed: int) -> int:
        env.reset(seed=seed)
        steps = 0
        while not env.done:
            env.observe(env.agent_selection)
            if garbage:
                action = _garbage(rng)
            else:
                legal = env.legal_actions()
                action = legal[rng.randrange(len(legal))]
            env.step(action)
            steps += 1
        return steps

    return run


def textarena_episode(env_id: str, garbage: bool) -> Callable[[int], int]:
    import textarena as ta

    env = ta.make(env_id)
    rng = random.Random(0)

    def run(seed: int) -> int:
        env.reset(num_players=2, seed=seed)
        steps = 0
        done = False
        while not done:
            _, observation = env.get_observation()
            if garbage:
                action = _garbage(rng)
            else:
                start = max(observation.rfind("Available Moves"), observation.rfind("available actions are"))
                legal = _QUOTED_MOVE.findall(observation[start:].split("\n", 1)[0])
                action = legal[rng.randrange(len(legal))]
            done, _ = env.step(action)
            steps += 1
        env.close()
        return steps

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--out", default="bench_envs.json", help="JSON file for the results")
    args = parser.parse_args()

    try:
        import textarena

        ta_version = textarena.__version__
    except ImportError:
        ta_version = None

    cases: list[tuple[str, str, str, Callable[[], Callable[[int], int]]]] = []
    for actions in ("legal", "garbage"):
        garbage = actions == "garbage"
        cases += [
            ("TicTacToe", "arena spiral/TicTacToe-v0", actions, lambda g=garbage: arena_episode("spiral/TicTacToe-v0", g)),
            ("KuhnPoker (1 hand)", "arena spiral/KuhnPoker-v0", actions, lambda g=garbage: arena_episode("spiral/KuhnPoker-v0", g)),
            ("KuhnPoker (3 hands)", "arena spiral/KuhnPoker-v0 rounds=3", actions,
             lambda g=garbage: arena_episode("spiral/KuhnPoker-v0", g, rounds=3)),
            ("KuhnPoker (5 hands)", "arena spiral/KuhnPoker-v1", actions, lambda g=garbage: arena_episode("spiral/KuhnPoker-v1", g)),
        ]
        if ta_version is not None:
            cases += [
                ("TicTacToe", f"textarena {ta_version} TicTacToe-v0", actions, lambda g=garbage: textarena_episode("TicTacToe-v0", g)),
                ("KuhnPoker (3 hands)", f"textarena {ta_version} KuhnPoker-v0", actions,
                 lambda g=garbage: textarena_episode("KuhnPoker-v0", g)),
            ]

    results = []
    for game, impl, actions, build in cases:
        run = build()
        run(10**6)  # warm-up episode
        results.append({"game": game, "implementation": impl, "actions": actions, **_measure(run, args.seconds)})

    table = Table(title=f"Env steps/s ({args.seconds:g} s per row; random actions; resets included)")
    for column in ("game", "implementation", "actions", "episodes", "steps", "steps/s", "vs TextArena"):
        table.add_column(column, justify="right" if column in ("episodes", "steps", "steps/s", "vs TextArena") else "left")
    for row in sorted(results, key=lambda r: (r["actions"], r["game"], r["implementation"])):
        ref = next((r for r in results if r["game"] == row["game"] and r["actions"] == row["actions"]
                    and r["implementation"].startswith("textarena")), None)
        ratio = f"{row['steps_per_s'] / ref['steps_per_s']:.1f}x" if ref else ""
        row["vs_textarena"] = row["steps_per_s"] / ref["steps_per_s"] if ref else None
        table.add_row(row["game"], row["implementation"], row["actions"], str(row["episodes"]), str(row["steps"]),
                      f"{row['steps_per_s']:,.0f}", ratio)
    Console(width=max(Console().width, 130)).print(table)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
            "numpy": np.__version__, "textarena": ta_version, "seconds_per_measurement": args.seconds}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
