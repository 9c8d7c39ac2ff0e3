"""Scripted agents: `random`, `heuristic` and `human`.

They answer the way a model would, with a completion text (`\\boxed{[4]}`), so the env's
action parsing is exercised exactly as in training.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import numpy as np
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from arena.errors import ArenaError
from arena.policy import Completion, Request


def boxed(action: str) -> str:
    """The completion text that states `action` the way SPIRAL's prompt asks."""
    return f"\\boxed{{{action}}}"


class RandomAgent:
    """Picks a valid move at random: the env's `sample_action` (a member of `legal_actions`,
    or e.g. a random offer the seat can pay), else a short random string.

    Args:
        seed: seed of its own random generator (episodes stay reproducible).
    """

    name = "random"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def act(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for request in requests:
            action = None
            sample = getattr(request.env, "sample_action", None)
            if sample is not None:
                action = sample(request.role, rng=self.rng)
            elif request.legal_actions:
                action = request.legal_actions[int(self.rng.integers(len(request.legal_actions)))]
            if action is None:
                action = "".join(self.rng.choice(list("abcdefghij0123456789"), size=4))
            out.append(Completion(text=boxed(action)))
        return out


class HeuristicAgent:
    """Plays the env's own scripted strategy (`env.heuristic_action`).

    TicTacToe: perfect minimax. Kuhn Poker: a Nash equilibrium (sampled with this agent's
    generator). Simple Negotiation: a value-based rule. See each env's docstring.
    """

    name = "heuristic"

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def act(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for request in requests:
            if request.env is None:
                raise ArenaError("the heuristic agent needs the live env in its request")
            action = request.env.heuristic_action(request.role, rng=self.rng)
            out.append(Completion(text=boxed(action)))
        return out


class HumanAgent:
    """Asks a person at the terminal: shows the observation and reads one line.

    A bare answer such as `4` or `bet` is accepted (the env brackets short answers). A move
    the env would refuse (a typo) is not sent: the agent says so, lists the legal moves and
    asks again. Everything shown is plain text (an env's `[check]` is never read as markup).
    """

    name = "human"

    def __init__(self, stdin: TextIO | None = None, console: Console | None = None,
                 ask: Callable[[str], str] | None = None):
        self.stdin = stdin or sys.stdin
        self.console = console or Console()
        self.ask = ask

    def _read(self) -> str:
        if self.ask is not None:
            return self.ask("your move> ")
        self.console.print("your move> ", end="", markup=False)
        line = self.stdin.readline()
        if not line:
            raise ArenaError("standard input closed: the human agent needs a terminal")
        return line

    def act(self, requests: Sequence[Request]) -> list[Completion]:
        out = []
        for request in requests:
            self.console.print(Panel(Text(request.observation), title=Text(f"{request.env_id} — you are {request.role}")))
            if request.legal_actions:
                self.console.print(Text("legal: " + "  ".join(request.legal_actions)))
            while True:
                line = self._read().strip()
                problem = refusal(request, line)
                if problem is None:
                    break
                self.console.print(Text(f"{problem}; try again", style="red"))
            out.append(Completion(text=line))
        return out


def refusal(request: Request, text: str) -> str | None:
    """Why the env would refuse `text` as `request.role`'s move now, or None when it would
    accept it (or cannot say)."""
    env = request.env
    if env is None:
        return None
    action = env.parse_action(text)
    is_legal = getattr(env, "is_legal", None)
    if is_legal is not None:
        ok = is_legal(request.role, action)
    elif request.legal_actions:
        ok = action in request.legal_actions
    else:
        return None
    if ok:
        return None
    legal = f" (legal: {'  '.join(request.legal_actions)})" if request.legal_actions else ""
    return f"{text!r} is not a legal move{legal}"
