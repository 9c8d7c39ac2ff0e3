"""Compliance of every registered env, parametrised from the registry.

A newly registered env is covered here without writing a test: PettingZoo's `api_test`,
a fuzz of random action strings, seeded determinism, and exact replay.
"""

from __future__ import annotations

import math
import random
import string
import warnings

import pytest
from arena.agents import RandomAgent
from pettingzoo.test import api_test

import arena
from arena.replay import verify
from arena.rollout import play

ENV_IDS = sorted(arena.registry())


def test_registry_has_the_spiral_games():
    assert "spiral/TicTacToe-v0" in ENV_IDS


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_api(env_id):
    env = arena.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns that text spaces are not Box/Discrete
        api_test(env, num_cycles=300)


def _garbage(rng: random.Random) -> str:
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
        return rng.choice(["", " ", "\n", "[", "]", "[]", "\x00", "\\boxed{}", "[Offer: -1 Wheat -> 99 Ore]", "[Accept]", "[call]", "[bet]", "[4]", "[9]", "[-1]"])
    return "x" * rng.randrange(1000, 20000)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_fuzz_random_action_strings(env_id):
    """Thousands of random action strings: no crash, finite rewards, episodes end."""
    rng = random.Random(0)
    env = arena.make(env_id)
    steps = 0
    episode = 0
    while steps < 3000:
        env.reset(seed=episode)
        episode += 1
        for agent in env.agent_iter(200):
            obs, reward, term, trunc, info = env.last()
            assert isinstance(obs, str)
            assert math.isfinite(reward)
            if term or trunc:
                env.step(None)
                continue
            legal = info.get("legal_actions")
            # mix garbage with legal moves so that episodes get deep enough to matter
            if legal and rng.random() < 0.7:
                action = rng.choice(legal)
            else:
                action = _garbage(rng)
            env.step(action)
            steps += 1
            assert all(math.isfinite(r) for r in env.rewards.values())
        assert not env.agents, f"{env_id}: episode did not end within 200 steps"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_and_actions_same_episode(env_id):
    def records(episodes):
        out = []
        for ep in episodes:
            record = ep.to_dict()
            for turn in record["turns"]:
                turn["info"].pop("seconds")  # wall-clock time is the one field allowed to differ
            out.append(record)
        return out

    a = play(env_id, [RandomAgent(seed=3)], 20, seed=11)
    b = play(env_id, [RandomAgent(seed=3)], 20, seed=11)
    assert records(a) == records(b)
    assert len({len(e.turns) for e in a} | {e.seed for e in a}) > 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_played_episodes_replay_exactly(env_id):
    episodes = play(env_id, [RandomAgent(seed=5)], 30, seed=100, concurrency=7)
    for ep in episodes:
        assert verify(ep) == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_verify_catches_a_changed_action(env_id):
    """The replay check can fail: alter one completion and it reports a mismatch."""
    ep = play(env_id, [RandomAgent(seed=1)], 1, seed=3)[0]
    ep.turns[0].completion = "\\boxed{certainly not a legal move}"
    assert verify(ep), "a changed completion must be reported"


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_roles_and_protocol(env_id):
    env = arena.make(env_id)
    graph = env.protocol()
    assert set(env.possible_agents) <= set(graph.nodes)
    for role in env.roles:
        assert role.description and role.reward
        messages = role.messages("OBS")
        assert messages[-1]["role"] == "user" and "OBS" in messages[-1]["content"]
    doc = type(env).__module__
    module_doc = __import__(doc, fromlist=["_"]).__doc__ or ""
    for section in ("Description", "Roles", "Observation", "Actions", "Rewards", "Episode end", "Arguments"):
        assert section in module_doc, f"{env_id}: the env's module docstring lacks a {section!r} section"
