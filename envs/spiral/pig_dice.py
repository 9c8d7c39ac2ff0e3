"""Pig Dice, as SPIRAL evaluates on it (`spiral/PigDice-v0`).

## Description
Two seats of one model race to `winning_score` points with one die. On its turn a seat
rolls as often as it likes: a 2-6 adds to its turn total, a 1 ends the turn with the turn
total lost ("bust"); holding banks the turn total into the seat's score and ends the turn.
TextArena's PigDice rules (textarena 0.7.4 `envs/PigDice/env.py`); SPIRAL plays it with
`winning_score=50` as an out-of-distribution evaluation game. The dice come from the env's
seeded generator (`self.np_random`), not Python's global `random` as in TextArena, so an
episode replays exactly from its seed.

## Roles
- `player_0`: takes the first turn.
- `player_1`: takes the second turn.
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's text: the rules, the log of the game (each roll, bust and hold with the scores),
then both seats' scores, the acting seat's turn total and its rolls this turn, and
`Available Moves: '[roll]', '[hold]'` on its turn.

## Actions
`[roll]` or `[hold]`, both legal on every turn (holding a turn total of 0 passes). The
completion's last `\\boxed{X}` (or a short bare answer) is normalised to `[X]`; the move
name is matched case-insensitively. Anything else is an invalid move.

## Rewards
+1 to the first seat whose banked score reaches `winning_score`, -1 to the other. At
`max_turns` moves (every roll and hold is a move) the game is a draw, 0 to both: SPIRAL's
50-move cap, which comes before TextArena's own limit (500 moves, decided by score). An
invalid move ends the game: -1.5 to its author and +0.5 to the opponent with `mode="train"`,
-1/+1 with `mode="eval"`.

## Episode end
A banked score reaching `winning_score`, an invalid move, or `max_turns` moves (a draw).

## Arguments
- `winning_score`: points to win (SPIRAL: 50; TextArena's default 100).
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `max_turns`: move cap, default 50 (SPIRAL's).
- `render_mode`: None or "ansi".

`reset(options={"rolls": [3, 1, 6]})` makes the first rolls of the game those values (later
ones come from `self.np_random`); `env.rolls` lists every roll of the game so far.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from arena.errors import ArenaError
from arena.game import ZeroSumGame

ACTIONS: tuple[str, str] = ("[roll]", "[hold]")
HOLD_AT = 20
"""The heuristic's turn total to hold at (the classic "hold at 20" rule, near-optimal for a
race to 100; it holds earlier when that wins the game)."""


def score_line(scores: tuple[int, int] | list[int]) -> str:
    """TextArena's score listing: `Player 0: '12'; Player 1: '30'`."""
    return "; ".join(f"Player {i}: '{s}'" for i, s in enumerate(scores))


def hold_target(score: int, winning_score: int, hold_at: int = HOLD_AT) -> int:
    """The turn total at which the heuristic holds: `min(hold_at, winning_score - score)`."""
    return max(1, min(hold_at, winning_score - score))


class PigDice(ZeroSumGame):
    """Pig Dice for two seats of one model (TextArena's PigDice, SPIRAL's evaluation game)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "pig_dice", "is_parallelizable": False}

    def __init__(self, winning_score: int = 50, mode: Literal["train", "eval"] = "train", max_turns: int = 50,
                 render_mode: str | None = None):
        if int(winning_score) < 1:
            raise ArenaError(f"winning_score must be >= 1, got {winning_score}")
        super().__init__(mode=mode, max_turns=max_turns, render_mode=render_mode)
        self.winning_score = int(winning_score)

    # -- state ---------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> str:
        fixed = options.get("rolls")
        if fixed is not None:
            fixed = [int(r) for r in fixed]
            if any(not 1 <= r <= 6 for r in fixed):
                raise ArenaError(f"options['rolls'] must be die values 1-6, got {options['rolls']!r}")
        self._fixed_rolls = list(fixed or [])
        self.scores = [0, 0]
        self.turn_total = 0
        self.turn_rolls: list[int] = []
        self.rolls: list[int] = []
        self.log: list[str] = []
        return "player_0"

    def legal_actions(self, agent: str | None = None) -> list[str]:
        if self.done or (agent is not None and agent != self.agent_selection):
            return []
        return list(ACTIONS)

    # -- text ----------------------------------------------------------------------------
    def parse_action(self, text: str) -> str | None:
        action = super().parse_action(text)
        if action is not None and action[1:-1].strip().lower() in ("roll", "hold"):
            return f"[{action[1:-1].strip().lower()}]"
        return action

    def _observe(self, agent: str) -> str:
        seat = self.seat(agent)
        lines = [
            f"You are Player {seat} playing a game of Pig Dice.",
            "Rules:",
            "- On your turn, you can either '[roll]' or '[hold]'",
            "- Roll a 2-6: Add to your turn total",
            "- Roll a 1: Lose turn total and end turn",
            "- Hold: Add turn total to your score and end turn",
            f"- First to {self.winning_score} points wins",
        ]
        if self.log:
            lines += ["", *self.log]
        if not self.done:
            lines += ["", f"Current Total Scores: {score_line(self.scores)}"]
            if agent == self.agent_selection:
                lines.append(f"Your current turn total is {self.turn_total}.")
                lines.append(f"Your roll history for this turn: {', '.join(f'{r!r}' for r in map(str, self.turn_rolls))}"
                             if self.turn_rolls else "This is the first roll of your turn.")
                lines.append(self.moves_line(list(ACTIONS)))
            else:
                lines.append(f"Waiting for Player {1 - seat} to act.")
        return "\n".join(lines)

    # -- moves ---------------------------------------------------------------------------
    def _roll(self) -> int:
        value = self._fixed_rolls.pop(0) if self._fixed_rolls else int(self.np_random.integers(1, 7))
        self.rolls.append(value)
        return value

    def _play(self, agent: str, action: str) -> None:
        seat = self.seat(agent)
        if action == "[roll]":
            value = self._roll()
            if value != 1:
                self.turn_total += value
                self.turn_rolls.append(value)
                self.log.append(f"Player {seat} rolls a {value}: turn total {self.turn_total}.")
                return
            self.log.append(f"Player {seat} rolls a 1 and busts, losing {self.turn_total} points! "
                            f"Current Scores: {score_line(self.scores)}")
        else:
            self.scores[seat] += self.turn_total
            self.log.append(f"Player {seat} holds and banks {self.turn_total} points. "
                            f"Current Scores: {score_line(self.scores)}")
            if self.scores[seat] >= self.winning_score:
                self._end({agent: 1.0, self.opponent(agent): -1.0}, winner=agent, scores=list(self.scores))
                return
        self.turn_total = 0
        self.turn_rolls = []
        self.agent_selection = self.opponent(agent)

    def _turn_cap(self) -> None:
        """SPIRAL's move cap: a draw, with the scores so far in the outcome."""
        self._finish({a: 0.0 for a in self.agents}, reason="turn_cap", truncated=True, winner=None,
                     scores=list(self.scores))

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """Hold at 20 (`HOLD_AT`), or at whatever turn total wins the game; roll below it."""
        agent = agent or self.agent_selection
        if self.done:
            raise ArenaError("the Pig Dice game is over; reset it before asking for a move")
        target = hold_target(self.scores[self.seat(agent)], self.winning_score)
        return "[hold]" if self.turn_total >= target else "[roll]"
