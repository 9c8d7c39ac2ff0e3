"""The rollout engine: many episodes at once, one generation call per policy per tick.

Each tick, every live episode has exactly one acting role (AEC envs are turn-based). The
engine groups the pending turns by the policy that plays the acting role and asks each
policy once for the whole group, so a model backend generates one batch per tick however
many episodes are in flight. One policy object may play several roles (self-play): its
turns from every seat land in the same batch, each conditioned by its role's prompt.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from arena.episode import Episode, Turn
from arena.errors import ArenaError
from arena.policy import Completion, Policy, Request
from arena.protocol import ArenaEnv
from arena.registry import make
from arena.store import EpisodeWriter


@dataclass
class _Slot:
    env: ArenaEnv
    episode: Episode
    returns: dict[str, float]
    seats: dict[str, Policy]


def seat_agents(env: ArenaEnv, agents: Sequence[Policy] | Mapping[str, Policy]) -> dict[str, Policy]:
    """Map roles to policies: a mapping is checked, a sequence follows `possible_agents`
    order, and a single policy plays every role (self-play)."""
    roles = list(env.possible_agents)
    if isinstance(agents, Mapping):
        missing = [r for r in roles if r not in agents]
        if missing:
            raise ArenaError(f"no agent for roles {missing}; roles of this env: {', '.join(roles)}")
        return {r: agents[r] for r in roles}
    agents = list(agents)
    if len(agents) == 1:
        return {r: agents[0] for r in roles}
    if len(agents) != len(roles):
        raise ArenaError(f"{len(agents)} agents given for {len(roles)} roles ({', '.join(roles)}); give one per role, or one for all")
    return dict(zip(roles, agents))


def _request(env: ArenaEnv, env_id: str, role: str) -> Request:
    observation = env.observe(role)
    return Request(env_id=env_id, role=role, observation=str(observation),
                   messages=env.role(role).messages(str(observation)),
                   legal_actions=env.legal_actions(role), env=env)


def _is_over(env: ArenaEnv) -> bool:
    return not env.agents or all(env.terminations[a] or env.truncations[a] for a in env.agents)


def play(
    env_id: str,
    agents: Sequence[Policy] | Mapping[str, Policy],
    episodes: int,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    concurrency: int = 64,
    writer: EpisodeWriter | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    run_name: str = "",
    swap_seats: bool = False,
) -> list[Episode]:
    """Play `episodes` episodes of `env_id`, `concurrency` at a time; return them in order.

    Episode i is reset with seed `seed + i`. With `swap_seats`, the seating rotates by one
    role each episode (episode i seats agent k in role (k + i) mod n), so every agent plays
    every seat equally often. Finished episodes are written to `writer` in batches (one
    batch per tick in which any finished) and passed to `on_episode`.
    """
    if episodes < 0:
        raise ArenaError(f"episodes must be >= 0, got {episodes}")
    if concurrency < 1:
        raise ArenaError(f"concurrency must be >= 1, got {concurrency}")
    env_kwargs = dict(env_kwargs or {})
    results: dict[int, Episode] = {}
    free: list[ArenaEnv] = []
    active: list[_Slot] = []
    next_index = 0
    def start(index: int) -> _Slot:
        env = free.pop() if free else make(env_id, **env_kwargs)
        env.reset(seed=seed + index)
        seats = seat_agents(env, agents)
        if swap_seats:
            roles = list(seats)
            shift = index % len(roles)
            seats = {roles[(k + shift) % len(roles)]: seats[roles[k]] for k in range(len(roles))}
        ep = Episode(
            env_id=env_id, seed=seed + index, env_kwargs=dict(getattr(env, "env_kwargs", env_kwargs)),
            agents={r: seats[r].name for r in env.possible_agents},
            id=f"{run_name}-{index}" if run_name else str(index), metadata={"index": index},
        )
        return _Slot(env, ep, {r: 0.0 for r in env.possible_agents}, seats)

    while active or next_index < episodes:
        while len(active) < concurrency and next_index < episodes:
            active.append(start(next_index))
            next_index += 1
        groups: dict[int, list[_Slot]] = defaultdict(list)
        for slot in active:
            groups[id(slot.seats[slot.env.agent_selection])].append(slot)
        for group in groups.values():
            policy = group[0].seats[group[0].env.agent_selection]
            requests = [_request(s.env, env_id, s.env.agent_selection) for s in group]
            t0 = time.perf_counter()
            completions = policy.act(requests)
            if len(completions) != len(requests):
                raise ArenaError(f"agent {policy.name!r} returned {len(completions)} completions for {len(requests)} requests")
            elapsed = time.perf_counter() - t0
            for slot, request, completion in zip(group, requests, completions):
                _advance(slot, request, completion, policy.name, elapsed / len(requests))
        finished = [s for s in active if _is_over(s.env)]
        if finished:
            done_eps = [_finalize(s) for s in finished]
            active = [s for s in active if not _is_over(s.env)]
            free.extend(s.env for s in finished)
            if writer is not None:
                writer.write(done_eps)
            for ep in done_eps:
                results[ep.metadata["index"]] = ep
                if on_episode is not None:
                    on_episode(ep)
    return [results[i] for i in range(episodes)]


def _advance(slot: _Slot, request: Request, completion: Completion, agent_name: str, seconds: float) -> None:
    env = slot.env
    role = request.role
    env.step(completion.text)
    for r, value in env.rewards.items():
        slot.returns[r] = slot.returns.get(r, 0.0) + float(value)
    info = dict(env.turn_info)
    slot.episode.turns.append(Turn(
        index=len(slot.episode.turns), role=role, agent=agent_name, observation=request.observation,
        completion=completion.text, action=info.pop("action", env.parse_action(completion.text)),
        legal=info.pop("legal", None), prompt_ids=completion.prompt_ids, token_ids=completion.token_ids,
        logprobs=completion.logprobs, info={**info, **completion.info, "seconds": round(seconds, 6)},
    ))
    # finish the dead steps so that the env is clean for the next episode
    while env.agents and (env.terminations[env.agent_selection] or env.truncations[env.agent_selection]):
        if not _is_over(env):
            break
        env.step(None)


def _finalize(slot: _Slot) -> Episode:
    ep = slot.episode
    ep.rewards = {r: float(v) for r, v in slot.returns.items()}
    ep.outcome = dict(slot.env.outcome or {})
    for turn in ep.turns:
        turn.reward = ep.rewards.get(turn.role, 0.0)
    return ep
