"""`arena.evaluate.evaluate` with scripted policies: against the fixed opponents in a two-seat
game, alone in every role elsewhere (no model needed)."""

from __future__ import annotations

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
