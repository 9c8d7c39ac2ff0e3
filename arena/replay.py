"""Replay: render stored episodes turn by turn, and verify them by re-simulation.

`verify(episode)` rebuilds the env from the record (`env_id`, `env_kwargs`), resets it with
the recorded seed and options, feeds the recorded completions in order, and compares every
acting role, observation, parsed action, the final rewards and the outcome. Any difference
is reported as a `Mismatch`; an empty list means the episode replays exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from arena.episode import Episode
from arena.errors import ArenaError
from arena.registry import make, spec
from arena.rollout import turn_rewards

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
        if self.field == "replay":
            return f"episode {self.episode}: cannot replay: {self.replayed}"
        where = f"turn {self.turn}" if self.turn is not None else "episode"
        head = f"episode {self.episode}, {where}: {self.field} differs"
        if isinstance(self.recorded, str) and isinstance(self.replayed, str):
            return f"{head} {_text_diff(self.recorded, self.replayed)}"
        return f"{head}: recorded {_short(self.recorded)}, replayed {_short(self.replayed)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _text_diff(recorded: str, replayed: str, before: int = 30, after: int = 50) -> str:
    """Where two texts first differ: the position (line, column) and both texts around it."""
    at = next((i for i, (a, b) in enumerate(zip(recorded, replayed)) if a != b), min(len(recorded), len(replayed)))
    line = recorded.count("\n", 0, at) + 1
    column = at - (recorded.rfind("\n", 0, at) + 1) + 1
    start = max(0, at - before)

    def window(text: str) -> str:
        part = repr(text[start: at + after])
        return ("…" if start else "") + part + ("…" if at + after < len(text) else "")

    lengths = f" (lengths {len(recorded)} and {len(replayed)})" if len(recorded) != len(replayed) else ""
    return (f"at character {at} (line {line}, column {column}){lengths}: "
            f"recorded {window(recorded)}, replayed {window(replayed)}")


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def verify(episode: Episode) -> list[Mismatch]:
    """Re-simulate `episode` from its seed and recorded completions; list the differences."""
    eid = episode.id
    try:
        return _verify(episode)
    except ArenaError as exc:
        return [Mismatch(eid, None, "replay", None, str(exc))]
    except Exception as exc:  # noqa: BLE001 - the env itself failed on the recorded moves: report it
        return [Mismatch(eid, None, "replay", None, f"the env raised {type(exc).__name__}: {exc}")]


def replay_env(episode: Episode) -> Any:
    """A fresh env of `episode`, reset as it was: built with its recorded arguments less those
    through which the env writes (`replay_kwargs`: AZR's run buffer, which a rebuilt episode
    would add its task to again)."""
    env = make(episode.env_id, **spec(episode.env_id).load().replay_kwargs(episode.env_kwargs))
    env.reset(seed=episode.seed, options=episode.options or None)
    return env


def _verify(episode: Episode) -> list[Mismatch]:
    out: list[Mismatch] = []
    eid = episode.id
    env = replay_env(episode)
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
        # what training reads of each turn: its own reward (AZR's attempts) and infra flag
        for turn, (reward, infra) in zip(episode.turns, turn_rewards(env, [t.role for t in episode.turns], returns)):
            if not _close(turn.reward, reward):
                out.append(Mismatch(eid, turn.index, "turn reward", turn.reward, reward))
            if bool(turn.info.get("infra")) != infra:
                out.append(Mismatch(eid, turn.index, "infra", bool(turn.info.get("infra")), infra))
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
    index = episode.metadata.get("index")
    header.add_row("[bold]env[/]", Text(episode.env_id), "[bold]seed[/]", Text(str(episode.seed)), "[bold]id[/]", Text(episode.id),
                   "[bold]index[/]", Text(str(index) if index is not None else "-"))
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
        console.print(Panel(body, title=Text(f"turn {turn.index} · {turn.role}"), border_style=style.get(turn.role, "white"),
                            title_align="left"))
    table = Table(title="result", show_header=True)
    table.add_column("role")
    table.add_column("reward", justify="right")
    for role, reward in episode.rewards.items():
        table.add_row(Text(role, style=style.get(role, "white")), f"{reward:+.2f}")
    console.print(table)
    if episode.outcome:
        details = ", ".join(f"{k}={v}" for k, v in episode.outcome.items() if k != "rewards")
        console.print(Text(f"outcome: {details}"))


def episode_index(episode: Episode, position: int) -> int:
    """An episode's index in its run: `metadata.index`, else its position in the file."""
    index = episode.metadata.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def select(episodes: list[Episode], index: int | None = None, episode_id: str | None = None,
           step: int | None = None) -> list[Episode]:
    """The episodes to show: all, the one whose index is `index` (`metadata.index`, what
    `arena play` numbers; the line position for records without one), the one whose
    `id` is `episode_id`, or those a training run played at step `step` (`metadata.step`;
    negative counts from the end: -1 is the last step played)."""
    given = [flag for flag, value in (("--episode", index), ("--id", episode_id), ("--step", step)) if value is not None]
    if len(given) > 1:
        raise ArenaError(f"give one of {', '.join(given)}, not {len(given)}")
    if step is not None:
        steps = sorted({s for ep in episodes if isinstance(s := ep.metadata.get("step"), int) and not isinstance(s, bool)})
        if not steps:
            raise ArenaError("--step: these episodes carry no training step (`arena play` wrote them); "
                             "use --episode N or --id ID")
        wanted = steps[step] if -len(steps) <= step < 0 else step
        found = [ep for ep in episodes if ep.metadata.get("step") == wanted]
        if not found:
            raise ArenaError(f"--step {step}: the run played steps {steps[0]}..{steps[-1]} "
                             f"({len(steps)} of them; step S is played after S updates, and metrics.csv's row "
                             "S + 1 trains on it); -1 is the last")
        return found
    if episode_id is not None:
        found = [ep for ep in episodes if ep.id == episode_id]
        if not found:
            some = ", ".join(repr(ep.id) for ep in episodes[:3])
            raise ArenaError(f"--id {episode_id!r}: no such episode id in the run (ids look like {some}, ...)")
        return found[:1]
    if index is None:
        return episodes
    found = [ep for i, ep in enumerate(episodes) if episode_index(ep, i) == index]
    if not found:
        indices = sorted(episode_index(ep, i) for i, ep in enumerate(episodes))
        span = f"{indices[0]}..{indices[-1]}" if indices else "none"
        raise ArenaError(f"--episode {index}: no episode with that index; the run has {len(episodes)} episodes, "
                         f"indices {span}")
    return found[:1]


def select_lazily(episodes: Iterable[Episode], index: int | None = None, episode_id: str | None = None,
                  step: int | None = None) -> Iterable[Episode]:
    """`select` reading no further than it needs: every episode is `episodes` itself (read as
    it is shown), an index or id a list of the first match; `--step` (negative steps count
    from the end), several flags and a miss (for its message) read them all."""
    if step is not None or (index is not None and episode_id is not None):
        return select(list(episodes), index, episode_id, step)
    if index is None and episode_id is None:
        return episodes
    seen = []
    for i, ep in enumerate(episodes):
        if (ep.id == episode_id) if episode_id is not None else episode_index(ep, i) == index:
            return [ep]
        seen.append(ep)
    return select(seen, index, episode_id)  # none matched: raises, naming what the run has
