"""`check_env`: the env contract as a function anyone runs (like Gymnasium's `check_env`).

    import arena
    arena.check_env("mine/CoinGuess-v0")          # raises AssertionError on the first problem

    arena check mine/CoinGuess-v0                 # the same from the shell

Checks, in order: the protocol graph and role specs; the module docstring's manual
sections; PettingZoo's `api_test`; a fuzz of random action strings (no crash, finite
rewards, every episode ends); seeded determinism of played episodes; exact replay of
played episodes, and that replay notices a changed completion.
"""

from __future__ import annotations

import importlib
import math
import random
import string
import warnings
from typing import Any

from arena.registry import make

MANUAL_SECTIONS = ("Description", "Roles", "Observation", "Actions", "Rewards", "Episode end", "Arguments")


def random_action_text(rng: random.Random) -> str:
    """A hostile action string: printable noise, random unicode, broken boxes, near-misses,
    empty strings, very long strings."""
    kind = rng.randrange(6)
    if kind == 0:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 60)))
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0xD7FF)) for _ in range(rng.randrange(0, 30)))
    if kind == 2:
        return "\\boxed{" + "".join(rng.choice("{}[]\\ab0123") for _ in range(rng.randrange(0, 20))) + "}"
    if kind == 3:
        return "\\boxed{" * rng.randrange(1, 5) + "}" * rng.randrange(0, 5)
    if kind == 4:
        return rng.choice(["", " ", "\n", "[", "]", "[]", "\x00", "\\boxed{}", "[Offer: -1 Wheat -> 99 Ore]",
                           "[Accept]", "[call]", "[bet]", "[4]", "[9]", "[-1]", "None", "null"])
    return "x" * rng.randrange(1000, 20000)


def check_manual(env: Any) -> None:
    """The env's module docstring is its manual, with Gymnasium's sections plus Roles."""
    module = importlib.import_module(type(env).__module__)
    doc = module.__doc__ or ""
    missing = [s for s in MANUAL_SECTIONS if s not in doc]
    assert not missing, f"{type(env).__name__}: the module docstring lacks the sections {missing}"


def check_roles(env: Any) -> None:
    graph = env.protocol()
    assert set(env.possible_agents) <= set(graph.nodes), "every role must be a node of the protocol graph"
    for role in env.roles:
        assert role.description and role.reward, f"role {role.name!r} needs a description and a reward text"
        messages = role.messages("OBSERVATION")
        assert messages[-1]["role"] == "user" and "OBSERVATION" in messages[-1]["content"], \
            f"role {role.name!r}: the prompt template must place {{observation}} in the user message"


def fuzz(env_id: str, steps: int = 3000, seed: int = 0, legal_fraction: float = 0.7, max_episode_steps: int = 500, **kwargs: Any) -> int:
    """Step env `env_id` with random strings (mixed with legal moves when known) for
    `steps` steps; assert no crash, finite rewards, and that episodes end. Returns episodes."""
    rng = random.Random(seed)
    env = make(env_id, **kwargs)
    done_steps = 0
    episodes = 0
    while done_steps < steps:
        env.reset(seed=episodes)
        episodes += 1
        for _agent in env.agent_iter(max_episode_steps):
            obs, reward, term, trunc, info = env.last()
            assert isinstance(obs, str), f"observation is {type(obs).__name__}, not str"
            assert math.isfinite(reward), f"non-finite reward {reward}"
            if term or trunc:
                env.step(None)
                continue
            legal = info.get("legal_actions")
            action = rng.choice(legal) if legal and rng.random() < legal_fraction else random_action_text(rng)
            env.step(action)
            done_steps += 1
            assert all(math.isfinite(r) for r in env.rewards.values()), f"non-finite rewards {env.rewards}"
        assert not env.agents, f"{env_id}: an episode did not end within {max_episode_steps} steps"
    return episodes


def _records(episodes: list) -> list[dict]:
    out = []
    for ep in episodes:
        record = ep.to_dict()
        for turn in record["turns"]:
            turn["info"].pop("seconds", None)  # wall-clock time is the one field allowed to differ
        out.append(record)
    return out


def check_determinism_and_replay(env_id: str, episodes: int = 20, **kwargs: Any) -> None:
    """Same seeds and agents give identical episodes, and every episode replays exactly."""
    from arena.agents import RandomAgent
    from arena.replay import verify
    from arena.rollout import play

    a = play(env_id, [RandomAgent(seed=3)], episodes, seed=11, env_kwargs=kwargs)
    b = play(env_id, [RandomAgent(seed=3)], episodes, seed=11, env_kwargs=kwargs)
    assert _records(a) == _records(b), f"{env_id}: the same seeds and actions gave different episodes"
    for ep in a:
        mismatches = verify(ep)
        assert not mismatches, f"{env_id}: episode does not replay exactly: {mismatches[0]}"
    changed = a[0]
    changed.turns[0].completion = "\\boxed{certainly not a legal move}"
    assert verify(changed), f"{env_id}: replay did not notice a changed completion"


def check_env(env_id: str, *, api_cycles: int = 300, fuzz_steps: int = 3000, episodes: int = 20, **kwargs: Any) -> None:
    """Run every check on env `env_id` (built with `kwargs`); raise AssertionError on failure."""
    from pettingzoo.test import api_test  # imports pytest: only when checking

    env = make(env_id, **kwargs)
    check_roles(env)
    check_manual(env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns that text spaces are not Box/Discrete
        api_test(env, num_cycles=api_cycles)
    fuzz(env_id, steps=fuzz_steps, **kwargs)
    check_determinism_and_replay(env_id, episodes=episodes, **kwargs)
