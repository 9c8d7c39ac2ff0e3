"""Truth and Deception (`spiral/TruthAndDeception-v0`): TextArena's rules and facts, seeded draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
from arena.agents import make_agent
from arena.envs.spiral.truth_and_deception import FACTS_FILE, load_facts, normalise_guess

import arena
from arena.errors import ArenaError


def test_the_bundled_facts_are_textarenas() -> None:
    resources = pytest.importorskip("importlib.resources")
    pytest.importorskip("textarena", reason="TextArena is the reference (pip install textarena)")
    theirs = json.loads(resources.files("textarena.envs.TruthAndDeception").joinpath("facts.json").read_text())
    assert json.loads(FACTS_FILE.read_text()) == theirs
    assert len(load_facts()) == 260


def test_outcomes_match_textarenas_on_random_games() -> None:
    """The same facts, messages and guess give the same winner, and the guess is asked for at
    the same turn, as TextArena 0.7.4's TruthAndDeceptionEnv (max_turns 6), over 100 games."""
    td = pytest.importorskip("textarena.envs.TruthAndDeception.env", reason="TextArena is the reference")
    rng = np.random.default_rng(0)
    for game in range(100):
        ours = arena.make("spiral/TruthAndDeception-v0")
        ours.reset(seed=game)
        theirs = td.TruthAndDeceptionEnv(max_turns=6)
        theirs.reset(num_players=2, seed=game)
        (f1, t1), (f2, t2) = ours.facts
        theirs.state.game_state.update({"fact1": {"fact": f1, "is_correct": t1}, "fact2": {"fact": f2, "is_correct": t2}})
        for turn in range(6):
            if turn < 5:
                message = f"message {turn}: Fact {1 + int(rng.integers(2))} is right"
                ours.step(f"\\boxed{{{message}}}")
                done, _ = theirs.step(message)
                asked = any("Now guess" in str(o[1]) for o in theirs.state.observations[1])
                assert asked == ("Now guess" in ours.observe("player_1")) == (turn == 4)
            else:
                guess = ["[Fact 1]", "[Fact 2]"][int(rng.integers(2))]
                ours.step(f"\\boxed{{{guess.lower()}}}")
                done, _ = theirs.step(guess)
            assert done == ours.done
        winner = ours.outcome["winner"]
        assert theirs.state.rewards == ({0: 1, 1: -1} if winner == "player_0" else {0: -1, 1: 1}), game
        assert ours.outcome["correct"] == (winner == "player_1")


def test_roles_see_what_textarena_shows_them() -> None:
    env = arena.make("spiral/TruthAndDeception-v0")
    env.reset(seed=0, options={"pair": 0, "swap": True})
    assert env.facts == [("Honey spoils within two years if not stored properly.", False),
                         ("Honey never spoils and can remain edible indefinitely.", True)]
    deceiver, guesser = env.observe("player_0"), env.observe("player_1")
    assert "Fact 2: Honey never spoils and can remain edible indefinitely. (correct)" in deceiver
    assert "(correct)" not in guesser and "(wrong)" not in guesser
    assert "Fact 1: Honey spoils within two years if not stored properly." in guesser
    assert "Your message (1 of 3):" in deceiver and "Deceiver" in deceiver and "Guesser" in guesser


def test_messages_are_free_the_guess_is_not() -> None:
    env = arena.make("spiral/TruthAndDeception-v0", max_turns=2)
    env.reset(seed=0, options={"pair": 0, "swap": False})
    assert env.legal_actions() is None
    env.step("Trust me: the first one.")  # no box: a bare answer of at most five words is the message
    assert env.turn_info == {"action": "Trust me: the first one.", "legal": True}
    assert env.legal_actions() == ["[Fact 1]", "[Fact 2]"]
    env.step("Honestly I cannot tell, so \\boxed{FACT 1}")
    assert env.done and env.outcome["winner"] == "player_1" and env.rewards == {"player_0": -1.0, "player_1": 1.0}


def test_the_deceivers_reasoning_never_reaches_the_guesser() -> None:
    """A longer completion without a box is reasoning, not a message: it once went to the
    Guesser whole, the Deceiver's note of which fact is true included. Boxed, only the box."""
    env = arena.make("spiral/TruthAndDeception-v0", max_turns=4)
    env.reset(seed=0, options={"pair": 0, "swap": False})
    env.step("Fact 1 is the correct one, so I push Fact 2. \\boxed{Fact 2 is well documented.}")
    guesser = str(env.observe("player_1"))
    assert "[Player 0] Fact 2 is well documented." in guesser and "so I push" not in guesser
    env.step("\\boxed{Why?}")
    env.step("<think>Fact 1 is the correct one, so I must push the Guesser toward Fact 2.</think> Trust Fact 2.")
    assert env.done and env.outcome["reason"] == "invalid_move" and env.outcome["invalid_move_by"] == "player_0"
    assert "push the Guesser" not in str(env.observe("player_1"))


@pytest.mark.parametrize("text", ["", "   ", "\\boxed{Fact 3}", "I pick the first fact, it sounds right to me"])
def test_empty_messages_and_bad_guesses_are_invalid(text: str) -> None:
    env = arena.make("spiral/TruthAndDeception-v0", max_turns=2, mode="eval")
    env.reset(seed=0)
    if text.strip():
        env.step("hello")  # to the guess
    env.step(text)
    assert env.done and env.outcome["reason"] == "invalid_move"
    offender = env.outcome["invalid_move_by"]
    assert env.rewards[offender] == -1.0


def test_guess_normalisation_arguments_and_options() -> None:
    assert normalise_guess("[fact 2]") == "[Fact 2]" and normalise_guess("[FACT1]") == "[Fact 1]"
    assert normalise_guess("[Fact 3]") == "[Fact 3]" and normalise_guess(None) is None
    for bad in (0, 3, 5):
        with pytest.raises(ArenaError, match="even and at least 2"):
            arena.make("spiral/TruthAndDeception-v0", max_turns=bad)
    env = arena.make("spiral/TruthAndDeception-v0")
    with pytest.raises(ArenaError, match="fact pair index"):
        env.reset(seed=0, options={"pair": 260})
    with pytest.raises(ArenaError, match="cannot read the facts file"):
        arena.make("spiral/TruthAndDeception-v0", facts="/nonexistent/facts.json")
    a, b = arena.make("spiral/TruthAndDeception-v0"), arena.make("spiral/TruthAndDeception-v0")
    a.reset(seed=9)
    b.reset(seed=9)
    assert a.facts == b.facts and a.pair == b.pair


def test_heuristic_guesser_sees_through_the_naive_deceiver() -> None:
    episodes = arena.play("spiral/TruthAndDeception-v0", [make_agent("heuristic")], 20, seed=0)
    assert all(e.outcome["winner"] == "player_1" and e.outcome["correct"] for e in episodes)
    against_random = arena.play("spiral/TruthAndDeception-v0", [make_agent("random", seed=1), make_agent("heuristic")],
                                20, seed=0)
    assert all(not e.turns or e.turns[-1].legal for e in against_random)


def test_a_relative_facts_path_replays_from_any_folder(tmp_path, monkeypatch) -> None:
    """Episodes record a facts file by its absolute path: played with `facts=facts.json` in one
    folder, they once failed to replay from another (no such file, or that folder's own)."""
    from arena.replay import verify

    def facts(folder, words):
        folder.mkdir()
        pairs = [{"facts": {"fact1": f"{w} one", "fact2": f"{w} two"}, "correct_fact": "fact1"} for w in words]
        (folder / "facts.json").write_text(json.dumps(pairs))
        return folder

    here, other = facts(tmp_path / "a", ["Ants", "Bees"]), facts(tmp_path / "b", ["Cats", "Dogs"])
    monkeypatch.chdir(here)
    episodes = arena.play("spiral/TruthAndDeception-v0", [make_agent("random", seed=0)], 3, seed=0,
                          env_kwargs={"facts": "facts.json"})
    assert {ep.env_kwargs["facts"] for ep in episodes} == {str(here / "facts.json")}
    monkeypatch.chdir(other)
    assert all(verify(ep) == [] for ep in episodes)


def test_a_run_recorded_with_a_relative_facts_path_is_appended_to_with_the_same_command(tmp_path, monkeypatch) -> None:
    """Episodes recorded before the path was resolved hold `facts.json`: `--append` compared
    them, unresolved, with the resolved new arguments and refused the identical command."""
    from arena.store import open_run

    (tmp_path / "facts.json").write_text(FACTS_FILE.read_text())
    monkeypatch.chdir(tmp_path)
    episodes = arena.play("spiral/TruthAndDeception-v0", [make_agent("random", seed=0)], 2, seed=0,
                          env_kwargs={"facts": "facts.json"})
    info = {"command": "play", "env_id": "spiral/TruthAndDeception-v0", "env_kwargs": {"facts": "facts.json"},
            "episodes": 2, "seed": 0}
    writer = open_run(tmp_path / "run", mode="new", info=info)
    for ep in episodes:
        ep.env_kwargs["facts"] = "facts.json"  # as an older arena recorded it
    writer.write(episodes)
    writer.close()
    open_run(tmp_path / "run", mode="append", info={**info, "seed": 2}).close()
