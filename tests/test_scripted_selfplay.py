"""The `scripted` agent (agents/selfplay_scripted.py) on azr/* and spice/*, and the envs' play
summaries (`summarize`, printed by `arena play`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from arena.agents import AGENTS, SelfPlayScripted, make_agent
from arena.agents.selfplay_scripted import INVALID_PROGRAMS
from arena.envs.absolute_zero import AbsoluteZero, sandbox_pool, summarize_azr, validate_proposal
from arena.envs.spice import SpiceCorpus, summarize_spice
from arena.sandbox import Limits

from arena.errors import ArenaError
from arena.replay import verify
from arena.rollout import play

AZR_IDS = ["azr/Deduction-v0", "azr/Abduction-v0", "azr/Induction-v0", "azr/Mixed-v0"]
PROCESS = {"sandbox": "process"}


def solver_turns(episodes):
    return [t for ep in episodes for t in ep.turns if t.role in ("solver", "reasoner")]


# -- the spec ---------------------------------------------------------------------------------------

def test_spec_and_options():
    assert AGENTS["scripted"] is SelfPlayScripted
    plain = make_agent("scripted", seed=0)
    assert plain.name == "scripted" and plain.noisy is None and plain.verifier == "oracle" and plain.invalid == 0.0
    agent = make_agent("scripted:noisy=0.25:verifier=yes:invalid=0.1:free=1", seed=0)
    assert (agent.noisy, agent.verifier, agent.invalid, agent.free) == (0.25, "yes", 0.1, 1.0)
    assert agent.name == "scripted:noisy=0.25:verifier=yes:invalid=0.1:free=1"


@pytest.mark.parametrize("spec", ["scripted:noisy=2", "scripted:noisy=half", "scripted:verifier=maybe",
                                  "scripted:colour=red", "scripted:noisy"])
def test_bad_specs_name_the_fix(spec):
    with pytest.raises(ArenaError, match="scripted agent"):
        make_agent(spec)


# -- Absolute Zero ----------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", AZR_IDS)
def test_oracle_plays_every_azr_env_and_replays(env_id):
    episodes = play(env_id, [make_agent("scripted", seed=2)], 6, seed=0, env_kwargs={"n": 3, **PROCESS})
    summary = AbsoluteZero.summarize(episodes)
    assert summary["episodes"] == summary["valid_proposals"] == 6 and summary["rejections"] == {}
    everything = summary["by_type"]["all"]
    assert everything["solve_rate"] == 1.0 and everything["verifier_accuracy"] == 1.0
    assert everything["mean_learnability"] == 0.0
    assert all(verify(ep) == [] for ep in episodes)


def test_scripted_proposer_is_varied():
    episodes = play("azr/Deduction-v0", [make_agent("scripted", seed=0)], 12, seed=0, env_kwargs={"n": 1, **PROCESS})
    programs = {ep.turns[0].completion.split("```python")[1].split("```")[0] for ep in episodes}
    assert len(programs) >= 5


def test_oracle_deduction_answers_what_the_sandbox_returned():
    episodes = play("azr/Deduction-v0", [make_agent("scripted", seed=0)], 4, seed=1, env_kwargs={"n": 2, **PROCESS})
    for t in solver_turns(episodes):
        assert t.info["correct"] is True and t.legal is True


def test_noisy_solver_has_about_its_accuracy_and_well_formed_wrong_answers():
    episodes = play("azr/Mixed-v0", [make_agent("scripted:noisy=0.5", seed=0)], 12, seed=0,
                    env_kwargs={"n": 8, **PROCESS})
    turns = solver_turns(episodes)
    accuracy = sum(t.info["correct"] for t in turns) / len(turns)
    assert 0.3 < accuracy < 0.7
    assert all(t.legal is True for t in turns)  # wrong, never malformed: -0.5, not -1
    assert {t.reward for t in turns if not t.info["correct"]} == {-0.5}
    summary = summarize_azr(episodes)
    assert 0 < summary["by_type"]["all"]["mean_learnability"] <= 1 and summary["by_type"]["all"]["verifier_accuracy"] == 1.0


def test_always_wrong_solver_and_always_yes_verifier():
    episodes = play("azr/Mixed-v0", [make_agent("scripted:noisy=0:verifier=yes", seed=0)], 6, seed=3,
                    env_kwargs={"n": 2, **PROCESS})
    everything = summarize_azr(episodes)["by_type"]["all"]
    assert everything["solve_rate"] == 0.0 and everything["mean_learnability"] == 0.0
    assert everything["verifier_accuracy"] == 0.0  # says "correct" to wrong answers
    assert all(ep.rewards == {"proposer": 0.0, "solver": -0.5, "verifier": 0.0} for ep in episodes)


@pytest.mark.parametrize("kind, program, inputs", INVALID_PROGRAMS)
def test_each_invalid_program_is_refused_for_its_reason(kind, program, inputs):
    v = validate_proposal(program, [inputs], sandbox=sandbox_pool("gold", "process"), limits=Limits(timeout=2.0))
    assert not v.valid and v.kind == kind, v.reason


def test_invalid_proposals_are_rejected_and_counted():
    episodes = play("azr/Mixed-v0", [make_agent("scripted:invalid=1", seed=0)], 10, seed=0, env_kwargs={"n": 2, **PROCESS})
    summary = summarize_azr(episodes)
    assert summary["valid_proposals"] == 0
    assert sum(r["count"] for r in summary["rejections"].values()) == 10
    assert all(r["example"] for r in summary["rejections"].values())
    assert all(ep.rewards["proposer"] == -1.0 for ep in episodes)


# -- SPICE ------------------------------------------------------------------------------------------

def test_oracle_plays_spice_and_replays():
    episodes = play("spice/Corpus-v0", [make_agent("scripted", seed=0)], 6, seed=0, env_kwargs={"n": 3})
    summary = SpiceCorpus.summarize(episodes)
    assert summary["valid_tasks"] == 6 and summary["rejections"] == {}
    assert set(summary["by_kind"]) == {"mcq", "all"}
    assert summary["by_kind"]["all"]["solve_rate"] == 1.0 and summary["by_kind"]["all"]["verifier_accuracy"] == 1.0
    assert all(verify(ep) == [] for ep in episodes)


def test_spice_free_form_noisy_and_invalid():
    episodes = play("spice/Corpus-v0", [make_agent("scripted:free=1:noisy=0.5", seed=0)], 10, seed=0, env_kwargs={"n": 8})
    summary = summarize_spice(episodes)
    assert set(summary["by_kind"]) == {"free", "all"}
    assert 0.3 < summary["by_kind"]["all"]["solve_rate"] < 0.7
    assert all(verify(ep) == [] for ep in episodes)
    bad = play("spice/Corpus-v0", [make_agent("scripted:invalid=1", seed=0)], 6, seed=0, env_kwargs={"n": 2})
    summary = summarize_spice(bad)
    assert summary["valid_tasks"] == 0 and sum(r["count"] for r in summary["rejections"].values()) == 6
    assert all(ep.rewards["challenger"] == -0.1 for ep in bad)


def test_spice_wrong_mcq_answers_and_always_yes_verifier():
    episodes = play("spice/Corpus-v0", [make_agent("scripted:noisy=0:verifier=yes", seed=0)], 4, seed=0, env_kwargs={"n": 2})
    assert all(ep.rewards["reasoner"] == 0.0 and ep.rewards["verifier"] == 0.0 for ep in episodes)


# -- arena play prints the env's summary --------------------------------------------------------------

def _arena(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "arena.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


def test_play_prints_the_azr_summary():
    res = _arena("play", "azr/Mixed-v0", "--agents", "scripted:noisy=0.5:invalid=0.3", "-n", "8",
                 "--kw", "n=2", "--kw", 'sandbox="process"')
    assert res.returncode == 0, res.stderr
    for text in ("valid proposals", "by type", "solve rate", "mean learnability", "verifier accuracy", "rejections"):
        assert text in res.stdout, res.stdout


def test_play_prints_the_spice_summary_and_games_print_none():
    res = _arena("play", "spice/Corpus-v0", "--agents", "scripted", "-n", "3", "--kw", "n=2")
    assert res.returncode == 0, res.stderr
    assert "by kind" in res.stdout and "mean challenger reward" in res.stdout
    res = _arena("play", "spiral/TicTacToe-v0", "--agents", "scripted", "-n", "2")  # elsewhere: the env's heuristic
    assert res.returncode == 0, res.stderr
    assert "by kind" not in res.stdout and "by type" not in res.stdout


def test_scripted_options_on_an_env_without_use_for_them_are_said():
    """`scripted:noisy=0.5` on a game played the heuristic's moves without a word."""
    import arena

    game, corpus = arena.make("spiral/KuhnPoker-v0"), arena.make("spice/Corpus-v0")
    assert "apply to azr/* and spice/* only" in make_agent("scripted:noisy=0.5").note_for(game)
    assert make_agent("scripted").note_for(game) is None
    assert make_agent("scripted:noisy=0.5").note_for(corpus) is None
    result = subprocess.run([sys.executable, "-m", "arena.cli", "play", "spiral/KuhnPoker-v0", "-a",
                             "scripted:noisy=0.5,random", "-n", "2"], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr.startswith("warning: scripted:noisy=0.5: the scripted agent's")
