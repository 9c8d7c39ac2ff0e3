"""Compliance of every registered env, parametrised from the registry.

A newly registered env is covered here without writing a test. Each check is a part of
`arena.check_env` (see arena/checker.py), run separately so a failure names its check.
"""

from __future__ import annotations

import warnings

import pytest
from pettingzoo.test import api_test

import arena
from arena import checker
from arena.agents import RandomAgent
from arena.replay import verify
from arena.rollout import play

ENV_IDS = sorted(arena.registry())


def test_registry_has_the_spiral_games():
    assert {"spiral/TicTacToe-v0", "spiral/KuhnPoker-v0", "spiral/KuhnPoker-v1", "spiral/SimpleNegotiation-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_api(env_id):
    env = arena.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns that text spaces are not Box/Discrete
        api_test(env, num_cycles=300)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_fuzz_random_action_strings(env_id):
    """Thousands of random action strings: no crash, finite rewards, episodes end."""
    assert checker.fuzz(env_id, steps=3000) > 1


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_and_actions_same_episode_and_exact_replay(env_id):
    checker.check_determinism_and_replay(env_id, episodes=20)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_replay_of_concurrent_rollouts(env_id):
    for ep in play(env_id, [RandomAgent(seed=5)], 30, seed=100, concurrency=7):
        assert verify(ep) == []


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_roles_protocol_and_manual(env_id):
    env = arena.make(env_id)
    checker.check_roles(env)
    checker.check_manual(env)


def test_check_env_fails_on_a_broken_env():
    """check_env can fail: an env whose reset draws from the global RNG is not reproducible."""
    import random as global_random

    from arena.envs.spiral.tictactoe import TicTacToe

    class Unseeded(TicTacToe):
        def _observe(self, agent):
            return super()._observe(agent) + f"\nnoise {global_random.random()}"

    arena.register("test/Unseeded-v0", Unseeded, override=True)
    try:
        with pytest.raises(AssertionError, match="different episodes|does not replay"):
            checker.check_determinism_and_replay("test/Unseeded-v0", episodes=3)
    finally:
        from arena.registry import _REGISTRY

        _REGISTRY.pop("test/Unseeded-v0", None)
