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


def test_progress_hears_of_every_episode_of_each_batch():
    """`arena eval`'s bar: one task per opponent (or env played alone), every episode counted."""
    seen: dict[str, list[int]] = {}

    def progress(label: str, total: int):
        seen[label] = [total, 0]
        return lambda episode: seen[label].__setitem__(1, seen[label][1] + 1)

    candidate = make_agent("heuristic", seed=3)
    candidate.name = "minimax"
    evaluate(candidate, ["spiral/TicTacToe-v0"], episodes=4, seed=5, progress=progress)
    evaluate(make_agent("scripted", seed=3), ["spice/Corpus-v0"], episodes=2, seed=5,
             env_kwargs={"spice/Corpus-v0": {"n": 2}}, progress=progress)
    assert seen == {"TicTacToe-v0 vs random": [4, 4], "TicTacToe-v0 vs heuristic": [4, 4], "Corpus-v0": [2, 2]}


def test_a_two_seat_env_without_a_heuristic_is_played_against_random_alone():
    """Its heuristic evaluation is skipped before it starts (an empty bar stayed on screen)."""
    from arena.envs.spiral.tictactoe import TicTacToe

    import arena
    from arena.protocol import ArenaEnv

    class NoHeuristic(TicTacToe):
        heuristic_action = ArenaEnv.heuristic_action

    from arena.registry import _REGISTRY

    arena.register("test/NoHeuristicTicTacToe-v0", NoHeuristic, override=True)
    labels: list[str] = []
    candidate = make_agent("random", seed=3)
    candidate.name = "candidate"
    try:
        results = evaluate(candidate, ["test/NoHeuristicTicTacToe-v0"], episodes=2, seed=5,
                           progress=lambda label, total: labels.append(label) or (lambda episode: None))
    finally:
        _REGISTRY.pop("test/NoHeuristicTicTacToe-v0", None)
    assert labels == ["NoHeuristicTicTacToe-v0 vs random"]
    assert not any("vs_heuristic" in key for key in results) and "NoHeuristicTicTacToe-v0/vs_random/win_rate" in results


def test_an_env_without_two_seats_is_played_alone_role_by_role():
    results = evaluate(make_agent("scripted", seed=3), ["spice/Corpus-v0"], episodes=6, seed=5,
                       env_kwargs={"spice/Corpus-v0": {"n": 2}})
    assert not any("/vs_" in key for key in results)
    for role in ("challenger", "reasoner", "verifier"):
        for rate in ("win_rate", "draw_rate", "loss_rate", "invalid_move_rate"):
            assert 0.0 <= results[f"Corpus-v0/self/{role}/{rate}"] <= 1.0
        assert f"Corpus-v0/self/{role}/mean_return" in results


def test_an_env_of_two_unlike_roles_is_played_alone_role_by_role():
    """A proposer and a solver are no two seats: against `random` their results were pooled
    into one win/draw/loss row (`ArenaEnv.two_seat_game`)."""
    import arena
    from arena.protocol import ArenaEnv, Role
    from arena.registry import _REGISTRY

    class ProposeSolve(ArenaEnv):
        roles = (Role("proposer", "writes a sum", "r"), Role("solver", "solves it", "r"))
        edges = (("proposer", "solver"),)

        def _reset(self, options):
            return "proposer"

        def _observe(self, agent):
            return "write a sum" if agent == "proposer" else "solve it"

        def legal_actions(self, agent=None):
            return ["1", "2"]

        def _step(self, agent, text):
            self.turn_info = {"action": text, "legal": True}
            if agent == "proposer":
                self.agent_selection = "solver"
            else:
                self._finish({"proposer": -1.0, "solver": 1.0}, reason="solved")

    arena.register("test/ProposeSolve-v0", ProposeSolve, override=True)
    try:
        results = evaluate(make_agent("random", seed=3), ["test/ProposeSolve-v0"], episodes=3, seed=5)
    finally:
        _REGISTRY.pop("test/ProposeSolve-v0", None)
    assert not any("/vs_" in key for key in results)
    assert results["ProposeSolve-v0/self/proposer/mean_return"] == -1.0
    assert results["ProposeSolve-v0/self/solver/mean_return"] == 1.0


def test_an_odd_episode_count_is_refused_where_deals_are_played_from_both_seats():
    from arena.config import TrainConfig, check_env_ids
    from arena.errors import ArenaError
    from arena.evaluate import check_episodes

    with pytest.raises(ArenaError, match=r"^-n 3: each deal is played from all 2 seats; give a multiple of 2 \(e.g. -n 2 or -n 4\)$"):
        check_episodes(["spice/Corpus-v0", "spiral/KuhnPoker-v0"], 3)
    check_episodes(["spice/Corpus-v0"], 3)  # the model plays every role: no deal to share
    check_episodes(["spiral/KuhnPoker-v0"], 4)
    with pytest.raises(ArenaError, match=r"^--eval-episodes 5: each deal is played from all 2 seats"):
        check_env_ids(TrainConfig(env=["spiral/KuhnPoker-v0"], eval_episodes=5))  # before the run folder exists
    check_env_ids(TrainConfig(env=["spice/Corpus-v0"], eval_episodes=5))


def test_kuhn_exploitability_is_that_of_the_policy_as_it_decodes(arena_cache):
    """Exact (the constrained distribution) only for a policy sampling it whole: a greedy
    policy is scored by its answers (the temperature-1 distribution once gave 0.41 for a
    policy whose greedy play is exploitable by 0.33), top-p by its samples."""
    import math

    from arena.agents.hf import HFPolicy, load_model
    from arena.envs.spiral.kuhn_poker import exploitability, kuhn_policy_table

    from arena.evaluate import kuhn_exploitability

    model, tokenizer = load_model("tiny", device="cpu")
    sampled = HFPolicy(model, tokenizer, constrain=True, temperature=1.0)
    exact, table = kuhn_exploitability(sampled)
    assert all(0 < p < 1 for p in table.values())  # probabilities of the constrained distribution
    greedy = HFPolicy(model, tokenizer, constrain=True, temperature=0.0)
    value, table = kuhn_exploitability(greedy)
    assert set(table.values()) <= {0.0, 1.0} and table == kuhn_policy_table(greedy, samples=2)
    assert math.isclose(value, exploitability(table)) and not math.isclose(value, exact)
    truncated = HFPolicy(model, tokenizer, constrain=True, temperature=1.0, top_p=0.5)
    assert set(kuhn_exploitability(truncated, samples=8)[1].values()) <= {k / 8 for k in range(9)}


@pytest.mark.parametrize("kwargs, standard", [({}, True), ({"rounds": 2}, False), ({"ante": 2}, False),
                                              ({"scoring": "outcome"}, False)])
def test_exploitability_is_reported_for_the_standard_game_only(kwargs, standard):
    from arena.evaluate import _is_one_hand_kuhn

    assert _is_one_hand_kuhn("spiral/KuhnPoker-v0", kwargs) is standard
