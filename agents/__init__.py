"""Agents (imported as `arena.agents`): every one implements `arena.policy.Policy`.

`make_agent(spec)` builds one from a short spec: `random`, `heuristic`, `human`, `scripted`
(`scripted:noisy=0.5:verifier=yes`: the proposer/solver/verifier envs, `selfplay_scripted`),
`openai:MODEL@URL[:constrain=yes:temperature=0.7...]` (a served model, `arena.agents.openai`;
imported only when used, as it needs the optional `openai` package).
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
    "openai": lambda seed=None: _openai_agent("openai", seed),  # openai:MODEL@URL[:KEY=VALUE]...
}


def _openai_agent(spec: str, seed: int | None) -> Policy:
    from .openai import make_openai_agent

    return make_openai_agent(spec, seed=seed)


def make_agent(spec: str, seed: int | None = None) -> Policy:
    """Build an agent from its spec (`random`, `heuristic`, `human`, `scripted:...`, `openai:MODEL@URL`)."""
    name = spec.strip()
    if name.startswith("scripted:"):
        return SelfPlayScripted.from_spec(name, seed=seed)
    if name.startswith("openai:") or name == "openai":
        return _openai_agent(name, seed)
    if name not in AGENTS:
        close = difflib.get_close_matches(name, list(AGENTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArenaError(f"unknown agent {spec!r}{hint} (choose from: {', '.join(AGENTS)})")
    factory = AGENTS[name]
    return factory() if name == "human" else factory(seed=seed)


__all__ = ["AGENTS", "Completion", "HeuristicAgent", "HumanAgent", "Policy", "RandomAgent", "Request", "SelfPlayScripted", "boxed", "make_agent"]
