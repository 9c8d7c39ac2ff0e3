"""`arena.evaluate.evaluate` with scripted policies: against the fixed opponents in a two-seat
game, alone in every role elsewhere (no model needed)."""

from __future__ import annotations

import pytest
from arena.agents import make_agent

from arena.evaluate import evaluate


def test_two_seat_game_is_played_against_random_and_heuristic():
    candidate = make_agent("heuristic", seed=3)
    candidate.name = "minimax"  # the evaluated policy's name must differ from its opponents'
    results = evaluate(candidate, ["spiral/TicTacToe-v0"], episodes=8, seed=5)
    assert results["TicTacToe-v0/vs_heuristic/draw_rate"] == 1.0  # minimax against minimax, both seats
    assert results["TicTacToe-v0/vs_random/loss_rate"] == 0.0
    assert not any("/self/" in key for key in results)


def test_an_env_without_two_seats_is_played_alone_role_by_role():
    results = evaluate(make_agent("scripted", seed=3), ["spice/Corpus-v0"], episodes=6, seed=5,
                       env_kwargs={"spice/Corpus-v0": {"n": 2}})
    assert not any("/vs_" in key for key in results)
    for role in ("challenger", "reasoner", "verifier"):
        for rate in ("win_rate", "draw_rate", "loss_rate", "invalid_move_rate"):
            assert 0.0 <= results[f"Corpus-v0/self/{role}/{rate}"] <= 1.0
        assert f"Corpus-v0/self/{role}/mean_return" in results


def test_an_odd_episode_count_is_refused_where_deals_are_played_from_both_seats():
    from arena.config import TrainConfig, check_env_ids
    from arena.errors import ArenaError
    from arena.evaluate import check_episodes

    with pytest.raises(ArenaError, match=r"^-n 3: each deal is played from both seats; give an even number \(e.g. -n 4\)$"):
        check_episodes(["spice/Corpus-v0", "spiral/KuhnPoker-v0"], 3)
    check_episodes(["spice/Corpus-v0"], 3)  # the model plays every role: no deal to share
    check_episodes(["spiral/KuhnPoker-v0"], 4)
    with pytest.raises(ArenaError, match=r"^--eval-episodes 5: each deal is played from both seats"):
        check_env_ids(TrainConfig(env=["spiral/KuhnPoker-v0"], eval_episodes=5))  # before the run folder exists
    check_env_ids(TrainConfig(env=["spice/Corpus-v0"], eval_episodes=5))
