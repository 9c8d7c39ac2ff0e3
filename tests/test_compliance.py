"""Compliance of every registered env, parametrised from the registry.

A newly registered env is covered here without writing a test. Each check is a part of
`arena.check_env` (see arena/checker.py), run separately so a failure names its check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
from arena.agents import RandomAgent
from pettingzoo.test import api_test

import arena
from arena import checker
from arena.errors import ArenaError
from arena.replay import verify
from arena.rollout import _request, play

ENV_IDS = sorted(arena.registry())


def test_registry_has_the_spiral_games():
    assert {"spiral/TicTacToe-v0", "spiral/KuhnPoker-v0", "spiral/KuhnPoker-v1", "spiral/SimpleNegotiation-v0",
            "spiral/LiarsDice-v0", "spiral/PigDice-v0", "spiral/TruthAndDeception-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_pettingzoo_api(env_id):
    env = arena.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PettingZoo warns that text spaces are not Box/Discrete
        api_test(env, num_cycles=300)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_infos_follow_every_move(env_id):
    """`infos` (built when read) says the acting role's turn and legal actions after each
    reset and move, `{}` for the others, and the outcome to every role at the end; `last()`
    reads the same dict."""
    env = arena.make(env_id)
    agent = RandomAgent(seed=3)
    for seed in range(3):
        env.reset(seed=seed)
        while env.outcome is None:
            acting = env.agent_selection
            legal = env.legal_actions(acting)
            expected = {"turn": env.num_moves} | ({} if legal is None else {"legal_actions": list(legal)})
            assert env.infos == {a: (expected if a == acting else {}) for a in env.agents}
            assert env.last()[4] == expected
            env.step(agent.act([_request(env, env_id, acting)])[0].text)
        assert env.infos == {a: {"outcome": env.outcome} for a in env.agents}


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


class ObserveRaises(__import__("arena.envs.spiral.tictactoe", fromlist=["TicTacToe"]).TicTacToe):
    """TicTacToe whose observation raises after the first move (a bug in the env)."""

    def _observe(self, agent):
        if self.num_moves >= 1:
            raise ValueError("boom in _observe")
        return super()._observe(agent)


@pytest.fixture
def registered():
    from arena.registry import _REGISTRY

    added = []

    def add(env_id, cls):
        arena.register(env_id, cls, override=True)
        added.append(env_id)

    yield add
    for env_id in added:
        _REGISTRY.pop(env_id, None)


def test_run_checks_reports_each_failure_with_location_and_runs_the_rest(registered):
    registered("test/ObserveRaises-v0", ObserveRaises)
    results = checker.run_checks("test/ObserveRaises-v0", api_cycles=50, fuzz_steps=200, episodes=3)
    by_name = {r.name.split(" (")[0]: r for r in results}
    assert results[0].name == "roles and protocol graph" and len(results) == 6
    assert by_name["roles and protocol graph"].status == "ok"
    for name in ("PettingZoo api_test", "fuzz", "determinism and exact replay"):
        assert by_name[name].status == "FAIL", by_name[name]
        assert "ValueError: boom in _observe (at " in by_name[name].detail
        assert "test_compliance.py:" in by_name[name].detail and "in _observe)" in by_name[name].detail
    with pytest.raises(AssertionError, match="fuzz.*ValueError: boom in _observe"):
        checker.check_env("test/ObserveRaises-v0", api_cycles=50, fuzz_steps=200, episodes=3)


def test_arena_check_command_reports_every_check(tmp_path):
    """The real CLI on an env that raises: FAIL lines, the rest still run, exit 1."""
    code = ("import arena, sys; from tests.test_compliance import ObserveRaises; "
            "arena.register('test/ObserveRaises-v0', ObserveRaises); from arena.cli import main; "
            "main(['check', 'test/ObserveRaises-v0', '--fuzz-steps', '200'])")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False,
                            env={**os.environ, "COLUMNS": "300"}, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("FAIL  fuzz (200 random actions): ValueError: boom in _observe (at ") for line in lines), lines
    assert any(line.startswith("ok    roles and protocol graph") for line in lines)
    assert any(line.startswith("FAIL  determinism and exact replay") for line in lines)
    assert "checks failed" in lines[-1]


def _readme_coin(tmp_path, monkeypatch, replace: tuple[str, str] | None = None):
    import re
    import sys as _sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(# my_games/coin.py\n.*?)```", text, re.DOTALL).group(1)
    if replace:
        assert replace[0] in code
        code = code.replace(*replace)
    (tmp_path / "my_games").mkdir()
    (tmp_path / "my_games" / "__init__.py").write_text("")
    (tmp_path / "my_games" / "coin.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("my_games.coin", "my_games"):
        _sys.modules.pop(name, None)
    __import__("my_games.coin")


@pytest.fixture
def coin_cleanup():
    yield
    import sys as _sys

    from arena.registry import _REGISTRY

    _REGISTRY.pop("mine/CoinGuess-v0", None)
    for name in ("my_games.coin", "my_games"):
        _sys.modules.pop(name, None)


def test_readme_coin_guess_scores_with_arenas_agents(tmp_path, monkeypatch, coin_cleanup):
    from arena.metrics import summarize

    _readme_coin(tmp_path, monkeypatch)
    summary = summarize(play("mine/CoinGuess-v0", [RandomAgent(seed=1)], 200))["guesser"]
    assert summary["invalid_move_rate"] == 0.0
    assert summary["draw_rate"] == 0.0 and summary["win_rate"] + summary["loss_rate"] == 1.0
    assert 0.35 < summary["win_rate"] < 0.65


def test_check_catches_an_env_that_refuses_its_own_moves(tmp_path, monkeypatch, coin_cleanup):
    """The README's first CoinGuess compared the raw completion with `[heads]`: every agent's
    `\\boxed{[heads]}` was an invalid move, and `arena check` passed."""
    _readme_coin(tmp_path, monkeypatch, replace=("action = self.parse_action(text)", "action = text.strip()"))
    with pytest.raises(AssertionError, match=r"refused 10 of 10 of its own moves from sample_action.*parse_action"):
        checker.check_moves_accepted("mine/CoinGuess-v0")


_TicTacToe = __import__("arena.envs.spiral.tictactoe", fromlist=["TicTacToe"]).TicTacToe


class IntMoves(_TicTacToe):
    def legal_actions(self, agent=None):
        return [int(m[1:-1]) for m in super().legal_actions(agent)]


class NoMoves(_TicTacToe):
    def legal_actions(self, agent=None):
        return []


class RefusesCorners(_TicTacToe):
    def is_legal(self, agent, action):
        return super().is_legal(agent, action) and action not in ("[0]", "[2]", "[6]", "[8]")


class Untold(_TicTacToe):
    def _step(self, agent, text):
        super()._step(agent, text)
        self.turn_info = {}


class Unbracketed(_TicTacToe):
    def legal_actions(self, agent=None):
        return [m[1:-1] for m in super().legal_actions(agent)]


class Endless(_TicTacToe):
    def _play(self, agent, action):  # passes the turn on, never decides the game
        self.agent_selection = self.opponent(agent)


class Counted(_TicTacToe):
    resets = 0  # a class attribute: state kept from one episode (and env object) to the next

    def _observe(self, agent):
        return super()._observe(agent) + f"\ngame {Counted.resets}"

    def _reset(self, options):
        Counted.resets += 1
        return super()._reset(options)


@pytest.mark.parametrize("cls, check, message", [
    (IntMoves, "moves", r"legal_actions\('player_0'\) returned \[0, 1, .*: a list of the move strings"),
    (NoMoves, "moves", r"legal_actions\('player_0'\) returned \[\] while the episode runs"),
    (Untold, "moves", r"_step set no `self.turn_info = \{'action': action, 'legal': legal\}` for a move"),
    (RefusesCorners, "moves", r"'\[\d\]' is in its legal_actions, which _step must agree with"),
    (Unbracketed, "moves", (r"its parse_action reads the move '\d' as '\[\d\]': list legal_actions as parse_action "
                            r"gives them \(ZeroSumGame brackets every move: '\[\d\]'\)")),
    (Endless, "moves", (r"none of its 20 episodes of legal moves .* ended before the turn cap \(max_turns=50\): end the "
                        r"episode in `_step`")),
    (Counted, "replay", (r"episode 0: turns\[0\]\.observation: .*game \d+. != .*game \d+.\): .*keep no state from one "
                        r"episode to the next")),
])
def test_check_catches_env_bugs_that_passed_it(registered, cls, check, message):
    """Each passed `arena check` before (a helper's review): moves the random agent could not
    send, a `_step` that records no verdict on the move, one stricter than its
    `legal_actions` (blamed on parse_action), a ZeroSumGame listing moves unbracketed (told
    to read the text with parse_action, which ZeroSumGame already does), one that never ends an episode (every game a
    draw at the turn cap), state kept across episodes in a class attribute."""
    registered("test/Buggy-v0", cls)
    run = checker.check_moves_accepted if check == "moves" else checker.check_determinism_and_replay
    with pytest.raises(AssertionError, match=message):
        run("test/Buggy-v0")


def test_an_unseeded_env_is_told_where_its_episodes_differ(registered):
    import random as global_random

    class Unseeded(_TicTacToe):
        def _observe(self, agent):
            return super()._observe(agent) + f"\nnoise {global_random.random()}"

    registered("test/Unseeded-v0", Unseeded)
    with pytest.raises(AssertionError, match=r"different episodes \(episode 0: turns\[0\]\.observation: .*noise "
                                             r"0\.\d+. != .*noise 0\.\d+.\): draw every random choice from `self.np_random`"):
        checker.check_determinism_and_replay("test/Unseeded-v0", episodes=3)


def test_a_check_failure_quoting_a_long_input_is_cut():
    exc = ValueError("bad move " + "x" * 50_000)
    assert len(checker.describe_exception(exc)) < 700 and f"({len('ValueError: ' + str(exc))} characters)" in checker.describe_exception(exc)


def test_check_env_accepts_an_env_object():
    from arena.envs.spiral.tictactoe import TicTacToe

    checker.check_env(arena.make("spiral/TicTacToe-v0"), fuzz_steps=100, episodes=3)
    checker.check_env(TicTacToe(), fuzz_steps=100, episodes=3)  # built without the registry
    assert not any(k.startswith("check/") for k in arena.registry)


def test_summary_of_a_game_without_winner_is_not_a_draw():
    from arena.episode import Episode
    from arena.metrics import summarize, summarize_agents

    eps = [Episode(id=str(i), env_id="mine/CoinGuess-v0", env_kwargs={}, seed=i, agents={"guesser": "random"},
                   turns=[], rewards={"guesser": r}, outcome={"reason": "guessed"}) for i, r in enumerate([1.0, -1.0, -1.0, 0.0])]
    s = summarize(eps)["guesser"]
    assert (s["win_rate"], s["loss_rate"], s["draw_rate"]) == (0.25, 0.5, 0.25)
    assert summarize_agents(eps)["random"]["loss_rate"] == 0.5


def test_random_agent_plays_valid_negotiation_moves():
    from arena.metrics import summarize

    episodes = play("spiral/SimpleNegotiation-v0", [RandomAgent(seed=2)], 40, seed=0)
    summary = summarize(episodes)
    assert all(s["invalid_move_rate"] == 0.0 for s in summary.values()), summary
    actions = [t.action for ep in episodes for t in ep.turns]
    assert any(a.startswith("[Offer") for a in actions) and "[Accept]" in actions and "[Deny]" in actions


def test_arenas_refusal_of_what_an_env_gave_points_at_the_envs_line():
    """A NaN reward refused in `_finish` was reported at arena/protocol.py, not at the
    env's `_step` that gave it."""

    class NanReward(_TicTacToe):
        def _play(self, agent, action):
            self._end({"player_0": float("nan"), "player_1": 0.0}, winner=None)

    env = NanReward()
    env.reset(seed=0)
    with pytest.raises(ArenaError) as caught:
        env.step("[4]")
    where = checker.describe_exception(caught.value)
    assert where.startswith("ArenaError: ") and "rewards must be finite" in where
    assert where.endswith(f"test_compliance.py:{NanReward._play.__code__.co_firstlineno + 1} in _play)"), where
