"""Liar's Dice (`spiral/LiarsDice-v0`): TextArena's rules, seeded dice, SPIRAL's move cap."""

from __future__ import annotations

import numpy as np
import pytest
from arena.envs.spiral.liars_dice import NO_BID, count_face, is_valid_bid, resolve_call, valid_bids

import arena
from arena.errors import ArenaError

DICE = ((1, 2, 3, 4, 5), (6, 6, 1, 2, 3))


def _play(env, actions):
    for action in actions:
        env.step(action)


def _random_move(env, rng):
    """A random legal move: a call with probability 0.3 when a bid stands, else a random bid."""
    legal = env.legal_actions()
    if legal[0] == "[Call]" and (len(legal) == 1 or rng.random() < 0.3):
        return "[Call]"
    bids = [a for a in legal if a != "[Call]"]
    return bids[int(rng.integers(len(bids)))]


def test_rules_match_textarenas_on_random_games(monkeypatch) -> None:
    """The same moves and the same dice give the same bids, remaining dice, seat to move,
    end and rewards as TextArena 0.7.4's LiarsDiceEnv (2 players), move by move, over 200
    random games of legal moves."""
    ld = pytest.importorskip("textarena.envs.LiarsDice.env", reason="TextArena is the reference (pip install textarena)")
    given: list[int] = []  # what TextArena's `random.randint(1, 6)` returns, in order

    class Dice:
        @staticmethod
        def randint(low: int, high: int) -> int:
            return given.pop(0) if given else 1  # (TextArena also rolls after the last call)

    monkeypatch.setattr(ld, "random", Dice())
    rng = np.random.default_rng(0)
    calls = bluffs = 0
    for game in range(200):
        num_dice = 1 + game % 5
        ours = arena.make("spiral/LiarsDice-v0", num_dice=num_dice, max_turns=10_000)
        ours.reset(seed=game)
        given[:] = ours.dice["player_0"] + ours.dice["player_1"]
        theirs = ld.LiarsDiceEnv(num_dice=num_dice)
        theirs.reset(num_players=2, seed=game)
        assert not given
        for _ in range(5000):
            action = _random_move(ours, rng)
            round_before, bidder = ours.round, ours.last_bidder
            remaining_before = dict(ours.remaining)
            ours.step(action)
            if ours.round != round_before:  # a new round: TextArena rolls what arena rolled
                given[:] = ours.dice["player_0"] + ours.dice["player_1"]
            done, _ = theirs.step(action)
            assert not given and not theirs.state.made_invalid_move, (game, action)
            state = theirs.state.game_state
            remaining = {f"player_{p}": n for p, n in state["remaining_dice"].items()}
            assert remaining == ours.remaining, (game, action)
            if action == "[Call]":
                calls += 1
                loser = next(a for a in remaining if remaining[a] < remaining_before[a])
                bluffs += loser == bidder
            if ours.done:
                assert done and ours.outcome["reason"] == "win"
                winner = ours.outcome["winner"]
                assert ours.outcome["dice"] == remaining and remaining[winner] > 0
                assert theirs.state.rewards == ({0: 1.0, 1: -1.0} if winner == "player_0" else {0: -1.0, 1: 1.0})
                assert ours.rewards[winner] == 1.0 and ours.rewards[ours.opponent(winner)] == -1.0
                break
            assert not done
            assert {f"player_{p}": d for p, d in state["dice_rolls"].items()} == ours.dice
            assert (state["current_bid"]["quantity"], state["current_bid"]["face_value"]) == ours.bid
            last = state["last_bidder_id"]
            assert (None if last is None else f"player_{last}") == ours.last_bidder
            assert ours.agent_selection == f"player_{theirs.state.current_player_id}", (game, action)
        assert ours.done
    assert calls > 500 and 0 < bluffs < calls  # both outcomes of a call were compared


def test_is_valid_bid_is_textarenas() -> None:
    ld = pytest.importorskip("textarena.envs.LiarsDice.env", reason="TextArena is the reference (pip install textarena)")
    reference = ld.LiarsDiceEnv()
    for cq in range(5):
        for cf in range(7):
            for q in range(7):
                for f in range(-1, 9):
                    current = {"quantity": cq, "face_value": cf}
                    assert is_valid_bid(q, f, (cq, cf)) == reference._is_valid_bid(q, f, current)


def test_bid_rules() -> None:
    assert is_valid_bid(1, 1, NO_BID) == (True, "")
    assert is_valid_bid(3, 4, (3, 4)) == (False, "Bid is identical to the current bid.")
    assert is_valid_bid(4, 4, (3, 4))[0] and is_valid_bid(3, 5, (3, 4))[0] and is_valid_bid(5, 6, (3, 4))[0]
    assert not is_valid_bid(2, 6, (3, 4))[0]  # lower quantity
    assert not is_valid_bid(9, 3, (3, 4))[0]  # lower face
    assert not is_valid_bid(3, 7, (3, 4))[0]  # no face 7
    assert len(valid_bids(NO_BID, 10)) == 60 and valid_bids((10, 6), 10) == []
    assert valid_bids((9, 5), 10) == [(9, 6), (10, 5), (10, 6)]
    assert count_face([[1, 2, 2], [2, 6]], 2) == 3 and count_face([[1], []], 6) == 0
    assert resolve_call((4, 2), [[1, 2, 2], [2, 6]], "player_0", "player_1") == ("player_0", 3)
    assert resolve_call((3, 2), [[1, 2, 2], [2, 6]], "player_0", "player_1") == ("player_1", 3)


def test_legal_actions_and_call_needs_a_bid() -> None:
    env = arena.make("spiral/LiarsDice-v0")
    env.reset(seed=0, options={"dice": DICE})
    legal = env.legal_actions("player_0")
    assert "[Call]" not in legal and len(legal) == 60 and legal[:2] == ["[Bid: 1, 1]", "[Bid: 1, 2]"]
    assert env.legal_actions("player_1") == []
    assert "Available Moves: '[Bid: QUANTITY, FACE]' with QUANTITY 1-10 and FACE 1-6" in env.observe("player_0")
    env.step("[Bid: 3, 4]")
    legal = env.legal_actions("player_1")
    assert legal[0] == "[Call]" and "[Bid: 3, 4]" not in legal and "[Bid: 3, 5]" in legal and "[Bid: 4, 3]" not in legal
    assert len(legal) == 1 + 2 + 7 * 3  # (3, 5), (3, 6), then quantities 4-10 with faces 4-6
    obs = env.observe("player_1")
    assert "'[Call]', or '[Bid: QUANTITY, FACE]' with QUANTITY 3-10 and FACE 4-6, other than '[Bid: 3, 4]'" in obs
    assert "Current bid: Player 0 bids 3 of face 4." in obs and "Your dice: 6, 6, 1, 2, 3." in obs
    assert "Your dice: 1, 2, 3, 4, 5." in env.observe("player_0") and "6, 6, 1" not in env.observe("player_0")

    env.reset(seed=0)
    env.step("[Call]")  # no bid to call
    assert env.done and env.outcome["reason"] == "invalid_move" and env.outcome["invalid_move_by"] == "player_0"


def test_a_call_resolves_rerolls_and_passes_the_round_to_the_bidder() -> None:
    env = arena.make("spiral/LiarsDice-v0")
    env.reset(seed=0, options={"dice": DICE})
    _play(env, ["[Bid: 2, 6]", "[Bid: 3, 6]", "[Call]"])  # three 6s? there are two: player_1 bluffed
    assert env.remaining == {"player_0": 5, "player_1": 4}
    assert env.bid == NO_BID and env.last_bidder is None and env.round == 1
    assert len(env.dice["player_0"]) == 5 and len(env.dice["player_1"]) == 4
    assert env.agent_selection == "player_1"  # the seat after the caller opens the new round
    log = env.observe("player_1")
    assert "The actual count of face 6 is 2, which is LESS than 3.\nPlayer 1 (the last bidder) loses one die." in log
    assert "New round - Remaining dice: Player 0: 5; Player 1: 4" in log

    env.reset(seed=0, options={"dice": DICE})
    _play(env, ["[Bid: 2, 2]", "[Call]"])  # two 2s: the bid holds, the caller loses a die
    assert env.remaining == {"player_0": 5, "player_1": 4} and env.agent_selection == "player_0"
    assert "Player 1 (the caller) loses one die." in env.observe("player_0")


def test_the_last_die_ends_the_game() -> None:
    env = arena.make("spiral/LiarsDice-v0", num_dice=1)
    env.reset(seed=0, options={"dice": ((2,), (5,))})
    _play(env, ["[Bid: 1, 5]", "[Call]"])
    assert env.done and env.outcome["winner"] == "player_0" and env.outcome["dice"] == {"player_0": 1, "player_1": 0}
    assert env.rewards == {"player_0": 1.0, "player_1": -1.0}
    assert "Player 1 has no dice left. Player 0 wins!" in env.observe("player_0")


def test_parse_variants() -> None:
    env = arena.make("spiral/LiarsDice-v0")
    env.reset(seed=0)
    for text in ("[Call]", "[call]", "\\boxed{[CALL]}", "\\boxed{call}", "Call"):
        assert env.parse_action(text) == "[Call]", text
    for text in ("[Bid: 3, 4]", "[bid 3 4]", "[BID:3,4]", "\\boxed{Bid: 3, 4}", "\\boxed{[bid: 03,4]}", "bid 3, 4"):
        assert env.parse_action(text) == "[Bid: 3, 4]", text
    assert env.parse_action("[raise]") == "[raise]"
    assert env.parse_action("[Bid: 3]") == "[Bid: 3]"
    assert env.parse_action("") is None


@pytest.mark.parametrize(("mode", "rewards"), [("train", (-1.5, 0.5)), ("eval", (-1.0, 1.0))])
def test_invalid_moves_end_the_game(mode, rewards) -> None:
    for moves in (["[raise]"], ["[Bid: 3, 4]", "[Bid: 2, 6]"], ["[Bid: 0, 2]"], ["[Bid: 11, 2]"], ["[Bid: 3, 7]"]):
        env = arena.make("spiral/LiarsDice-v0", mode=mode)
        env.reset(seed=1)
        _play(env, moves)
        bad = "player_0" if len(moves) == 1 else "player_1"
        assert env.done and env.outcome["reason"] == "invalid_move" and env.outcome["invalid_move_by"] == bad
        assert env.rewards == {bad: rewards[0], env.opponent(bad): rewards[1]}


def test_move_cap_is_a_draw_with_the_dice() -> None:
    env = arena.make("spiral/LiarsDice-v0", max_turns=3)
    env.reset(seed=0)
    _play(env, ["[Bid: 1, 1]", "[Bid: 1, 2]", "[Bid: 1, 3]"])
    assert env.done and env.outcome["reason"] == "turn_cap" and env.outcome["winner"] is None
    assert env.outcome["dice"] == {"player_0": 5, "player_1": 5}
    assert all(env.truncations.values()) and env.rewards == {"player_0": 0.0, "player_1": 0.0}


def test_bad_arguments_and_options() -> None:
    with pytest.raises(ArenaError, match="num_dice must be >= 1"):
        arena.make("spiral/LiarsDice-v0", num_dice=0)
    env = arena.make("spiral/LiarsDice-v0")
    for dice in (((1, 2, 3, 4, 5),), ((1, 2, 3, 4, 5), (1, 2, 3, 4, 7)), ((1, 2, 3), (1, 2, 3)), ("abc", "def")):
        with pytest.raises(ArenaError, match=r"options\['dice'\]"):
            env.reset(seed=0, options={"dice": dice})


def test_fixed_dice_and_seeded_rolls() -> None:
    env = arena.make("spiral/LiarsDice-v0")
    env.reset(seed=3, options={"dice": DICE})
    assert env.dice == {"player_0": [1, 2, 3, 4, 5], "player_1": [6, 6, 1, 2, 3]}
    assert "Your current Dice are: 1, 2, 3, 4, 5" in env.observe("player_0")

    def rounds(seed):
        env.reset(seed=seed)
        seen = [dict(env.dice)]
        for _ in range(6):
            _play(env, ["[Bid: 1, 1]", "[Call]"])
            if env.done:
                break
            seen.append(dict(env.dice))
        return seen

    assert rounds(7) == rounds(7) and rounds(7) != rounds(8)
    assert all(1 <= d <= 6 and type(d) is int for r in rounds(7) for dice in r.values() for d in dice)


def test_heuristic_is_always_legal_and_beats_random() -> None:
    env = arena.make("spiral/LiarsDice-v0", max_turns=500)
    rng = np.random.default_rng(0)
    wins = 0
    for game in range(150):
        env.reset(seed=game)
        heuristic = f"player_{game % 2}"
        while not env.done:
            agent = env.agent_selection
            if agent == heuristic:
                move = env.heuristic_action(agent, rng=rng if game % 3 else None)
                assert move in env.legal_actions(agent), (game, move)
            else:
                move = _random_move(env, rng)
            env.step(move)
        assert env.outcome["reason"] == "win"
        wins += env.outcome["winner"] == heuristic
    assert wins > 100
    env.reset(seed=0, options={"dice": DICE})
    assert env.heuristic_action() == env.heuristic_action() == "[Bid: 1, 1]"  # faces 1-5 held once: the lowest
    env.step("[raise]")
    with pytest.raises(ArenaError, match="over"):
        env.heuristic_action()


def test_heuristic_calls_an_unlikely_bid_and_self_play_ends() -> None:
    env = arena.make("spiral/LiarsDice-v0")
    env.reset(seed=0, options={"dice": DICE})
    env.step("[Bid: 5, 4]")  # player_1 has no 4: 5 - (0 + 5/6) > 1
    assert env.heuristic_action() == "[Call]"
    env.reset(seed=0, options={"dice": DICE})
    env.step("[Bid: 2, 6]")  # player_1 holds two 6s
    assert env.heuristic_action() == "[Bid: 3, 6]"
    ends = []
    for seed in range(100):
        env.reset(seed=seed)
        while not env.done:
            env.step(env.heuristic_action())
        ends.append(env.outcome["reason"])
    assert ends.count("win") > 80
