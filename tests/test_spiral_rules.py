"""SPIRAL game rules checked against OpenSpiel, move by move.

Random playouts run in lockstep in arena and in OpenSpiel: at every step both must offer
the same legal moves, and the returns must agree at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

import arena

pyspiel = pytest.importorskip("pyspiel")

CARD_INDEX = {"J": 0, "Q": 1, "K": 2}
#: arena Kuhn move -> OpenSpiel action (0 = Pass, 1 = Bet).
KUHN_ACTION = {"[check]": 0, "[fold]": 0, "[bet]": 1, "[call]": 1}


def test_tictactoe_matches_openspiel() -> None:
    game = pyspiel.load_game("tic_tac_toe")
    rng = np.random.default_rng(0)
    env = arena.make("spiral/TicTacToe-v0")
    for episode in range(300):
        env.reset(seed=episode)
        state = game.new_initial_state()
        while not env.done:
            seat = env.possible_agents.index(env.agent_selection)
            assert state.current_player() == seat
            legal = env.legal_actions()
            assert [int(a[1:-1]) for a in legal] == state.legal_actions()
            action = legal[int(rng.integers(len(legal)))]
            env.step(f"\\boxed{{{action}}}")
            state.apply_action(int(action[1:-1]))
        assert state.is_terminal()
        assert [env.outcome["rewards"][a] for a in env.possible_agents] == state.returns()


def _play_kuhn_hand(env, rng, first: int) -> list[float]:
    """Play one hand of `env` with random legal moves beside a fresh OpenSpiel hand.

    OpenSpiel's player 0 is the hand's first mover (arena seat `first`); returns the
    OpenSpiel returns mapped back to arena seats.
    """
    game = pyspiel.load_game("kuhn_poker")
    state = game.new_initial_state()
    seats = [first, 1 - first]  # OpenSpiel player -> arena seat
    for p in range(2):  # chance: deal the cards arena dealt
        assert state.is_chance_node()
        state.apply_action(CARD_INDEX[env.cards[env.possible_agents[seats[p]]]])
    while not state.is_terminal():
        agent = env.agent_selection
        assert seats[state.current_player()] == env.possible_agents.index(agent)
        legal = env.legal_actions()
        assert sorted(KUHN_ACTION[a] for a in legal) == state.legal_actions()
        assert env.info_state() == "JQK"[int(state.information_state_string()[0])] + state.information_state_string()[1:]
        action = legal[int(rng.integers(len(legal)))]
        env.step(action)
        state.apply_action(KUHN_ACTION[action])
    returns = state.returns()
    return [returns[seats.index(0)], returns[seats.index(1)]]


def test_kuhn_one_hand_matches_openspiel() -> None:
    rng = np.random.default_rng(1)
    env = arena.make("spiral/KuhnPoker-v0")
    for episode in range(400):
        env.reset(seed=episode)
        expected = _play_kuhn_hand(env, rng, first=0)
        assert env.done
        assert [env.outcome["rewards"][a] for a in env.possible_agents] == expected


def test_kuhn_five_hands_match_openspiel() -> None:
    """v1: five hands, the first mover alternating; chips add up and the outcome is their sign."""
    env = arena.make("spiral/KuhnPoker-v1")
    chips_env = arena.make("spiral/KuhnPoker-v1", scoring="chips")
    for episode in range(100):
        for e in (env, chips_env):
            e.reset(seed=episode)
        local = np.random.default_rng(episode)
        totals = np.zeros(2)
        for hand in range(5):
            assert env.agent_selection == env.possible_agents[hand % 2]
            totals += _play_kuhn_hand(env, local, first=hand % 2)
        assert env.done and env.outcome["chips"] == {"player_0": totals[0], "player_1": totals[1]}
        assert env.outcome["rewards"]["player_0"] == float(np.sign(totals[0]))
        assert env.outcome["rewards"]["player_1"] == float(np.sign(totals[1]))
        local = np.random.default_rng(episode)  # the same moves, scored by chips
        for hand in range(5):
            _play_kuhn_hand(chips_env, local, first=hand % 2)
        assert chips_env.outcome["rewards"] == {"player_0": totals[0], "player_1": totals[1]}


def test_kuhn_fixed_cards_and_invalid_moves() -> None:
    env = arena.make("spiral/KuhnPoker-v0")
    env.reset(seed=0, options={"cards": ("K", "J")})
    assert env.cards == {"player_0": "K", "player_1": "J"}
    assert "Your card is: 'K'" in env.observe("player_0")
    assert env.legal_actions() == ["[check]", "[bet]"]
    env.step("I think \\boxed{Bet}")  # case-insensitive move name
    assert env.legal_actions() == ["[fold]", "[call]"]
    env.step("\\boxed{check}")  # not legal facing a bet
    assert env.outcome["reason"] == "invalid_move"
    assert env.outcome["rewards"] == {"player_0": 0.5, "player_1": -1.5}
    with pytest.raises(arena.ArenaError, match="cards"):
        env.reset(options={"cards": ("K", "K")})


def test_an_invalid_move_never_pays_a_seat_behind_on_chips() -> None:
    """Over several hands scored by chips, an invalid move adds SPIRAL's -1.5/+0.5 to the
    chips of the finished hands: a seat 2 chips down once cut its loss to -1.5 with one."""
    env = arena.make("spiral/KuhnPoker-v0", rounds=3)
    env.reset(seed=0, options={"cards": ("K", "J")})
    first = env.agent_selection
    env.step("\\boxed{bet}")
    env.step("\\boxed{call}")  # hand 1: K bets, J calls, K wins 2 chips
    behind = "player_1" if first == "player_0" else "player_0"
    assert env.chips[behind] == -2 - 1  # and the next hand's ante is paid
    while env.agent_selection != behind:
        env.step("\\boxed{check}")
    env.step("\\boxed{I give up}")
    assert env.outcome["reason"] == "invalid_move"
    assert env.outcome["rewards"] == {behind: -2 - 1.5, env.opponent(behind): 2 + 0.5}


def test_kuhn_deals_what_gymnasium_seeding_deals() -> None:
    """The deal of seed s is `seeding.np_random(s)[0].permutation(3)` (what every stored Kuhn
    run was dealt, so `arena replay --verify` depends on it), however the env draws it."""
    from arena.envs.spiral.kuhn_poker import CARDS
    from gymnasium.utils import seeding

    env = arena.make("spiral/KuhnPoker-v1", rounds=2)
    for seed in range(500):
        env.reset(seed=seed)
        rng, _ = seeding.np_random(seed)
        deck = rng.permutation(3)
        assert env.cards == {"player_0": CARDS[deck[0]], "player_1": CARDS[deck[1]]}, seed
        env.step("[check]")
        env.step("[check]")  # hand 2 is dealt from the same generator
        deck = rng.permutation(3)
        assert env.cards == {"player_0": CARDS[deck[0]], "player_1": CARDS[deck[1]]}, seed


def test_kuhn_heuristic_agent_plays_legally() -> None:
    from arena.agents import make_agent

    from arena.policy import Request

    agent = make_agent("heuristic", seed=0)
    env = arena.make("spiral/KuhnPoker-v1")
    for episode in range(50):
        env.reset(seed=episode)
        while not env.done:
            role = env.agent_selection
            request = Request("spiral/KuhnPoker-v1", role, env.observe(role), env.prompt(role), env.legal_actions(role), env)
            env.step(agent.act([request])[0].text)
        assert env.outcome["reason"] in ("win", "draw")
