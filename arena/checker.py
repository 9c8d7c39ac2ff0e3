"""`check_env`: the env contract as a function anyone runs (like Gymnasium's `check_env`).

    import arena
    arena.check_env("mine/CoinGuess-v0")          # raises AssertionError naming every failed check
    arena.check_env(env)                          # an env object works too

    arena check mine/CoinGuess-v0                 # the same from the shell, one line per check

Checks (`run_checks`), each run even when an earlier one failed: the protocol graph and
role specs; the module docstring's manual sections; PettingZoo's `api_test`; that the env
accepts its own moves (from `legal_actions`/`sample_action` and `heuristic_action`,
written as arena's agents write them, `\\boxed{X}`); a fuzz of random action strings (no
crash, finite rewards, every episode ends); seeded determinism of played episodes; exact
replay of played episodes, and that replay notices a changed completion. A check that
raises is reported with the exception and the file and line it came from.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import random
import string
import sysconfig
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arena.errors import ArenaError
from arena.registry import _REGISTRY, make, register

MANUAL_SECTIONS = ("Description", "Roles", "Observation", "Actions", "Rewards", "Episode end", "Arguments")


def random_action_text(rng: random.Random) -> str:
    """A hostile action string: printable noise, random unicode, broken boxes, near-misses,
    empty strings, very long strings."""
    kind = rng.randrange(6)
    if kind == 0:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(0, 60)))
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0xD7FF)) for _ in range(rng.randrange(0, 30)))
    if kind == 2:
        return "\\boxed{" + "".join(rng.choice("{}[]\\ab0123") for _ in range(rng.randrange(0, 20))) + "}"
    if kind == 3:
        return "\\boxed{" * rng.randrange(1, 5) + "}" * rng.randrange(0, 5)
    if kind == 4:
        return rng.choice(["", " ", "\n", "[", "]", "[]", "\x00", "\\boxed{}", "[Offer: -1 Wheat -> 99 Ore]",
                           "[Accept]", "[call]", "[bet]", "[4]", "[9]", "[-1]", "None", "null"])
    return "x" * rng.randrange(1000, 20000)


def check_manual(env: Any) -> None:
    """The env's module docstring is its manual, with Gymnasium's sections plus Roles."""
    module = importlib.import_module(type(env).__module__)
    doc = module.__doc__ or ""
    missing = [s for s in MANUAL_SECTIONS if s not in doc]
    assert not missing, f"{type(env).__name__}: the module docstring lacks the sections {missing}"


def check_roles(env: Any) -> None:
    graph = env.protocol()
    assert set(env.possible_agents) <= set(graph.nodes), "every role must be a node of the protocol graph"
    for role in env.roles:
        assert role.description and role.reward, f"role {role.name!r} needs a description and a reward text"
        messages = role.messages("OBSERVATION")
        assert messages[-1]["role"] == "user" and "OBSERVATION" in messages[-1]["content"], \
            f"role {role.name!r}: the prompt template must place {{observation}} in the user message"


def fuzz(env_id: str, steps: int = 3000, seed: int = 0, legal_fraction: float = 0.7, max_episode_steps: int = 500, **kwargs: Any) -> int:
    """Step env `env_id` with random strings (mixed with legal moves when known) for
    `steps` steps; assert no crash, finite rewards, and that episodes end. Returns episodes."""
    rng = random.Random(seed)
    env = make(env_id, **kwargs)
    done_steps = 0
    episodes = 0
    while done_steps < steps:
        env.reset(seed=episodes)
        episodes += 1
        for _agent in env.agent_iter(max_episode_steps):
            obs, reward, term, trunc, info = env.last()
            assert isinstance(obs, str), f"observation is {type(obs).__name__}, not str"
            assert math.isfinite(reward), f"non-finite reward {reward}"
            if term or trunc:
                env.step(None)
                continue
            legal = info.get("legal_actions")
            action = rng.choice(legal) if legal and rng.random() < legal_fraction else random_action_text(rng)
            env.step(action)
            done_steps += 1
            assert all(math.isfinite(r) for r in env.rewards.values()), f"non-finite rewards {env.rewards}"
        assert not env.agents, f"{env_id}: an episode did not end within {max_episode_steps} steps"
    return episodes


def _records(episodes: list) -> list[dict]:
    out = []
    for ep in episodes:
        record = ep.to_dict()
        for turn in record["turns"]:
            turn["info"].pop("seconds", None)  # wall-clock time is the one field allowed to differ
        out.append(record)
    return out


def check_determinism_and_replay(env_id: str, episodes: int = 20, **kwargs: Any) -> None:
    """Same seeds and agents give identical episodes, and every episode replays exactly."""
    from arena.agents import RandomAgent
    from arena.replay import verify
    from arena.rollout import play

    a = play(env_id, [RandomAgent(seed=3)], episodes, seed=11, env_kwargs=kwargs)
    b = play(env_id, [RandomAgent(seed=3)], episodes, seed=11, env_kwargs=kwargs)
    ra, rb = _records(a), _records(b)
    assert ra == rb, (f"{env_id}: the same seeds and actions gave different episodes ({_first_difference(ra, rb)}): "
                      "draw every random choice from `self.np_random` (never `random` or `np.random`), and keep no "
                      "state from one episode to the next")
    for ep in reversed(a):  # backwards: state kept from one episode to the next (a class attribute) shows
        mismatches = verify(ep)
        assert not mismatches, (f"{env_id}: episode does not replay exactly: {mismatches[0]} (replayed alone, in "
                                "reverse order: does the env keep state from one episode to the next?)")
    changed = a[0]
    changed.turns[0].completion = "\\boxed{certainly not a legal move}"
    assert verify(changed), f"{env_id}: replay did not notice a changed completion"


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where two lists of episode records first differ, as
    `episode 0: turns[0].observation: ...'noise 0.84' != ...'noise 0.12'`."""
    if isinstance(a, list) and isinstance(b, list) and a != b:
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]" if path else f"episode {i}: ")
        return f"{path}: {len(a)} != {len(b)} items"
    if isinstance(a, dict) and isinstance(b, dict) and a != b:
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path and not path.endswith(" ") else path + key)
    if isinstance(a, str) and isinstance(b, str):  # from the first character that differs
        start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        cut = max(0, start - 20)
        a, b = ("..." if cut else "") + a[cut:cut + 60], ("..." if cut else "") + b[cut:cut + 60]
    return f"{path}: {a!r} != {b!r}"


def check_moves_accepted(env_id: str, episodes: int = 10, seed: int = 0, max_episode_steps: int = 500,
                         **kwargs: Any) -> None:
    """The env accepts its own moves: every move drawn from `sample_action` (by default a
    random member of `legal_actions`) and every `heuristic_action`, sent as arena's agents
    send it (`\\boxed{X}`), is legal. An env that compares the raw completion with `[X]`
    fails here, since no agent (and no model prompted the SPIRAL way) ever writes that; so
    does one whose episodes of such moves all run to the turn cap (its `_step` never ends one)."""
    import numpy as np

    from arena.agents.scripted import boxed

    env = make(env_id, **kwargs)
    capped = played = 0  # episodes of legal moves, and those that only the turn cap ended
    for source in ("sample_action", "heuristic_action"):
        rng = np.random.default_rng(seed)
        sent = 0
        refused: list[tuple[str, str, Any, Any, str]] = []
        for ep in range(episodes):
            env.reset(seed=seed + ep)
            for agent in env.agent_iter(max_episode_steps):
                _obs, _reward, term, trunc, _info = env.last()
                if term or trunc:
                    env.step(None)
                    continue
                legal = env.legal_actions(agent)
                _check_legal_actions(env_id, agent, legal)
                try:
                    move = env.sample_action(agent, rng=rng) if source == "sample_action" else env.heuristic_action(agent, rng=rng)
                except ArenaError:  # no heuristic policy: nothing to check
                    move = None
                if move is None:
                    break
                completion = boxed(move)
                env.step(completion)
                sent += 1
                if legal is not None and "legal" not in env.turn_info:
                    raise AssertionError(f"{env_id}: _step set no `self.turn_info = {{'action': action, 'legal': legal}}`"
                                         " for a move: the invalid-move rates read it (a junk move counted as valid)")
                if env.turn_info.get("legal") is False:
                    refused.append((agent, completion, env.turn_info.get("action"), legal, move))
            if not sent:  # the env offers no such move
                break
            if env.outcome is not None:  # (None: the moves ran out, or max_episode_steps did)
                played += 1
                capped += env.outcome.get("reason") == "turn_cap"
        if refused:
            agent, completion, action, legal, move = refused[0]
            if legal is not None and action is not None and action not in legal and move in legal:
                fix = (f"its parse_action reads the move {move!r} as {action!r}: list legal_actions as parse_action "
                       f"gives them (ZeroSumGame brackets every move: {action!r}), or override parse_action")
            elif legal is not None and action is not None and action in legal:
                fix = (f"{action!r} is in its legal_actions, which {'_step' if source == 'sample_action' else source} "
                       "must agree with: make `_step` accept every move legal_actions lists")
            elif legal is not None and source == "heuristic_action":
                fix = "heuristic_action must return one of legal_actions"
            else:
                fix = "read the action with `self.parse_action(text)` (SPIRAL games: the last \\boxed{X} -> [X]), not the raw text"
            raise AssertionError(
                f"{env_id}: refused {len(refused)} of {sent} of its own moves from {source} (first: {agent} sent "
                f"{completion!r}, read as action {action!r}); {fix}")
    if played and capped == played:  # a `_step` that never ends the episode: every game a draw at the cap
        raise AssertionError(
            f"{env_id}: none of its {played} episodes of legal moves (sample_action, heuristic_action) ended before "
            f"the turn cap (max_turns={env.max_turns}): end the episode in `_step` with `self._finish(rewards, "
            "reason=...)` (ZeroSumGame: `self._end(returns, winner)`) when it is decided")


def _check_legal_actions(env_id: str, agent: str, legal: Any) -> None:
    """`legal_actions` is None (free text) or a non-empty list of the move strings an agent
    may send while the episode runs: ints, or an empty list, made the random agent send
    junk (every move invalid), and the constraint decode nothing."""
    if legal is None:
        return
    if not isinstance(legal, (list, tuple)) or not all(isinstance(m, str) for m in legal):
        raise AssertionError(f"{env_id}: legal_actions({agent!r}) returned {str(legal)[:80]}: a list of the move strings "
                             "an agent may send (e.g. ['[check]', '[bet]']), or None where moves are free text")
    if not legal:
        raise AssertionError(f"{env_id}: legal_actions({agent!r}) returned [] while the episode runs: list the moves "
                             "the acting role may make, or return None where moves are free text")


def check_env(env: str | Any, *, api_cycles: int = 300, fuzz_steps: int = 3000, episodes: int = 20, **kwargs: Any) -> None:
    """Run every check on `env` (an env id built with `kwargs`, or an env object); raise
    AssertionError naming each failed check with its exception and location."""
    results = run_checks(env, api_cycles=api_cycles, fuzz_steps=fuzz_steps, episodes=episodes, **kwargs)
    failed = [r for r in results if r.status == "FAIL"]
    if failed:
        raise AssertionError("; ".join(f"{r.name}: {r.detail}" for r in failed))


@dataclass
class CheckResult:
    """The result of one check: `status` is "ok", "FAIL" or "skip"; `detail` says why."""

    name: str
    status: str
    detail: str = ""


def run_checks(env: str | Any, *, api_cycles: int = 300, fuzz_steps: int = 3000, episodes: int = 20,
               on_result: Callable[[CheckResult], None] | None = None, **kwargs: Any) -> list[CheckResult]:
    """Run every check on `env` (an env id with `kwargs`, or an env object), each one even
    when an earlier one failed; return one `CheckResult` per check (also passed to
    `on_result` as soon as it is known). Building the env from its id may raise `ArenaError`."""
    with _env_id_for(env, kwargs) as (env_id, env_kwargs):
        obj = env if not isinstance(env, str) else make(env_id, **env_kwargs)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("roles and protocol graph", lambda: check_roles(obj)),
            ("manual (module docstring)", lambda: check_manual(obj)),
            ("PettingZoo api_test", lambda: _api_test(obj, api_cycles)),
            ("own moves accepted", lambda: check_moves_accepted(env_id, **env_kwargs)),
            (f"fuzz ({fuzz_steps} random actions)", lambda: fuzz(env_id, steps=fuzz_steps, **env_kwargs)),
            ("determinism and exact replay", lambda: check_determinism_and_replay(env_id, episodes=episodes, **env_kwargs)),
        ]
        results = []
        for name, run in steps:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # PettingZoo warns that text spaces are not Box/Discrete
                    run()
                result = CheckResult(name, "ok")
            except Exception as exc:  # noqa: BLE001  (every failure is reported, and the next check runs)
                result = CheckResult(name, "FAIL", describe_exception(exc))
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results


def _api_test(env: Any, cycles: int) -> None:
    from pettingzoo.test import api_test  # imports pytest: only when checking

    with contextlib.redirect_stdout(io.StringIO()):
        api_test(env, num_cycles=cycles)


@contextlib.contextmanager
def _env_id_for(env: str | Any, kwargs: dict[str, Any]):
    """An id the rollout can `make` for `env`: its own when it is registered, else a
    temporary `check/<Class>-v0` registration, removed afterwards."""
    if isinstance(env, str):
        yield env, kwargs
        return
    env_id = getattr(env, "env_id", None)
    if env_id in _REGISTRY and _REGISTRY[env_id].load() is type(env):
        yield env_id, {**getattr(env, "env_kwargs", {}), **kwargs}
        return
    env_id = f"check/{type(env).__name__}-v0"
    register(env_id, type(env), kwargs, override=True)
    try:
        yield env_id, {}
    finally:
        _REGISTRY.pop(env_id, None)


_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
#: Libraries whose frames are never the location of an env's failure.
_LIBRARIES = tuple(f"{os.sep}{name}{os.sep}" for name in ("pettingzoo", "gymnasium", "numpy", "networkx", "_pytest"))


def _foreign(path: str) -> bool:
    real = os.path.realpath(path)
    if any(lib in real for lib in _LIBRARIES):
        return True
    return real.startswith(_STDLIB) and "-packages" + os.sep not in real


_CORE = os.path.dirname(os.path.realpath(__file__)) + os.sep


def _in_arena_core(path: str) -> bool:
    """A file of arena's engine (`arena/protocol.py`, ...), not of an env (built in or not)."""
    return os.path.realpath(path).startswith(_CORE)


#: Longest message of a failed check shown (`describe_exception`).
MESSAGE_LIMIT = 500


def describe_exception(exc: BaseException) -> str:
    """`Type: message (at file:line in function)`, the location being the deepest frame
    outside Python's own library and the libraries arena calls (the env's code, usually),
    and for arena's own refusals (`ArenaError`: a NaN reward given to `_finish`) outside
    arena's engine too, where the env's code is in the traceback. A failed check's own
    assertion is its message alone."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, AssertionError) and str(exc):
        message = str(exc)
        if frames and frames[-1].filename == __file__:
            return message
    else:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if len(message) > MESSAGE_LIMIT:  # an exception quoting the fuzzer's 40 KB move made one FAIL line of 47 KB
        message = f"{message[:MESSAGE_LIMIT]}... ({len(message)} characters)"
    own = [f for f in frames if not _foreign(f.filename)]
    if isinstance(exc, ArenaError):  # arena refusing what the env gave it: the env's line that gave it
        own = [f for f in own if not _in_arena_core(f.filename)] or own
    frame = (own or frames or [None])[-1]
    if frame is None:
        return message
    path = frame.filename
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    return f"{message} (at {path}:{frame.lineno} in {frame.name})"
