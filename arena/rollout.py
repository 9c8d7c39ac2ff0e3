"""The rollout engine: many episodes at once, one generation call per policy per tick.

Each tick, every live episode has exactly one acting role (AEC envs are turn-based). The
engine groups the pending turns by the policy that plays the acting role and asks each
policy once for the whole group, so a model backend generates one batch per tick however
many episodes are in flight. One policy object may play several roles (self-play): its
turns from every seat land in the same batch, each conditioned by its role's prompt.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena.env_state import episode_fold
from arena.episode import Episode, Turn
from arena.errors import ArenaError
from arena.policy import Completion, Policy, Request
from arena.protocol import ArenaEnv
from arena.registry import make, spec
from arena.store import EpisodeWriter

RESET_AHEAD = 8
"""Upcoming episodes `play` resets back to back when their env allows it
(`ArenaEnv.independent_reset`): between two `generate` calls a reset runs with cold CPU
caches (a Kuhn Poker reset, gymnasium's seeding most of it, took 245 us one at a time
against 18 us in a loop), so a batch of resets pays that once. Episodes are unchanged."""


@dataclass
class _Slot:
    env: ArenaEnv
    episode: Episode
    returns: dict[str, float]
    seats: dict[str, Policy]
    kind: int = 0  # which env of a mixed run
    local: int = 0  # position in this call's schedule


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
    observation = str(env.observe(role))
    return Request(env_id=env_id, role=role, observation=observation, messages=env.role(role).messages(observation),
                   legal_actions=env.legal_actions(role), env=env)


def _is_over(env: ArenaEnv) -> bool:
    return not env.agents or all(env.terminations[a] or env.truncations[a] for a in env.agents)


def env_schedule(env_ids: Sequence[str], weights: Sequence[float] | None, episodes: int, seed: int) -> list[int]:
    """Which env each of `episodes` episodes plays: indices into `env_ids`.

    Counts are proportional to `weights` (largest remainder, so a 3-env mix of 64 episodes
    is 22/21/21, never a random 30/20/14), and the order is a permutation drawn from
    `seed`: the schedule is reproducible and every batch has the mix it was asked for.
    """
    n = len(env_ids)
    if n == 0:
        raise ArenaError("no env to play: give at least one env id")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ArenaError(f"env weights must be {n} non-negative numbers with a positive sum, got {list(w)}")
    share = w / w.sum() * episodes
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: episodes - counts.sum()]:
        counts[i] += 1
    order = np.repeat(np.arange(n), counts)
    return [int(i) for i in np.random.default_rng(seed).permutation(order)]


def run_env_kwargs(env_ids: Sequence[str], kwargs_of: Sequence[Mapping[str, Any]], run: str,
                   folder: Path | None) -> list[dict[str, Any]]:
    """Each env's arguments for playing in the run `run` (training's rollouts, `arena play
    --out`): `ArenaEnv.run_kwargs` of its class, with `folder` the run's env-state folder
    (None in a process that keeps nothing on disk)."""
    return [spec(e).load().run_kwargs(dict(k), run, folder) for e, k in zip(env_ids, kwargs_of, strict=True)]


def _seat_turns(schedule: Sequence[int], batch_start: int) -> list[int]:
    """Each episode's count among the episodes of its env over the run, for mixed-env seat
    rotation: its rank among its env's episodes in the batch, plus the env's episodes in the
    `batch_start // len(schedule)` batches before (whole ones of this schedule). After a resume
    with another --episodes-per-step the earlier batches were of another size, and the count
    is approximate: seats still alternate within each batch."""
    batches = batch_start // max(1, len(schedule))
    total: dict[int, int] = defaultdict(int)
    for k in schedule:
        total[k] += 1
    seen: dict[int, int] = defaultdict(int)
    out = []
    for k in schedule:
        out.append(batches * total[k] + seen[k])
        seen[k] += 1
    return out


def play(
    env_id: str | Sequence[str],
    agents: Sequence[Policy] | Mapping[str, Policy],
    episodes: int,
    *,
    seed: int = 0,
    env_kwargs: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    env_weights: Sequence[float] | None = None,
    concurrency: int = 64,
    writer: EpisodeWriter | None = None,
    on_episode: Callable[[Episode], None] | None = None,
    run_name: str = "",
    swap_seats: bool = False,
    start_index: int = 0,
    metadata: dict[str, Any] | None = None,
    schedule: Sequence[int] | None = None,
    duplicate: bool = False,
    schedule_offset: int = 0,
    run_state: bool = True,
) -> list[Episode]:
    """Play `episodes` episodes, `concurrency` at a time; return them in index order.

    `env_id` is one env id, or several (mixed-env play: `env_kwargs` is then one dict per
    env, and `env_weights` the share of episodes each gets, see `env_schedule`). Episodes
    of every env are in flight together and each policy is asked once per tick for the
    pending turns of all of them.

    Episode i (counting from `start_index`) is reset with seed `seed + i`. With
    `swap_seats`, the seating rotates by one role each episode (episode i seats agent k in
    role (k + i) mod n), so every agent plays every seat equally often; in mixed-env play by
    each env's own count of episodes instead (earlier batches counted as whole ones of the
    same schedule), so that every agent plays every seat of every env equally often (by
    the episode index, the random order of the envs gave one env's seats 17/15 in a batch,
    and the same every step, since the order repeats). Finished episodes
    are written to `writer` in index order, each batch as soon as it is contiguous with
    what was written before, and passed to `on_episode` as they finish. `metadata` is
    copied into every episode's metadata (e.g. the training step).

    With `duplicate` (and `swap_seats`), the seatings of one deal come together: in an env
    of n roles, episode i is reset with seed `seed + i // n` instead of `seed + i`, so each
    deal (the env's chance: cards, dice) is played once from every seat and card luck
    cancels out of each agent's results, as in duplicate bridge and poker. Evaluation
    against fixed opponents plays this way (`arena.evaluate.play_against`).

    `schedule` (mixed-env play) says which env each episode of the batch plays, as indices
    into `env_id`, in place of `env_schedule(env_ids, env_weights, episodes, seed)`; this
    call plays its entries from `schedule_offset` on. A worker that plays a contiguous
    share of a larger batch (`arena.ray_rollout`, `arena.data_parallel`) passes the whole
    batch's schedule and its share's offset, so episode i plays the same env, from the same
    seat, however the batch is split.

    Each finished episode is folded into the state its env keeps over a run (AZR's task
    buffer: `ArenaEnv.after_episode`) in index order, after it is written; with `run_state`
    False the caller does it (training, for a whole step at once: `arena.env_state`).
    """
    if episodes < 0:
        raise ArenaError(f"episodes must be >= 0, got {episodes}")
    if concurrency < 1:
        raise ArenaError(f"concurrency must be >= 1, got {concurrency}")
    if duplicate and not swap_seats:
        raise ArenaError("duplicate deals need swap_seats=True: each deal is played once from every seat")
    for agent in (agents.values() if isinstance(agents, Mapping) else agents):
        if not (isinstance(getattr(agent, "name", None), str) and callable(getattr(agent, "act", None))):
            raise ArenaError(f"agent {agent!r} is not a Policy: give it a `name` (str) and `act(requests)` returning "
                             "one arena.policy.Completion per request (arena.policy.Policy)")
    env_ids = [env_id] if isinstance(env_id, str) else list(env_id)
    if isinstance(env_kwargs, Mapping) or env_kwargs is None:
        kwargs_of = [dict(env_kwargs or {}) for _ in env_ids]
    else:
        kwargs_of = [dict(k or {}) for k in env_kwargs]
        if len(kwargs_of) != len(env_ids):
            raise ArenaError(f"{len(kwargs_of)} env_kwargs given for {len(env_ids)} envs; give one dict per env")
    if schedule is not None:
        whole = [int(k) for k in schedule]
        if len(whole) < schedule_offset + episodes or any(not 0 <= k < len(env_ids) for k in whole):
            raise ArenaError(f"schedule must give one env index in [0, {len(env_ids)}) per episode ({episodes} from "
                             f"entry {schedule_offset}), got {len(whole)} entries")
    elif len(env_ids) > 1:
        whole = env_schedule(env_ids, env_weights, schedule_offset + episodes, seed)
    else:
        whole = [0] * (schedule_offset + episodes)
    schedule = whole[schedule_offset:schedule_offset + episodes]
    turns = _seat_turns(whole, start_index - schedule_offset)[schedule_offset:] if len(env_ids) > 1 else None
    results: dict[int, Episode] = {}
    free: dict[int, list[ArenaEnv]] = defaultdict(list)
    active: list[_Slot] = []
    ahead: deque[_Slot] = deque()  # episodes already reset, in index order
    independent = [spec(e).load().independent_reset for e in env_ids]
    next_local = 0
    written = 0  # episodes (local count) already handed to the writer and folded
    fold = episode_fold(env_ids, kwargs_of) if run_state else None

    def start(local: int) -> _Slot:
        k = schedule[local]
        index = start_index + local
        env = free[k].pop() if free[k] else make(env_ids[k], **kwargs_of[k])
        env_seed = seed + (index // len(env.possible_agents) if duplicate else index)
        env.reset(seed=env_seed)
        seats = seat_agents(env, agents)
        if swap_seats:
            roles = list(seats)
            shift = (index if turns is None else turns[local]) % len(roles)
            seats = {roles[(j + shift) % len(roles)]: seats[roles[j]] for j in range(len(roles))}
        ep = Episode(
            env_id=env_ids[k], seed=env_seed, env_kwargs=dict(getattr(env, "env_kwargs", kwargs_of[k])),
            agents={r: seats[r].name for r in env.possible_agents},
            options=dict(getattr(env, "episode_options", None) or {}),  # what replay needs besides the seed (AZR's references)
            id=f"{run_name}-{index}" if run_name else str(index),
            metadata={**(metadata or {}), "index": index},
        )
        return _Slot(env, ep, {r: 0.0 for r in env.possible_agents}, seats, kind=k, local=local)

    while active or ahead or next_local < episodes:
        while len(active) < concurrency and (ahead or next_local < episodes):
            if not ahead:  # reset the next episode, and the ones after it while their envs allow
                ahead.append(start(next_local))
                next_local += 1
                while (len(ahead) < RESET_AHEAD and next_local < episodes and independent[ahead[-1].kind]
                       and independent[schedule[next_local]]):
                    ahead.append(start(next_local))
                    next_local += 1
            active.append(ahead.popleft())
        groups: dict[int, list[_Slot]] = defaultdict(list)
        for slot in active:
            groups[id(slot.seats[slot.env.agent_selection])].append(slot)
        for group in groups.values():
            policy = group[0].seats[group[0].env.agent_selection]
            requests = [_request(s.env, s.episode.env_id, s.env.agent_selection) for s in group]
            t0 = time.perf_counter()
            completions = policy.act(requests)
            if len(completions) != len(requests):
                raise ArenaError(f"agent {policy.name!r} returned {len(completions)} completions for {len(requests)} requests")
            wrong = next((c for c in completions if not isinstance(c, Completion)), None)
            if wrong is not None:
                raise ArenaError(f"agent {policy.name!r} returned a {type(wrong).__name__} where act() returns "
                                 "arena.policy.Completion objects (Completion(text=...)), one per request")
            elapsed = time.perf_counter() - t0
            for slot, request, completion in zip(group, requests, completions):
                _advance(slot, request, completion, policy.name, elapsed / len(requests))
        finished = [s for s in active if _is_over(s.env)]
        if finished:
            active = [s for s in active if not _is_over(s.env)]
            for s in finished:
                results[s.local] = _finalize(s)
                free[s.kind].append(s.env)
            for s in finished:  # before the write: an interrupted caller's list then holds all that was stored
                if on_episode is not None:
                    on_episode(results[s.local])
            if writer is not None or fold is not None:
                ready = written
                while ready in results and ready < episodes:
                    ready += 1
                if ready > written:
                    batch = [results[i] for i in range(written, ready)]
                    if writer is not None:
                        writer.write(batch)
                    if fold is not None:  # after the write: no state from an episode that was not stored
                        fold(batch)
                    written = ready
    return [results[i] for i in range(episodes)]


def _advance(slot: _Slot, request: Request, completion: Completion, agent_name: str, seconds: float) -> None:
    env = slot.env
    role = request.role
    env.step(completion.text)
    for r, value in env.rewards.items():
        slot.returns[r] = slot.returns.get(r, 0.0) + float(value)
    info = dict(env.turn_info)
    action = info.pop("action") if "action" in info else env.parse_action(completion.text)
    slot.episode.turns.append(Turn(
        index=len(slot.episode.turns), role=role, agent=agent_name, observation=request.observation,
        completion=completion.text, action=action,
        legal=info.pop("legal", None), prompt_ids=completion.prompt_ids, token_ids=completion.token_ids,
        logprobs=completion.logprobs, info={**info, **completion.info, "seconds": round(seconds, 6)},
    ))
    # No dead steps (`step(None)` for each finished role, PettingZoo's way to empty `env.agents`)
    # once the episode is over: they change nothing the episode records, and the env is
    # `reset` before it plays again. (They were about a tenth of Kuhn Poker's env time.)


def _finalize(slot: _Slot) -> Episode:
    ep = slot.episode
    ep.rewards = {r: float(v) for r, v in slot.returns.items()}
    ep.outcome = dict(slot.env.outcome or {})
    for turn, (reward, infra) in zip(ep.turns, turn_rewards(slot.env, [t.role for t in ep.turns], ep.rewards)):
        turn.reward = reward
        if infra:
            turn.info["infra"] = True
    return ep


def turn_rewards(env: Any, roles: Sequence[str], returns: Mapping[str, float]) -> list[tuple[float, bool]]:
    """(reward, infra) of each turn of a finished episode, whose turns were played by `roles`:
    the env's own credit for the turn where it keeps one (`turn_credit`: AZR's n solver
    attempts, SPICE's roles), else the acting role's return; infra where the credit says so."""
    credit = getattr(env, "turn_credit", None) or []
    out = []
    for i, role in enumerate(roles):
        own = credit[i] if i < len(credit) else {}
        out.append((float(own["reward"]) if "reward" in own else float(returns.get(role, 0.0)), bool(own.get("infra"))))
    return out
