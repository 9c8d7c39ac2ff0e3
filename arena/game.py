"""Two-player zero-sum text games, scored the way SPIRAL scores them.

`ZeroSumGame` adds to `ArenaEnv` what every SPIRAL game shares: the two seats
`player_0` and `player_1` played by one model, SPIRAL's prompt, the extraction of the
action from the completion (`extract_action`), the legal-move check, the invalid-move
rewards, and the turn cap. A game subclass only writes its rules.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from arena.errors import ArenaError
from arena.protocol import ArenaEnv, Role, last_boxed

#: SPIRAL's prompt (spiral/template.py), as the user message of both seats.
SPIRAL_PROMPT = (
    "You are playing a two-player zero-sum game. Make valid actions to win.\n"
    "Observation: {observation}\n"
    "Please reason step by step, and put your final answer within \\boxed{}."
)

#: Each seat's number (Player 0 / Player 1 in the observations) and its opponent: plain dicts,
#: as games read them on every move.
SEATS: dict[str, int] = {"player_0": 0, "player_1": 1}
OPPONENT: dict[str, str] = {"player_0": "player_1", "player_1": "player_0"}

#: (offender, opponent) rewards for an invalid move, per mode (SPIRAL's values).
INVALID_MOVE_REWARDS: dict[str, tuple[float, float]] = {"train": (-1.5, 0.5), "eval": (-1.0, 1.0)}

def extract_action(text: str, max_bare_words: int = 5) -> str | None:
    """The action in a completion, normalised to `[X]` (SPIRAL's `extract_action`).

    The last `\\boxed{X}` gives `[X]` (kept as is when X is already bracketed). Without a box,
    a short bare answer (at most `max_bare_words` words) is accepted and bracketed the same
    way. Anything else gives None (an invalid move).
    """
    boxed = last_boxed(text)
    candidate = boxed if boxed is not None else text
    candidate = candidate.strip()
    if not candidate:
        return None
    if boxed is None and len(candidate.split()) > max_bare_words:
        return None
    if candidate.startswith("[") and candidate.endswith("]"):
        return candidate
    return f"[{candidate}]"


def _seat_role(seat: int) -> Role:
    return Role(
        name=f"player_{seat}",
        description=f"seat {seat} of the two-player game (Player {seat} in the observation)",
        reward="+1 win, -1 loss, 0 draw; an invalid move ends the game (-1.5 to its author, +0.5 to the opponent in training; -1/+1 in evaluation)",
        prompt_template=SPIRAL_PROMPT,
    )


class ZeroSumGame(ArenaEnv):
    """Base of the SPIRAL games: two seats of one model, one zero-sum outcome.

    Subclasses implement `_new_game(options) -> first seat`, `_observe`, `legal_actions`,
    `_play(agent, action)` (with `action` already legal; it ends the game through
    `self._end(returns, winner)`), and optionally `heuristic_action`.

    Args:
        mode: "train" or "eval": selects the invalid-move rewards (`INVALID_MOVE_REWARDS`).
        max_turns: turn cap (SPIRAL: 50); reaching it is a draw (0, 0).
        render_mode: None or "ansi".
    """

    roles: ClassVar[tuple[Role, ...]] = (_seat_role(0), _seat_role(1))
    edges: ClassVar[tuple[tuple[str, str], ...]] = (("player_0", "player_1"), ("player_1", "player_0"))
    independent_reset: ClassVar[bool] = True  # a game is its seed and options; set False if yours is not
    two_seat_game: ClassVar[bool] = True

    def __init__(self, mode: Literal["train", "eval"] = "train", max_turns: int = 50, render_mode: str | None = None):
        if mode not in INVALID_MOVE_REWARDS:
            raise ArenaError(f"mode must be 'train' or 'eval', got {mode!r}")
        super().__init__(render_mode=render_mode, max_turns=max_turns)
        self.mode = mode

    # -- hooks ---------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> str:
        raise NotImplementedError  # abstract hook: every game implements it

    def _play(self, agent: str, action: str) -> None:
        raise NotImplementedError  # abstract hook: every game implements it

    # -- shared logic --------------------------------------------------------------------
    def _reset(self, options: dict[str, Any]) -> str:
        self.last_actions: list[tuple[str, str | None]] = []
        return self._new_game(options)

    def opponent(self, agent: str) -> str:
        return OPPONENT[agent]

    @staticmethod
    def seat(agent: str) -> int:
        """The seat's number: 0 for `player_0`, 1 for `player_1`."""
        return SEATS[agent]

    def _say(self, message: str) -> None:
        """Append `message` to every seat's log, for games that keep one per seat (`self.log`:
        seat -> list of lines, where private lines go to one seat only)."""
        for log in self.log.values():
            log.append(message)

    def parse_action(self, text: str) -> str | None:
        """The normalised action in a completion (`extract_action`), or None."""
        return extract_action(text)

    def is_legal(self, agent: str, action: str | None) -> bool:
        return action is not None and action in (self.legal_actions(agent) or ())

    def _step(self, agent: str, text: str) -> None:
        action = self.parse_action(text)
        legal = self.is_legal(agent, action)
        self.last_actions.append((agent, action))
        self.turn_info = {"action": action, "legal": legal}
        if not legal:
            self._finish(
                self.invalid_move_returns(agent),
                reason="invalid_move",
                winner=self.opponent(agent),
                invalid_move_by=agent,
                invalid_action=action,
            )
            return
        self._play(agent, action)

    def invalid_move_returns(self, agent: str) -> dict[str, float]:
        """The returns when `agent` makes an invalid move: SPIRAL's (`INVALID_MOVE_REWARDS`).
        A game scored by what its seats gathered over several rounds adds that (Kuhn Poker's
        chips), or a seat behind could cut its loss by an invalid move."""
        bad, good = INVALID_MOVE_REWARDS[self.mode]
        return {agent: bad, self.opponent(agent): good}

    def _end(self, returns: dict[str, float], winner: str | None, reason: str | None = None, **details: Any) -> None:
        """End a game played to its end: `returns` per seat, `winner` or None for a draw;
        `details` (e.g. chips) go into `self.outcome`."""
        if winner is not None and winner not in self._roles:  # else every seat's result counts as a loss
            raise ArenaError(f"{self._name()}: _end got winner {winner!r}, not one of its seats "
                             f"({', '.join(self._roles)}); give None for a draw")
        self._finish(returns, reason=reason or ("win" if winner else "draw"), winner=winner, **details)

    def _turn_cap(self) -> None:
        """SPIRAL scores a game that reaches the turn cap as a draw."""
        self._finish({a: 0.0 for a in self.agents}, reason="turn_cap", truncated=True, winner=None)

    @staticmethod
    def moves_line(moves: list[str]) -> str:
        """TextArena's listing of the legal moves: `Available Moves: '[0]', '[4]'`."""
        return "Available Moves: " + ", ".join(f"'{m}'" for m in moves)
