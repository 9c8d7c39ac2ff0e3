"""The multi-role env protocol: roles, text spaces, the protocol graph and `ArenaEnv`.

An arena env is a PettingZoo `AECEnv` whose agents are *roles* of one model. Observations
and actions are text. Subclasses implement five small hooks (`_reset`, `_observe`,
`_step`, optionally `legal_actions` and `heuristic_action`); this base keeps the AEC
bookkeeping (rewards, cumulative rewards, terminations, truncations, infos, dead steps),
seeding, the turn cap, and the protocol graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium
import numpy as np
from gymnasium.utils import seeding
from pettingzoo import AECEnv

from arena import seeding as fast_seeding
from arena.errors import ArenaError

if TYPE_CHECKING:
    from pathlib import Path

    import networkx as nx

#: Longest observation or action text, in characters.
MAX_TEXT_LENGTH: int = 1 << 17


@cache
def charset() -> str:
    """Every character of Unicode's basic multilingual plane except the surrogates, so that
    any text a model writes (and any random string a fuzzer draws) lies in the spaces."""
    return "".join(chr(i) for i in range(0x10000) if not 0xD800 <= i < 0xE000)


@cache
def text_space() -> gymnasium.spaces.Text:
    """The one shared observation and action space (built on first use: ~0.2 s).

    One instance for every env: a 63k-character charset per env would cost megabytes per
    instance, and PettingZoo wants the same object back on every call.
    """
    return gymnasium.spaces.Text(max_length=MAX_TEXT_LENGTH, charset=charset())


def __getattr__(name: str) -> Any:
    # CHARSET, OBSERVATION_SPACE and ACTION_SPACE, built on first use
    if name == "CHARSET":
        return charset()
    if name in ("OBSERVATION_SPACE", "ACTION_SPACE"):
        return text_space()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_BOXED = "\\boxed{"


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` in `text` (braces balanced), or None.

    Plain `str.rfind`, no regex: this runs on every move of every game, and a completion
    without a box (the constrained tiny model's `[bet]`) is answered by one C-level search.
    """
    start = text.rfind(_BOXED)
    if start == -1:
        return None
    depth = 1
    for i in range(start + len(_BOXED), len(text)):  # the last box, as it nearly always closes
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + len(_BOXED):i]
    # It does not: an earlier one may. Every brace matched in one pass (scanning on from each
    # earlier box was quadratic: 50 KB of unclosed boxes took 8.7 s, on every move).
    close: dict[int, int] = {}
    opened: list[int] = []
    for i, ch in enumerate(text):
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            close[opened.pop()] = i
    start = text.rfind(_BOXED, 0, start)
    while start != -1:
        brace = start + len(_BOXED) - 1
        if brace in close:
            return text[brace + 1:close[brace]]
        start = text.rfind(_BOXED, 0, start)
    return None


def _reward(env: str, role: str, value: Any) -> float:
    """`value` as a role's reward: a finite real number (bool, str and None are refused: a
    NaN trained the weights into NaN, `"1.0"` was read as 1.0)."""
    if type(value) is float and value - value == 0.0:  # a finite float, at once: every move of a game ends here
        return value
    if isinstance(value, (bool, str, bytes)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArenaError(f"{env}: _finish got reward {value!r} ({type(value).__name__}) for role {role!r}: give a "
                         "float")
    reward = float(value)
    if not math.isfinite(reward):
        raise ArenaError(f"{env}: _finish got reward {reward} for role {role!r}: rewards must be finite")
    return reward


class TextObs(str):
    """A `str` that also reports the numpy dtype of `gymnasium.spaces.Text`.

    PettingZoo's `api_test` compares `space.dtype == observation.dtype`; a plain `str` has no
    `dtype`. This subclass is a str in every other respect (json, equality, slicing).
    """

    __slots__ = ()
    dtype = np.dtype(str)


@dataclass(frozen=True)
class Role:
    """A named part that the one model plays in an env.

    Attributes:
        name: the PettingZoo agent name (`player_0`, `proposer`, `solver`, ...).
        description: what the role does, one sentence.
        reward: what the role's reward means, one sentence (shown by `arena envs`).
        system_prompt: system message conditioning the model on the role, or None.
        prompt_template: the user message; `{observation}` is replaced by the observation.
    """

    name: str
    description: str
    reward: str
    system_prompt: str | None = None
    prompt_template: str = "{observation}"

    def messages(self, observation: str) -> list[dict[str, str]]:
        """Chat messages that ask the model to act as this role on `observation`."""
        messages = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.prompt_template.replace("{observation}", observation)})
        return messages


def protocol_graph(roles: tuple[Role, ...] | list[Role], edges: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> nx.DiGraph:
    """Build the directed graph of who feeds whom.

    Nodes are role names (attribute `kind="role"`) and other components such as `sandbox`
    or `rules` (`kind="component"`); an edge `a -> b` means b's input includes a's output.
    """
    import networkx as nx

    graph = nx.DiGraph()
    for role in roles:
        graph.add_node(role.name, kind="role")
    for src, dst in edges:
        for node in (src, dst):
            if node not in graph:
                graph.add_node(node, kind="component")
        graph.add_edge(src, dst)
    return graph


def validate_declarations(env_id: str, roles: Any, edges: Any) -> None:
    """Check the class attributes `roles` (a tuple of `Role`) and `edges` (a tuple of
    `(src, dst)` name pairs) before a graph is built from them: `roles = (Role(...))`
    without its comma, or `edges = ("a", "b")` without the outer tuple, is one line here."""
    if not isinstance(roles, (tuple, list)) or not all(isinstance(r, Role) for r in roles):
        got = type(roles).__name__ if not isinstance(roles, (tuple, list)) else \
            next(type(r).__name__ for r in roles if not isinstance(r, Role))
        raise ArenaError(f"{env_id}: `roles` must be a tuple of arena.Role, got a {got} "
                         "(one role is `roles = (Role(...),)`, with the comma)")
    if not isinstance(edges, (tuple, list)) or not all(_is_edge(e) for e in edges):
        bad = edges if not isinstance(edges, (tuple, list)) else next(e for e in edges if not _is_edge(e))
        raise ArenaError(f"{env_id}: `edges` must be a tuple of (src, dst) name pairs, got {bad!r} "
                         "(one edge is `edges = ((\"a\", \"b\"),)`, with the comma)")


def _is_edge(edge: Any) -> bool:
    return isinstance(edge, (tuple, list)) and len(edge) == 2 and all(isinstance(n, str) for n in edge)


def _close_component(graph: nx.DiGraph, role: str) -> str:
    """` (edges name 'guessr', not a role: did you mean 'guesser'?)` when a component of the
    graph is spelt like `role`; an edge's misspelt role is taken for a component."""
    import difflib

    components = [n for n, kind in graph.nodes(data="kind") if kind == "component"]
    close = difflib.get_close_matches(role, components, n=1, cutoff=0.75)
    return f" (edges name {close[0]!r}, not a role: did you mean {role!r}?)" if close else ""


def validate_protocol(env_id: str, possible_agents: list[str], graph: nx.DiGraph) -> None:
    """Check an env's protocol graph; raise `ArenaError` naming the first problem.

    Rules: role names are unique and equal `possible_agents`; every role has at least one
    edge; every role is reachable from the first role (the one that acts first).
    """
    roles = [n for n, kind in graph.nodes(data="kind") if kind == "role"]
    if len(set(possible_agents)) != len(possible_agents):
        raise ArenaError(f"{env_id}: duplicate role names in {possible_agents}")
    if not possible_agents:
        raise ArenaError(f"{env_id}: the env declares no roles; set the class attribute `roles`")
    if sorted(roles) != sorted(possible_agents):
        raise ArenaError(
            f"{env_id}: protocol graph roles {sorted(roles)} differ from possible_agents "
            f"{sorted(possible_agents)}; declare every role in `roles` and use the same names in `edges`"
        )
    for role in roles:
        if graph.degree(role) == 0:
            raise ArenaError(f"{env_id}: role {role!r} has no edge in the protocol graph; add it to `edges`"
                             f"{_close_component(graph, role)}")
    import networkx as nx

    reachable = nx.descendants(graph, possible_agents[0]) | {possible_agents[0]}
    unreachable = [r for r in roles if r not in reachable]
    if unreachable:
        raise ArenaError(
            f"{env_id}: roles {unreachable} are not reachable from {possible_agents[0]!r} in the protocol graph"
            + "".join(_close_component(graph, r) for r in unreachable)
        )


def graph_text(graph: nx.DiGraph) -> str:
    """One-line text of a protocol graph: `player_0 -> player_1, player_1 -> player_0`."""
    return ", ".join(f"{a} -> {b}" for a, b in graph.edges)


class ArenaEnv(AECEnv):
    """Base class of every arena env (a PettingZoo `AECEnv` over text).

    Subclasses set the class attributes `roles` and `edges` and implement:

    - `_reset(options) -> str`: set up a new episode (draw randomness only from
      `self.np_random`) and return the role that acts first;
    - `_observe(agent) -> str`: the text the role sees now;
    - `_step(agent, text) -> None`: apply the acting role's completion (`text` is the whole
      completion, e.g. `\\boxed{[heads]}`: read the move with `self.parse_action(text)`);
      then either set `self.agent_selection` to the next role or call `self._finish(...)`;
    - optionally `legal_actions(agent)` (finite move sets), `sample_action(agent, rng)`
      (a random valid move where moves are unbounded) and `heuristic_action(agent, rng)`.

    The same seed, options and action texts always give the same observations and rewards
    (`arena replay --verify` checks it).

    Args:
        render_mode: None or "ansi" (render returns the acting role's observation).
        max_turns: turn cap; reaching it ends the episode as truncated with zero rewards,
            unless a subclass overrides `_turn_cap`.
    """

    roles: ClassVar[tuple[Role, ...]] = ()
    edges: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: True when `reset` reads nothing but its seed and options (no state shared across
    #: episodes, such as a task buffer that grows as episodes finish): the rollout may then
    #: reset several upcoming episodes back to back (`arena.rollout.RESET_AHEAD`).
    independent_reset: ClassVar[bool] = False
    #: True when the env credits each turn its own reward (`turn_credit`: AZR's and SPICE's
    #: n attempts) rather than each role its episode's return: RAE then updates its baseline
    #: once per turn, not once per role and episode (`arena.samples`).
    credits_each_turn: ClassVar[bool] = False
    #: Roles whose GRPO group is every sample of the role in the step rather than the samples
    #: of one prompt (`arena.samples.assign_advantages`): roles whose prompts repeat only by
    #: chance (SPICE's challenger, a document drawn at random; its verifier), where per-prompt
    #: groups would give a repeat its own baseline and the rest the role's.
    grpo_pooled_roles: ClassVar[tuple[str, ...]] = ()
    #: True when the two roles are the seats of one game, alike but for who moves first (a
    #: two-player board or card game; `ZeroSumGame` sets it): `arena eval` then plays the
    #: model against `random` and `heuristic` from each seat and reports win/draw/loss over
    #: both. Otherwise (a proposer and a solver) the model plays every role, and each role
    #: gets its own row.
    two_seat_game: ClassVar[bool] = False
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "arena_env", "is_parallelizable": False}

    def __init__(self, render_mode: str | None = None, max_turns: int = 50):
        super().__init__()
        if render_mode not in (None, "ansi"):
            raise ArenaError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        if int(max_turns) < 1:
            raise ArenaError(f"max_turns must be >= 1, got {max_turns}")
        self.render_mode = render_mode
        self.max_turns = int(max_turns)
        self.possible_agents = [role.name for role in self.roles]
        self._roles = {role.name: role for role in self.roles}
        self._np_random: np.random.Generator | None = None
        self._np_random_seed: int | None = None
        self._infos: dict[str, dict[str, Any]] | None = None
        self.agents: list[str] = []
        self.num_moves = 0
        self.outcome: dict[str, Any] | None = None
        #: What the last `step` made of its action text: `{"action": ..., "legal": ...}`;
        #: subclasses fill it, the rollout copies it into the `Turn`.
        self.turn_info: dict[str, Any] = {}

    # -- description -------------------------------------------------------------------
    @classmethod
    def resolve_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments as `make` builds the env with them and episodes record them: where
        an argument means something relative to the place it was given in (a file path),
        its meaning anywhere (the absolute path), so that the episodes replay from any
        folder. Override for such arguments; the default changes nothing."""
        return kwargs

    @classmethod
    def replay_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments `arena replay --verify` rebuilds an episode's env with: the recorded
        ones, less any through which the env would write outside the replay (AZR's
        `buffer_path`). Override where an env writes somewhere."""
        return dict(kwargs)

    @classmethod
    def run_kwargs(cls, kwargs: dict[str, Any], run: str, folder: Path | None) -> dict[str, Any]:
        """The arguments the env is built with to play in the run called `run` (training's
        rollouts, `arena play`): where the env keeps state that lasts the whole run rather
        than one env object (AZR's task buffer), it says so here, and grows it in
        `after_episode`. `folder` (None when the run keeps nothing on disk) is the run's
        `env-state/` folder, or a worker's mirror of it (`arena.env_state`): what the env
        writes there must be append-only files, which a resumed run cuts back to their size
        at its checkpoint (the rest moved to `*.after-checkpoint.*`). The default changes
        nothing; an env's own `replay_kwargs` takes such arguments out."""
        return kwargs

    @classmethod
    def after_episode(cls, kwargs: dict[str, Any], episode: Any) -> None:
        """Fold one finished episode of a run into the state that lasts the run (AZR: its
        valid task into the run's buffer), from what the episode recorded. Called once per
        episode in index order, with the env's `run_kwargs`: by `arena.rollout.play` as each
        episode is stored, and by training after each step for the whole step (so the
        step's episodes all see the state of its start, however the step is shared out:
        `arena.env_state`). The default does nothing."""

    @classmethod
    def protocol(cls) -> nx.DiGraph:
        """The env's protocol graph (see `protocol_graph`)."""
        return protocol_graph(cls.roles, cls.edges)

    def role(self, name: str) -> Role:
        """The `Role` named `name`."""
        return self._roles[name]

    def observation_space(self, agent: str) -> gymnasium.spaces.Text:
        return text_space()

    def action_space(self, agent: str) -> gymnasium.spaces.Text:
        return text_space()

    # -- hooks for subclasses ------------------------------------------------------------
    def _reset(self, options: dict[str, Any]) -> str:
        raise NotImplementedError  # abstract hook: every env implements it

    def _observe(self, agent: str) -> str:
        raise NotImplementedError  # abstract hook: every env implements it

    def _step(self, agent: str, text: str) -> None:
        raise NotImplementedError  # abstract hook: every env implements it

    def parse_action(self, text: str) -> str | None:
        """The action a completion states: by default the content of its last `\\boxed{...}`
        (what arena's agents and SPIRAL-prompted models write), else the whole text;
        stripped, None when empty."""
        boxed = last_boxed(text)
        return (boxed if boxed is not None else text).strip() or None

    def legal_actions(self, agent: str | None = None) -> list[str] | None:
        """The acting role's legal actions when the set is finite, else None."""
        return None

    def sample_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str | None:
        """A uniformly random valid move for the acting role (used by the `random` agent),
        or None when the env cannot draw one. Default: a member of `legal_actions`.

        Envs whose moves are unbounded (offers, free text) override it. Draw only from
        `rng`, the agent's generator, never `self.np_random`.
        """
        legal = self.legal_actions(agent or self.agent_selection)
        if not legal:
            return None
        rng = rng if rng is not None else np.random.default_rng()
        return legal[int(rng.integers(len(legal)))]

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """A strong scripted move for the acting role (used by the `heuristic` agent).

        `rng` is the agent's generator, for mixed strategies; never `self.np_random`, so
        that the agent's draws do not change the env's randomness.
        """
        raise ArenaError(f"{type(self).__name__} has no heuristic policy; use another agent")

    def _turn_cap(self) -> None:
        """Called when `max_turns` is reached: by default a truncation with zero rewards."""
        self._finish({a: 0.0 for a in self.agents}, reason="turn_cap", truncated=True)

    # -- AEC API -------------------------------------------------------------------------
    @property
    def np_random(self) -> np.random.Generator:
        """The episode's generator, gymnasium's `seeding.np_random(seed)` of the last `reset`
        (a random seed before any), built as `arena.seeding.np_random` builds it (the same
        generator, about 1 us instead of 8). Built on first use: envs whose episodes draw
        nothing (TicTacToe) never pay it."""
        if self._np_random is None:
            self._np_random = fast_seeding.np_random(self._np_random_seed)
        return self._np_random

    @np_random.setter
    def np_random(self, generator: np.random.Generator) -> None:
        self._np_random = generator

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        if seed is not None and not (isinstance(seed, int) and seed >= 0):
            seeding.np_random(seed)  # gymnasium's one-line error for a bad seed, now rather than at first use
        self._np_random, self._np_random_seed = None, seed
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.num_moves = 0
        self.outcome = None
        self.turn_info = {}
        first = self._reset(dict(options or {}))
        if first not in self._roles:  # else a KeyError from arena's code at the first observe or step
            raise ArenaError(f"{self._name()}: _reset returned {first!r}, not one of its roles "
                             f"({', '.join(self._roles)}): return the role that acts first")
        self.agent_selection = first
        self._infos = None  # built when read (`infos`)

    def observe(self, agent: str) -> TextObs:
        if self.outcome is None and not self.agents:
            raise ArenaError(f"{self._name()}: call reset() before observe()")
        text = self._observe(agent)
        if not isinstance(text, str):  # else the model's prompt is the text "None" or a list's repr
            raise ArenaError(f"{self._name()}: _observe({agent!r}) returned a {type(text).__name__}, not a str: return "
                             "the text the role sees (the role's prompt_template and system_prompt make the chat)")
        return TextObs(text)

    def step(self, action: str | None) -> None:
        if not self.agents:
            if self.outcome is None:
                raise ArenaError(f"{self._name()}: call reset() before step()")
            raise ArenaError(f"{self._name()}: the episode is over: call reset() to start a new one")
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        rewards = self.rewards
        for a in rewards:  # PettingZoo's `_clear_rewards`, inline: every move of every game runs it
            rewards[a] = 0.0
        self.turn_info = {}
        text = "" if action is None else str(action)
        self._step(agent, text)
        if self.outcome is None and self.agent_selection not in self._roles:
            raise ArenaError(f"{self._name()}: _step set agent_selection to {self.agent_selection!r}, not one of its "
                             f"roles ({', '.join(self._roles)}): set the role that acts next, or end the episode "
                             "with self._finish(...)")
        self.num_moves += 1
        if self.outcome is None and self.num_moves >= self.max_turns:
            self._turn_cap()
        cumulative = self._cumulative_rewards
        for a, reward in self.rewards.items():  # PettingZoo's `_accumulate_rewards`, inline
            cumulative[a] += reward
        self._infos = None  # built when read (`infos`)

    def render(self) -> str | None:
        if self.render_mode is None:
            return None
        if not self.agents:
            return f"episode over: {self.outcome}"
        return self._observe(self.agent_selection)

    def close(self) -> None:
        pass

    # -- helpers for subclasses ----------------------------------------------------------
    def _name(self) -> str:
        return getattr(self, "env_id", None) or type(self).__name__

    def prompt(self, agent: str | None = None) -> list[dict[str, str]]:
        """Chat messages asking the model to act as `agent` (default: the acting role)."""
        agent = agent or self.agent_selection
        return self._roles[agent].messages(self._observe(agent))

    @property
    def done(self) -> bool:
        """True once the episode has ended (`_finish` was called)."""
        return self.outcome is not None

    def _finish(self, rewards: dict[str, float], *, reason: str, truncated: bool = False, **details: Any) -> None:
        """End the episode: give each live role its reward and record `self.outcome`."""
        if self.outcome is not None:  # a second outcome would replace the first, and its rewards add up
            raise ArenaError(f"{self._name()}: _finish called twice in one episode (the first: {self.outcome['reason']!r}); "
                             "end an episode once, then return from _step")
        stray = [a for a in rewards if a not in self._roles]
        if stray:  # a misspelt role's reward was dropped: it scored 0
            raise ArenaError(f"{self._name()}: _finish got rewards for {', '.join(map(repr, stray))}, not roles of the "
                             f"env ({', '.join(self._roles)})")
        final = {a: _reward(self._name(), a, rewards.get(a, 0.0)) for a in self.possible_agents}
        ended = self.truncations if truncated else self.terminations
        for a in self.agents:
            self.rewards[a] = final[a]
            ended[a] = True
        self.outcome = {"reason": reason, "rewards": final, **details}

    @property
    def infos(self) -> dict[str, dict[str, Any]]:
        """PettingZoo's info dict per live role: `{"outcome": ...}` for every role once the
        episode is over; else the acting role's `{"turn": n, "legal_actions": [...]}` (the
        list where the move set is finite) and `{}` for the others.

        Built when first read after a `reset` or `step`, not on every move: arena's rollout
        reads `legal_actions` and `outcome` directly, and never this dict. (Building it on
        every move was about a tenth of Kuhn Poker's env time.)"""
        infos = self._infos
        if infos is None:
            infos = self._infos = self._build_infos()
        return infos

    @infos.setter
    def infos(self, value: dict[str, dict[str, Any]]) -> None:
        self._infos = value

    def _build_infos(self) -> dict[str, dict[str, Any]]:
        if self.outcome is not None:
            return {a: {"outcome": dict(self.outcome)} for a in self.agents}
        acting = self.agent_selection
        infos: dict[str, dict[str, Any]] = {a: {} for a in self.agents}
        if self.agents:
            legal = self.legal_actions(acting)
            info: dict[str, Any] = {"turn": self.num_moves}
            if legal is not None:
                info["legal_actions"] = list(legal)
            infos[acting] = info
        return infos
