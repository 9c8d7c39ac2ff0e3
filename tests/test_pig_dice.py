"""Pig Dice (`spiral/PigDice-v0`): TextArena's rules, seeded dice, SPIRAL's move cap."""

from __future__ import annotations

import numpy as np
import pytest
from arena.agents import make_agent
from arena.envs.spiral.pig_dice import hold_target

import arena
from arena.errors import ArenaError


def _play(env, actions):
    for action in actions:
        env.step(action)


def test_rules_match_textarenas_on_random_games(monkeypatch) -> None:
    """The same moves and the same dice give the same scores, turn totals, seat to move and
    winner as TextArena 0.7.4's PigDiceEnv, move by move, over 200 random games."""
    pig = pytest.importorskip("textarena.envs.PigDice.env", reason="TextArena is the reference (pip install textarena)")
    rng = np.random.default_rng(0)
    given: list[int] = []  # the dice TextArena's `random.randint(1, 6)` returns, in order

    class Dice:
        @staticmethod
        def randint(low: int, high: int) -> int:
            return given.pop(0)

    monkeypatch.setattr(pig, "random", Dice())
    for game in range(200):
        ours = arena.make("spiral/PigDice-v0", winning_score=30, max_turns=500)
        ours.reset(seed=game)
        theirs = pig.PigDiceEnv(winning_score=30, max_turns=500)
        theirs.reset(num_players=2, seed=game)
        given.clear()
        for _ in range(400):
            action = "[roll]" if rng.random() < 0.7 else "[hold]"
            before = len(ours.rolls)
            ours.step(action)
            given.extend(ours.rolls[before:])  # TextArena rolls what arena rolled
            done, _ = theirs.step(action)
            state = theirs.state.game_state
            assert ours.scores == state["scores"], game
            if ours.done:
                assert done
                winner = ours.outcome["winner"]
                assert theirs.state.rewards == {0: 1, 1: -1} if winner == "player_0" else {0: -1, 1: 1}
                break
            assert not done
            assert ours.turn_total == state["turn_total"]
            assert ours.agent_selection == f"player_{theirs.state.current_player_id}"
        assert ours.done, "a race to 30 ends within 400 moves"


def test_fixed_rolls_bust_hold_and_win() -> None:
    env = arena.make("spiral/PigDice-v0", winning_score=10)
    env.reset(seed=0, options={"rolls": [4, 1, 6, 5]})
    _play(env, ["[roll]", "[roll]"])  # 4, then a 1: player_0 busts
    assert env.scores == [0, 0] and env.agent_selection == "player_1" and env.turn_total == 0
    _play(env, ["[roll]", "[roll]"])  # 6 + 5 = 11
    assert env.turn_total == 11 and "roll history for this turn: '6', '5'" in env.observe("player_1")
    env.step("[hold]")
    assert env.done and env.outcome["winner"] == "player_1" and env.outcome["scores"] == [0, 11]
    assert env.rewards == {"player_0": -1.0, "player_1": 1.0}
    assert env.rolls == [4, 1, 6, 5]


def test_holding_nothing_passes_the_turn() -> None:
    env = arena.make("spiral/PigDice-v0")
    env.reset(seed=3)
    env.step("[hold]")
    assert env.scores == [0, 0] and env.agent_selection == "player_1" and not env.done


def test_move_cap_is_a_draw_with_the_scores() -> None:
    env = arena.make("spiral/PigDice-v0", max_turns=4)
    env.reset(seed=0, options={"rolls": [3, 3]})
    _play(env, ["[roll]", "[roll]", "[hold]", "[hold]"])
    assert env.done and env.outcome["reason"] == "turn_cap" and env.outcome["scores"] == [6, 0]
    assert env.rewards == {"player_0": 0.0, "player_1": 0.0} and env.truncations["player_0"]


@pytest.mark.parametrize(("text", "action", "legal"), [
    ("\\boxed{roll}", "[roll]", True), ("[HOLD]", "[hold]", True), ("I will [Roll]", "[I will [Roll]]", False),  # SPIRAL reads a short answer whole
    ("\\boxed{fold}", "[fold]", False), ("", None, False),
])
def test_parse_and_invalid_moves(text: str, action: str | None, legal: bool) -> None:
    env = arena.make("spiral/PigDice-v0")
    env.reset(seed=1)
    assert env.parse_action(text) == action
    env.step(text)
    assert env.turn_info == {"action": action, "legal": legal}
    if not legal:
        assert env.done and env.rewards == {"player_0": -1.5, "player_1": 0.5}


def test_same_seed_same_dice_and_the_options_are_checked() -> None:
    a, b = arena.make("spiral/PigDice-v0"), arena.make("spiral/PigDice-v0")
    for env in (a, b):
        env.reset(seed=42)
        _play(env, ["[roll]"] * 5)
    assert a.rolls == b.rolls and a.observe("player_0") == b.observe("player_0")
    with pytest.raises(ArenaError, match="die values 1-6"):
        a.reset(seed=0, options={"rolls": [7]})
    with pytest.raises(ArenaError, match="winning_score"):
        arena.make("spiral/PigDice-v0", winning_score=0)


def test_heuristic_holds_at_20_or_at_the_win_and_beats_random() -> None:
    assert hold_target(0, 50) == 20 and hold_target(40, 50) == 10 and hold_target(49, 50) == 1
    env = arena.make("spiral/PigDice-v0")
    env.reset(seed=0, options={"rolls": [6, 6, 6, 2]})
    moves = []
    for _ in range(5):
        moves.append(env.heuristic_action())
        env.step(moves[-1])
    assert moves == ["[roll]"] * 4 + ["[hold]"] and env.scores == [20, 0]
    episodes = arena.play("spiral/PigDice-v0", [make_agent("heuristic"), make_agent("random", seed=0)], 60,
                          seed=0, swap_seats=True)
    wins = sum(e.outcome.get("winner") == ("player_0" if i % 2 == 0 else "player_1") for i, e in enumerate(episodes))
    assert wins >= 40  # measured: 88% of 200 games, the rest mostly draws at the move cap
