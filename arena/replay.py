"""Replay: render stored episodes turn by turn, and verify them by re-simulation.

`verify(episode)` rebuilds the env from the record (`env_id`, `env_kwargs`), resets it with
the recorded seed and options, feeds the recorded completions in order, and compares every
acting role, observation, parsed action, the final rewards and the outcome. Any difference
is reported as a `Mismatch`; an empty list means the episode replays exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from arena.episode import Episode
from arena.errors import ArenaError
from arena.registry import make

ROLE_STYLES = ["cyan", "magenta", "green", "yellow", "blue", "red"]


@dataclass
class Mismatch:
    """One difference between a record and its re-simulation."""

    episode: str
    turn: int | None  # None: episode-level (rewards, outcome, length)
    field: str
    recorded: Any
    replayed: Any

    def __str__(self) -> str:
        where = f"turn {self.turn}" if self.turn is not None else "episode"
        rec, rep = _short(self.recorded), _short(self.replayed)
        return f"episode {self.episode}, {where}: {self.field} differs: recorded {rec}, replayed {rep}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def verify(episode: Episode) -> list[Mismatch]:
    """Re-simulate `episode` from its seed and recorded completions; list the differences."""
    out: list[Mismatch] = []
    eid = episode.id
    env = make(episode.env_id, **episode.env_kwargs)
    env.reset(seed=episode.seed, options=episode.options or None)
    returns = {r: 0.0 for r in env.possible_agents}
    for turn in episode.turns:
        if not env.agents or env.done:
            out.append(Mismatch(eid, turn.index, "episode length", len(episode.turns), turn.index))
            break
        if env.agent_selection != turn.role:
            out.append(Mismatch(eid, turn.index, "acting role", turn.role, env.agent_selection))
            break
        observation = str(env.observe(turn.role))
        if observation != turn.observation:
            out.append(Mismatch(eid, turn.index, "observation", turn.observation, observation))
        env.step(turn.completion)
        for r, value in env.rewards.items():
            returns[r] += float(value)
        action = env.turn_info.get("action", env.parse_action(turn.completion))
        if action != turn.action:
            out.append(Mismatch(eid, turn.index, "action", turn.action, action))
        legal = env.turn_info.get("legal")
        if legal != turn.legal:
            out.append(Mismatch(eid, turn.index, "legal", turn.legal, legal))
    else:
        if not env.done:
            out.append(Mismatch(eid, None, "episode end", "ended", "still running"))
        for role in sorted(set(returns) | set(episode.rewards)):
            if not _close(episode.rewards.get(role), returns.get(role)):
                out.append(Mismatch(eid, None, f"reward of {role}", episode.rewards.get(role), returns.get(role)))
        replayed_outcome = dict(env.outcome or {})
        if _normalise(replayed_outcome) != _normalise(episode.outcome):
            out.append(Mismatch(eid, None, "outcome", episode.outcome, replayed_outcome))
    env.close()
    return out


def _normalise(value: Any) -> Any:
    """JSON round-trip shape (tuples as lists, floats as floats) for comparison."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value
    return value


def render(episode: Episode, console: Console, *, full: bool = False, max_chars: int = 1200) -> None:
    """Print an episode turn by turn: each role in its own colour."""
    roles = sorted({t.role for t in episode.turns} | set(episode.rewards))
    style = {r: ROLE_STYLES[i % len(ROLE_STYLES)] for i, r in enumerate(roles)}
    header = Table.grid(padding=(0, 2))
    header.add_row("[bold]env[/]", Text(episode.env_id), "[bold]seed[/]", Text(str(episode.seed)), "[bold]id[/]", Text(episode.id))
    agents = Text("agents: ")
    for i, (r, a) in enumerate(episode.agents.items()):
        agents.append(", " if i else "").append(r, style=style.get(r, "white")).append(f"={a}")
    console.print(Panel(Group(header, agents), title="episode", border_style="bold"))

    def clip(text: str) -> str:
        if full or len(text) <= max_chars:
            return text
        return "…" + text[-max_chars:]

    for turn in episode.turns:
        verdict = {True: ("legal", "green"), False: ("invalid", "red"), None: ("", "")}[turn.legal]
        body = Group(
            Text(clip(turn.observation), style="dim"),
            Text.assemble(("completion", "bold"), f" ({turn.agent}):"),
            Text(clip(turn.completion)),
            Text.assemble(("action ", "bold"), str(turn.action), "  ", verdict),
        )
        console.print(Panel(body, title=f"turn {turn.index} · {turn.role}", border_style=style.get(turn.role, "white"), title_align="left"))
    table = Table(title="result", show_header=True)
    table.add_column("role")
    table.add_column("reward", justify="right")
    for role, reward in episode.rewards.items():
        table.add_row(f"[{style.get(role, 'white')}]{role}[/]", f"{reward:+.2f}")
    console.print(table)
    if episode.outcome:
        details = ", ".join(f"{k}={v}" for k, v in episode.outcome.items() if k != "rewards")
        console.print(Text(f"outcome: {details}"))


def select(episodes: list[Episode], index: int | None) -> list[Episode]:
    if index is None:
        return episodes
    if not 0 <= index < len(episodes):
        raise ArenaError(f"--episode {index} is out of range: the run has {len(episodes)} episodes (0..{len(episodes) - 1})")
    return [episodes[index]]
