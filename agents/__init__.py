"""Agents (imported as `arena.agents`): every one implements `arena.policy.Policy`.

`make_agent(spec)` builds one from a short spec: `random`, `heuristic`, `human`, `scripted`
(`scripted:noisy=0.5:verifier=yes`: the proposer/solver/verifier envs, `selfplay_scripted`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from arena.errors import ArenaError
from arena.policy import Completion, Policy, Request

from .scripted import HeuristicAgent, HumanAgent, RandomAgent, boxed
from .selfplay_scripted import SelfPlayScripted

AGENTS: dict[str, Callable[..., Policy]] = {
    "random": RandomAgent,
    "heuristic": HeuristicAgent,
    "human": HumanAgent,
    "scripted": SelfPlayScripted,  # azr/* and spice/*: options after colons, scripted:noisy=0.5:verifier=yes
}


def make_agent(spec: str, seed: int | None = None) -> Policy:
    """Build an agent from its name (`random`, `heuristic`, `human`)."""
    name = spec.strip()
    if name.startswith("scripted:"):
        return SelfPlayScripted.from_spec(name, seed=seed)
    if name not in AGENTS:
        close = difflib.get_close_matches(name, list(AGENTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArenaError(f"unknown agent {spec!r}{hint} (choose from: {', '.join(AGENTS)})")
    factory = AGENTS[name]
    return factory() if name == "human" else factory(seed=seed)


__all__ = ["AGENTS", "Completion", "HeuristicAgent", "HumanAgent", "Policy", "RandomAgent", "Request", "SelfPlayScripted", "boxed", "make_agent"]
