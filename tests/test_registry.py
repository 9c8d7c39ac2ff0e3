"""Registry: errors that name the fix, protocol validation, third-party plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import arena
from arena import ArenaEnv, ArenaError, Role
from arena.registry import _REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_id_lists_close_matches():
    with pytest.raises(ArenaError, match=r"unknown env id 'spiral/TicTacToe-v9'.*did you mean 'spiral/TicTacToe-v0'"):
        arena.make("spiral/TicTacToe-v9")
    with pytest.raises(ArenaError, match="did you mean 'spiral/TicTacToe-v0'"):
        arena.make("TicTacToe")


def test_bad_kwargs_name_the_argument_and_close_match():
    with pytest.raises(ArenaError, match=r"unknown argument 'mxa_turns'.*did you mean 'max_turns'"):
        arena.make("spiral/TicTacToe-v0", mxa_turns=3)
    with pytest.raises(ArenaError, match="spiral/TicTacToe-v0: argument mode must be one of 'train', 'eval', got 'play'"):
        arena.make("spiral/TicTacToe-v0", mode="play")


@pytest.mark.parametrize("kwargs, message", [
    ({"rounds": 2.5}, "argument rounds must be an integer, got 2.5"),
    ({"rounds": True}, "argument rounds must be an integer, got True"),
    ({"rounds": "2"}, "argument rounds must be an integer, got '2'"),
    ({"rounds": 0}, "rounds must be >= 1, got 0"),
    ({"max_turns": None}, "argument max_turns must be an integer, got None"),
    ({"render_mode": 1}, "argument render_mode must be a string or None, got 1"),
])
def test_argument_types_are_checked_never_rounded(kwargs, message):
    with pytest.raises(ArenaError, match="^spiral/KuhnPoker-v0: " + message.replace("(", r"\(")):
        arena.make("spiral/KuhnPoker-v0", **kwargs)
    env = arena.make("spiral/KuhnPoker-v0", rounds=3, render_mode=None)
    assert env.rounds == 3


def test_bad_entry_points():
    with pytest.raises(ArenaError, match="must look like 'package.module:ClassName'"):
        arena.register("test/Bad-v0", "no_colon_here")
    arena.register("test/Missing-v0", "arena.no_such_module:Env")
    arena.register("test/NoAttr-v0", "arena.protocol:NoSuchClass")
    arena.register("test/NotEnv-v0", "arena.protocol:Role")
    try:
        with pytest.raises(ArenaError, match="cannot import module 'arena.no_such_module'.*: No module named "
                                             "'arena.no_such_module' \\(the package 'arena' used is .*arena\\)$"):
            arena.make("test/Missing-v0")  # which `arena` was searched: an installed package hides a folder's
        from arena.cli import _make_env

        with pytest.raises(ArenaError) as caught:
            _make_env("test/Missing-v0", {})
        assert "--kw" not in str(caught.value)  # the command line's env-argument hint is for argument errors only
        with pytest.raises(ArenaError, match="has no attribute 'NoSuchClass'"):
            arena.make("test/NoAttr-v0")
        with pytest.raises(ArenaError, match="not an arena.ArenaEnv subclass"):
            arena.make("test/NotEnv-v0")
    finally:
        for key in ("test/Missing-v0", "test/NoAttr-v0", "test/NotEnv-v0"):
            _REGISTRY.pop(key, None)


def test_duplicate_registration_needs_override():
    with pytest.raises(ArenaError, match="already registered by arena's built-in envs"):
        arena.register("spiral/TicTacToe-v0", "arena.envs.spiral.tictactoe:TicTacToe")


@pytest.mark.parametrize("first", ["", "import arena.envs.absolute_zero; "])
def test_registering_a_built_in_id_first_thing_is_refused_and_leaves_the_built_ins(first):
    """Before the built-ins had loaded, the register passed, and loading them then failed on
    its id: every built-in env was gone ("unknown env id ... lists all 1")."""
    code = (f"{first}import arena\n"
            "try:\n    arena.register('spiral/TicTacToe-v0', 'mine:Game')\nexcept arena.ArenaError as e:\n    print(e)\n"
            "print(len(arena.registry), arena.make('spiral/KuhnPoker-v0').env_id)")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith("env id 'spiral/TicTacToe-v0' is already registered by arena's built-in envs")
    assert out[1] == f"{len(arena.registry)} spiral/KuhnPoker-v0"


def test_an_env_class_without_its_hooks_is_refused_when_made():
    cls = type("NoObserve", (ArenaEnv,), {"roles": (_role("a"),), "edges": (("a", "a"),),
                                           "_reset": lambda self, options: "a", "_step": lambda self, agent, text: None})
    _refused_when_made(cls, r"NoObserve does not implement _observe: every env implements _reset, _observe and _step")


def _role(name: str) -> Role:
    return Role(name=name, description="d", reward="r")


@pytest.mark.parametrize(
    "roles, edges, message",
    [
        (("a", "b"), (("x", "a"), ("x", "c")), "role 'b' has no edge"),
        (("a", "b", "c"), (("a", "b"), ("c", "b")), "not reachable from 'a'"),
        (("a", "a"), (("a", "a"),), "duplicate role names"),
        ((), (), "declares no roles"),
    ],
)
def test_protocol_graph_is_validated(roles, edges, message):
    cls = type("Broken", (ArenaEnv,), {"roles": tuple(_role(r) for r in roles), "edges": edges})
    _refused_when_made(cls, message)


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"roles": (_role("a")), "edges": (("x", "a"),)},  # no comma: a Role, not a tuple of one
         r"`roles` must be a tuple of arena.Role, got a Role \(one role is `roles = \(Role\(...\),\)`"),
        ({"roles": (_role("a"), "b"), "edges": (("x", "a"),)}, r"`roles` must be a tuple of arena.Role, got a str"),
        ({"roles": (_role("a"), _role("b")), "edges": ("a", "b")},  # one edge without the outer tuple
         r"`edges` must be a tuple of \(src, dst\) name pairs, got 'a'"),
        ({"roles": (_role("a"),), "edges": (("x", "a", "y"),)}, r"got \('x', 'a', 'y'\)"),
        ({"roles": (_role("rules"), _role("guesser")), "edges": (("rules", "guessr"),)},
         (r"role 'guesser' has no edge in the protocol graph; add it to `edges` \(edges name 'guessr', not a role: "
          r"did you mean 'guesser'\?\)")),
    ],
)
def test_misdeclared_roles_and_edges_are_one_line(attrs, message):
    """`roles = (Role(...))` was a TypeError and `edges = ("a", "b")` a ValueError from
    arena's code; an edge's misspelt role was taken for a component without a word."""
    _refused_when_made(type("Broken", (ArenaEnv,), attrs), message)


def test_pooled_grpo_roles_must_be_roles_of_the_env():
    cls = type("Broken", (ArenaEnv,), {"roles": (_role("a"),), "edges": (("x", "a"),), "grpo_pooled_roles": ("b",)})
    _refused_when_made(cls, r"grpo_pooled_roles names \['b'\], not roles of the env \(a\)")


def _refused_when_made(cls, message):
    arena.register("test/Broken-v0", cls, override=True)
    try:
        with pytest.raises(ArenaError, match=message):
            arena.make("test/Broken-v0")
    finally:
        _REGISTRY.pop("test/Broken-v0", None)


PLUGIN_ENV = '''
"""A one-file env from a third-party package."""
from arena import register
from arena.envs.spiral.tictactoe import TicTacToe


class TinyTicTacToe(TicTacToe):
    """Tic-tac-toe capped at 4 moves (a plugin test env)."""

    def __init__(self, mode="train", render_mode=None):
        super().__init__(mode=mode, max_turns=4, render_mode=render_mode)


register("spiral/TicTacToe-v0", "thirdparty_games.tiny:TinyTicTacToe")  # a clash: warned of, the rest still loads
register("thirdparty/TinyTicTacToe-v0", "thirdparty_games.tiny:TinyTicTacToe")
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """Install a temporary package that declares an `arena.envs` entry point, with pip,
    into a target folder (the way a user would, without touching site-packages)."""
    src = tmp_path_factory.mktemp("plugin_src")
    (src / "thirdparty_games").mkdir()
    (src / "thirdparty_games" / "__init__.py").write_text("")
    (src / "thirdparty_games" / "tiny.py").write_text(PLUGIN_ENV)
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "thirdparty-games"
        version = "0.0.1"

        [project.entry-points."arena.envs"]
        tiny = "thirdparty_games.tiny"

        [tool.setuptools]
        packages = ["thirdparty_games"]
    """))
    target = tmp_path_factory.mktemp("plugin_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True)
    return target


def _run(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "arena.cli", *args], check=False, capture_output=True, text=True, env=env, timeout=120)


def test_third_party_env_appears_in_arena_envs(plugin_site):
    result = _run(["envs"], plugin_site)
    assert result.returncode == 0, result.stderr
    assert "thirdparty/TinyTicTacToe-v0" in result.stdout
    assert "spiral/TicTacToe-v0" in result.stdout
    # the plugin's clash cost that id only (it stopped the plugin's import, and its other envs with it)
    assert ("env plugin 'tiny' (thirdparty_games.tiny) registers env id 'spiral/TicTacToe-v0', already registered "
            "by arena's built-in envs") in result.stderr
    assert "capped at 4" not in result.stdout.split("spiral/TicTacToe-v0")[1].split("\n")[0]
    result = _run(["envs", "--json"], plugin_site)
    ids = [row["id"] for row in __import__("json").loads(result.stdout)]
    assert "thirdparty/TinyTicTacToe-v0" in ids


def test_third_party_env_plays(plugin_site, tmp_path):
    result = _run(["play", "thirdparty/TinyTicTacToe-v0", "--agents", "random", "-n", "5", "--out", str(tmp_path / "run")], plugin_site)
    assert result.returncode == 0, result.stderr
    result = _run(["replay", str(tmp_path / "run"), "--verify"], plugin_site)
    assert result.returncode == 0 and "all replay exactly" in result.stdout


def test_registry_is_a_mapping_and_callable():
    assert "spiral/KuhnPoker-v0" in arena.registry
    assert "spiral/Nope-v0" not in arena.registry
    assert arena.registry["spiral/KuhnPoker-v0"].kwargs == {"rounds": 1, "scoring": "chips"}
    assert list(arena.registry) == sorted(arena.registry) and len(arena.registry) >= 4
    assert dict(arena.registry.items()) == arena.registry()
    with pytest.raises(KeyError):
        arena.registry["spiral/Nope-v0"]


def test_pprint_registry(capsys):
    arena.pprint_registry()
    out = capsys.readouterr().out
    assert "===== spiral =====" in out and "KuhnPoker-v0" in out


@pytest.mark.parametrize("bad_id", ["TicTacToe", "spiral/TicTacToe", "spiral/TicTacToe-v", "a b/C-v0", "/X-v0", "", None])
def test_register_checks_the_id_shape(bad_id):
    with pytest.raises(ArenaError, match="must look like 'namespace/Name-vN'"):
        arena.register(bad_id, "arena.envs.spiral.tictactoe:TicTacToe")
    assert bad_id not in _REGISTRY


def test_step_before_reset_and_after_the_end_are_clear_errors():
    env = arena.make("spiral/TicTacToe-v0")
    with pytest.raises(ArenaError, match=r"call reset\(\) before"):
        env.step("[4]")
    env.reset(seed=0)
    env.step("no move")  # invalid: the game ends
    for agent in env.agent_iter():
        env.step(None)
    with pytest.raises(ArenaError, match=r"the episode is over: call reset\(\)"):
        env.step("[4]")


def test_an_env_naming_a_role_it_does_not_have_is_told_so():
    """A `_reset` returning a misspelt role was a KeyError from arena's code at the first
    observe; rewards for one in `_finish` were dropped (the role scored 0) silently."""

    class Typos(ArenaEnv):
        roles = (_role("guesser"), _role("judge"))
        edges = (("guesser", "judge"), ("judge", "guesser"))

        def _reset(self, options):
            return options.get("first", "guesser")

        def _observe(self, agent):
            return "say anything"

        def _step(self, agent, text):
            self._finish({"gueser": 1.0, "judge": -1.0}, reason="done")

    env = Typos()
    with pytest.raises(ArenaError, match=r"_reset returned 'jugde', not one of its roles \(guesser, judge\): return"):
        env.reset(seed=0, options={"first": "jugde"})
    env.reset(seed=0)
    with pytest.raises(ArenaError, match=r"_finish got rewards for 'gueser', not roles of the env \(guesser, judge\)"):
        env.step("x")


def _ends_with(finish=None, select=None, observation="say anything"):
    """A one-role-after-another env whose `_step` ends the episode with `finish(self)` or
    sets `agent_selection` to `select`."""

    class Env(ArenaEnv):
        roles = (_role("guesser"), _role("judge"))
        edges = (("guesser", "judge"), ("judge", "guesser"))

        def _reset(self, options):
            return "guesser"

        def _observe(self, agent):
            return observation

        def _step(self, agent, text):
            if select is not None:
                self.agent_selection = select
            else:
                finish(self)

    env = Env()
    env.reset(seed=0)
    return env


@pytest.mark.parametrize(
    "reward, message",
    [
        (float("nan"), r"_finish got reward nan for role 'guesser': rewards must be finite"),
        (float("inf"), r"_finish got reward inf for role 'guesser': rewards must be finite"),
        (None, r"_finish got reward None \(NoneType\) for role 'guesser': give a float"),
        ("1.0", r"_finish got reward '1.0' \(str\) for role 'guesser': give a float"),
        ([1.0], r"_finish got reward \[1.0\] \(list\) for role 'guesser': give a float"),
        (True, r"_finish got reward True \(bool\)"),
    ],
)
def test_a_reward_that_is_not_a_finite_number_is_refused(reward, message):
    """A NaN reward trained the weights into NaN (the next step's sampling crashed); None
    and lists were a TypeError from arena's code; "1.0" was read as 1.0."""
    env = _ends_with(lambda self: self._finish({"guesser": reward, "judge": 0.0}, reason="done"))
    with pytest.raises(ArenaError, match=message):
        env.step("x")


def test_numpy_and_int_rewards_are_floats():
    import numpy as np

    env = _ends_with(lambda self: self._finish({"guesser": np.float32(0.5), "judge": np.int64(-1)}, reason="done"))
    env.step("x")
    assert env.outcome["rewards"] == {"guesser": 0.5, "judge": -1.0}
    assert all(type(v) is float for v in env.outcome["rewards"].values())


def test_finishing_an_episode_twice_is_refused():
    """The second `_finish` replaced the first outcome, and the rewards of both added up."""
    def twice(self):
        self._finish({"guesser": 1.0}, reason="solved")
        self._finish({"guesser": -1.0}, reason="timeout")

    env = _ends_with(twice)
    with pytest.raises(ArenaError, match=r"_finish called twice in one episode \(the first: 'solved'\)"):
        env.step("x")


def test_a_misspelt_next_role_is_refused_at_the_step():
    """`self.agent_selection = "gueser"` was a KeyError from arena's rollout at the next tick,
    and `arena check` blamed PettingZoo's infos."""
    env = _ends_with(select="jugde")
    with pytest.raises(ArenaError, match=r"_step set agent_selection to 'jugde', not one of its roles \(guesser, "
                                         r"judge\): set the role that acts next"):
        env.step("x")
    env = _ends_with(select="judge")
    env.step("x")
    assert env.agent_selection == "judge"


@pytest.mark.parametrize("observation", [None, 42, [{"role": "user", "content": "hi"}]])
def test_an_observation_that_is_not_text_is_refused(observation):
    """The model's prompt was the text "None", or a list's repr."""
    env = _ends_with(select="judge", observation=observation)
    with pytest.raises(ArenaError, match=rf"_observe\('guesser'\) returned a {type(observation).__name__}, not a str"):
        env.observe("guesser")


def test_a_zero_sum_game_naming_a_winner_that_is_no_seat_is_refused():
    """`winner="player0"` counted every seat's result as a loss, and `arena check` passed."""
    from arena.envs.spiral.tictactoe import TicTacToe

    class Typo(TicTacToe):
        def _play(self, agent, action):
            self._end({"player_0": 1.0, "player_1": -1.0}, winner="player0")

    env = Typo()
    env.reset(seed=0)
    with pytest.raises(ArenaError, match=r"_end got winner 'player0', not one of its seats \(player_0, player_1\); "
                                         "give None for a draw"):
        env.step("[4]")


def test_unknown_ids_name_the_module_form():
    with pytest.raises(ArenaError, match=r"an env registered in a module of your own is MODULE:ID, e.g. "
                                         r"my_games.coin:mine/CoinGuess-v0 \(`arena envs` lists the \d+ built in"):
        arena.make("mine/Nim-v0")
    with pytest.raises(ArenaError, match=r"name the module as Python imports it: my_games.nim:mine/Nim-v0"):
        arena.make("my_games/nim.py:mine/Nim-v0")


def test_import_arena_is_light():
    """`import arena` and the CLI's start import no env, model or test machinery."""
    code = ("import sys, arena, arena.cli; heavy = ('torch', 'trl', 'transformers', 'networkx', 'pettingzoo', "
            "'gymnasium', 'pytest', 'numpy'); print([m for m in heavy if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_top_level_names_are_the_engine_and_trainer():
    """`arena.play`, `arena.train` and `arena.TrainConfig` (README, From Python), loaded on use."""
    import importlib.util

    import arena
    from arena.config import TrainConfig
    from arena.rollout import play

    assert arena.play is play and arena.TrainConfig is TrainConfig
    assert {"play", "train", "TrainConfig"} <= set(dir(arena)) and {"play", "train", "TrainConfig"} <= set(arena.__all__)
    assert not {"Any", "TYPE_CHECKING", "annotations", "importlib", "_LAZY"} & set(dir(arena))  # its own names only
    if importlib.util.find_spec("trl") is not None:  # the trainer needs trl
        from arena.training import train

        assert arena.train is train


COIN_ENV = '''
"""Coin guess, a one-file env that no package installs."""
from arena import ArenaEnv, Role, register


class CoinGuess(ArenaEnv):
    """Guess a hidden coin."""

    roles = (Role("guesser", "guesses the coin", "+1 if right, -1 if wrong"),)
    edges = (("rules", "guesser"),)

    def _reset(self, options):
        self.coin = ["heads", "tails"][self.np_random.integers(2)]
        return "guesser"

    def _observe(self, agent):
        return "Heads or tails? Answer [heads] or [tails]."

    def legal_actions(self, agent=None):
        return [] if self.done else ["[heads]", "[tails]"]

    def _step(self, agent, text):
        action = self.parse_action(text)
        legal = action in ("[heads]", "[tails]")
        self.turn_info = {"action": action, "legal": legal}
        self._finish({"guesser": 1.0 if action == f"[{self.coin}]" else -1.0}, reason="guessed" if legal else "invalid_move")


register("mine/CoinGuess-v0", "coin_games.coin:CoinGuess")
'''


def test_module_prefix_plays_an_env_file_from_the_working_folder(tmp_path):
    """Gymnasium's `module:env_id`: `arena play coin_games.coin:mine/CoinGuess-v0` imports the
    module from the working folder (no package, no entry point); the episodes keep the whole
    id, so `arena replay --verify` imports it again. `-P` keeps the working folder off
    `sys.path`, as for the `arena` console script."""
    (tmp_path / "coin_games").mkdir()
    (tmp_path / "coin_games" / "__init__.py").write_text("")
    (tmp_path / "coin_games" / "coin.py").write_text(COIN_ENV)
    env = {**os.environ, "COLUMNS": "200"}

    def arena(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "-m", "arena.cli", *args], check=False, capture_output=True,
                              text=True, env=env, timeout=120, cwd=tmp_path)

    result = arena("play", "coin_games.coin:mine/CoinGuess-v0", "--agents", "random", "-n", "6", "--out", "run")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]
    assert {r["env_id"] for r in records} == {"coin_games.coin:mine/CoinGuess-v0"}
    result = arena("replay", "run", "--verify")
    assert result.returncode == 0 and "verified 6 episodes: all replay exactly" in result.stdout, result.stderr
    result = arena("play", "no_such_games:mine/CoinGuess-v0", "-n", "1", "--out", "other")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no module 'no_such_games' on the Python path or in" in result.stderr
    result = arena("play", "coin_games.coin:mine/CoinGues-v0", "-n", "1", "--out", "other")
    assert result.returncode == 2 and "did you mean 'mine/CoinGuess-v0'" in result.stderr
    result = arena("play", "coin_games.coin:", "-n", "1", "--out", "other")
    assert result.returncode == 2 and "names a module but no env" in result.stderr
    assert not (tmp_path / "other").exists()  # nothing stored for a command that failed
