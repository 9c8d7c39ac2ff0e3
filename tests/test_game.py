"""The zero-sum game base: action extraction, invalid moves, turn cap (SPIRAL's rules)."""

from __future__ import annotations

import gymnasium
import pytest

import arena
from arena.game import extract_action, last_boxed


@pytest.mark.parametrize(
    "text, action",
    [
        ("I think the centre. \\boxed{4}", "[4]"),
        ("\\boxed{[4]}", "[4]"),
        ("first \\boxed{1} then, on reflection, \\boxed{bet}", "[bet]"),
        ("\\boxed{Offer: 1 Wheat -> 2 Ore}", "[Offer: 1 Wheat -> 2 Ore]"),
        ("\\boxed{\\text{call}}", "[\\text{call}]"),
        ("  bet ", "[bet]"),
        ("[call]", "[call]"),
        ("one two three four five", "[one two three four five]"),
        ("one two three four five six", None),
        ("", None),
        ("\\boxed{}", None),
        ("\\boxed{4", "[\\boxed{4]"),  # an unclosed box is a bare short answer, then refused as illegal
    ],
)
def test_extract_action(text, action):
    assert extract_action(text) == action


def test_last_boxed_balances_braces():
    assert last_boxed("\\boxed{a{b}c} and \\boxed{x{y}}") == "x{y}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{a} \\boxed{unclosed") == "a"  # the last box that closes
    assert last_boxed("\\boxed{\\boxed{b}") == "b"
    assert last_boxed("\\boxed{}") == ""


@pytest.mark.parametrize("mode, offender, opponent", [("train", -1.5, 0.5), ("eval", -1.0, 1.0)])
def test_invalid_move_ends_the_game(mode, offender, opponent):
    env = arena.make("spiral/TicTacToe-v0", mode=mode)
    env.reset(seed=0)
    env.step("\\boxed{4}")
    env.step("\\boxed{4}")  # occupied
    assert env.outcome["reason"] == "invalid_move" and env.outcome["invalid_move_by"] == "player_1"
    assert env.rewards == {"player_0": opponent, "player_1": offender}
    assert all(env.terminations.values())
    assert env.turn_info == {"action": "[4]", "legal": False}


def test_turn_cap_is_a_draw():
    env = arena.make("spiral/TicTacToe-v0", max_turns=3)
    env.reset(seed=0)
    for move in ("[0]", "[4]", "[8]"):
        env.step(move)
    assert env.outcome["reason"] == "turn_cap" and env.outcome["winner"] is None
    assert env.rewards == {"player_0": 0.0, "player_1": 0.0}
    assert all(env.truncations.values()) and not any(env.terminations.values())


def test_win_and_loss():
    env = arena.make("spiral/TicTacToe-v0")
    env.reset(seed=0)
    for move in ("[0]", "[3]", "[1]", "[4]", "[2]"):
        env.step(f"\\boxed{{{move}}}")
    assert env.outcome == {"reason": "win", "winner": "player_0", "rewards": {"player_0": 1.0, "player_1": -1.0}}


def test_minimax_never_loses_and_always_draws_itself():
    from arena.agents import make_agent

    from arena.rollout import play

    self_play = play("spiral/TicTacToe-v0", [make_agent("heuristic")], 3)
    assert all(ep.outcome["reason"] == "draw" for ep in self_play)
    vs_random = play("spiral/TicTacToe-v0", [make_agent("random", seed=1), make_agent("heuristic")], 60)
    assert all(ep.rewards["player_1"] >= 0 for ep in vs_random)
    assert sum(ep.rewards["player_1"] > 0 for ep in vs_random) > 40


@pytest.mark.parametrize("env_id", ["spiral/TicTacToe-v0", "spiral/KuhnPoker-v0"])
def test_legal_actions_are_a_fresh_list_each_call(env_id):
    # the games cache their legal moves per state: a caller changing the list it got
    # must not change what the env offers (or accepts) next
    env = arena.make(env_id)
    env.reset(seed=0)
    first = env.legal_actions()
    offered = list(first)
    first.clear()
    assert env.legal_actions() == offered
    env.step(offered[0])
    assert env.turn_info["legal"] is True



def test_the_episode_generator_is_gymnasiums_built_on_first_use(monkeypatch):
    # `np_random` is `seeding.np_random(seed)` of the last reset, built only when an episode
    # draws: the same draws as seeding at reset, and TicTacToe (no draws) never seeds
    # (`arena.seeding.np_random` builds gymnasium's generator, tests/test_seeding.py)
    from gymnasium.utils import seeding

    from arena import seeding as fast_seeding

    original, seeds = seeding.np_random, []
    fast = fast_seeding.np_random

    def counted(seed=None):
        seeds.append(seed)
        return fast(seed)

    monkeypatch.setattr(fast_seeding, "np_random", counted)
    ttt, kuhn = arena.make("spiral/TicTacToe-v0"), arena.make("spiral/KuhnPoker-v0")
    ttt.reset(seed=3)
    ttt.step(ttt.legal_actions()[0])
    assert seeds == []
    kuhn.reset(seed=7)
    assert seeds == [7]  # the deal draws
    expected = original(7)[0]
    expected.permutation(3)  # the deal
    assert kuhn.np_random.random() == expected.random()
    assert ttt.np_random.random() == original(3)[0].random()  # built now, from the reset's seed
    with pytest.raises(gymnasium.error.Error, match="greater or equal to zero"):
        ttt.reset(seed=-1)  # still refused at reset, not at first use
