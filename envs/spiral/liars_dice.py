"""Liar's Dice, as SPIRAL evaluates on it (`spiral/LiarsDice-v0`).

## Description
Two seats of one model play Liar's Dice with TextArena's rules (textarena 0.7.4
`envs/LiarsDice/env.py`, with 2 players); SPIRAL plays it as an out-of-distribution
evaluation game. Each seat starts with `num_dice` dice. Every round, each seat rolls its
remaining dice in secret; then the seats take turns either bidding `[Bid: QUANTITY, FACE]`
("there are at least QUANTITY dice showing FACE among all dice"), strictly higher than the
current bid (quantity not lower, face not lower, not the same bid), or calling the last bid
with `[Call]`. On a call, the dice are counted: if fewer than QUANTITY dice show FACE, the
last bidder loses one die; otherwise the caller loses one die. A new round is then rolled,
opened by the seat after the caller (the last bidder). A seat with no dice left loses. The
rules are plain functions (`is_valid_bid`, `valid_bids`, `count_face`, `resolve_call`); the
env renders them to text and parses moves. The dice come from the env's seeded generator
(`self.np_random`), not Python's global `random` as in TextArena, so an episode replays
exactly from its seed.

## Roles
- `player_0`: opens the first round.
- `player_1`: moves second in the first round.
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's text: the rules, then the log of the game (each round's start with both seats'
remaining dice and the seat's own roll, the bids, the calls with the count and who loses a
die), then the seat's dice, both seats' remaining dice, the current bid, and on its turn the
moves line, e.g. `Available Moves: '[Call]', or '[Bid: QUANTITY, FACE]' with QUANTITY 3-10
and FACE 4-6, other than '[Bid: 3, 4]'` (the legal bids are not listed one by one). The
opponent's dice are never shown, except as the count revealed by a call.

## Actions
`[Call]` (only when a bid stands) or `[Bid: QUANTITY, FACE]` with FACE 1-6 and QUANTITY
1 to the number of dice in play, higher than the current bid by TextArena's rule. The
completion's last `\\boxed{X}` (or a short bare answer) is normalised to `[X]`, then
written the canonical way as TextArena's patterns read it: `[call]` in any case is
`[Call]`; `[bid 3 4]`, `[Bid: 3, 4]`, `[BID:3,4]` are `[Bid: 3, 4]`. Anything else, or a
move not legal now, is an invalid move. Unlike TextArena 0.7.4, which accepts a bid of
quantity 0 (`[Bid: 0, 2]` opening a round) or above the dice in play, such bids are
invalid here; `legal_actions` lists every legal move.

## Rewards
+1 to the seat that still has dice when the other loses its last one, -1 to the other
(TextArena's rank rewards for two players). At `max_turns` moves (every bid and call is a
move) the game is a draw, 0 to both (SPIRAL's 50-move cap). An invalid move ends the game:
-1.5 to its author and +0.5 to the opponent with `mode="train"`, -1/+1 with `mode="eval"`
(TextArena would give one retry first).

## Episode end
A seat losing its last die, an invalid move, or `max_turns` moves (a draw). The outcome
records the remaining dice per seat (`dice`).

## Arguments
- `num_dice`: dice per seat at the start (TextArena's default 5).
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `max_turns`: move cap, default 50 (SPIRAL's).
- `render_mode`: None or "ansi".

`reset(options={"dice": ((1, 2, 3, 4, 5), (6, 6, 1, 2, 3))})` fixes the first round's dice
of player_0 and player_1 (`num_dice` values 1-6 each; later rounds are rolled with
`self.np_random`); `env.dice` holds the current round's dice per seat.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from arena.errors import ArenaError
from arena.game import OPPONENT, SEATS, ZeroSumGame

FACES: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
Bid = tuple[int, int]
"""A bid (quantity, face); `NO_BID` (0, 0) before the first bid of a round (TextArena's)."""
NO_BID: Bid = (0, 0)
CALL = "[Call]"
_CALL_RE = re.compile(r"\[\s*call\s*\]", re.IGNORECASE)
# possessive: "[bid" + 30,000 spaces + "x]" took 7.3 s a move (quadratic backtracking)
_BID_RE = re.compile(r"\[\s*+bid\s*+:?\s*+(\d{1,9})[,\s]++(\d{1,9})\s*+\]", re.IGNORECASE)


# -- rules ----------------------------------------------------------------------------------
def bid_action(quantity: int, face: int) -> str:
    """The canonical text of a bid: `[Bid: 3, 4]`."""
    return f"[Bid: {quantity}, {face}]"


def is_valid_bid(quantity: int, face: int, current: Bid) -> tuple[bool, str]:
    """TextArena's `_is_valid_bid`: (valid, reason). A new bid may not lower the quantity
    or the face, may not repeat the current bid, and its face lies in 1-6. (TextArena does
    not bound the quantity; `valid_bids` keeps it within 1 and the dice in play.)"""
    cur_quantity, cur_face = current
    if quantity < cur_quantity:
        return False, f"New quantity {quantity} is lower than current {cur_quantity}."
    if face < cur_face:
        return False, f"New face value {face} is lower than current {cur_face}."
    if quantity == cur_quantity and face == cur_face:
        return False, "Bid is identical to the current bid."
    if not 1 <= face <= 6:
        return False, "Face value must be between 1 and 6."
    return True, ""


def valid_bids(current: Bid, total_dice: int) -> list[Bid]:
    """Every bid that may follow `current` with `total_dice` dice in play, by quantity then
    face: `is_valid_bid` and 1 <= quantity <= total_dice."""
    return [(q, f) for q in range(max(1, current[0]), total_dice + 1) for f in FACES
            if is_valid_bid(q, f, current)[0]]


def count_face(dice: Iterable[Sequence[int]], face: int) -> int:
    """How many dice show `face` among all seats' dice (a list of rolls per seat)."""
    return sum(list(rolled).count(face) for rolled in dice)


def resolve_call(bid: Bid, dice: Iterable[Sequence[int]], bidder: str, caller: str) -> tuple[str, int]:
    """(the seat that loses a die, the count of the bid's face) when `caller` calls
    `bidder`'s `bid`: the bidder if fewer than the bid's quantity dice show its face,
    else the caller."""
    quantity, face = bid
    count = count_face(dice, face)
    return (bidder if count < quantity else caller), count


@functools.cache
def _legal_actions(current: Bid, total_dice: int) -> tuple[str, ...]:
    """The legal actions after `current` (cached: a few hundred states): `[Call]` when a
    bid stands, then every valid bid."""
    call = (CALL,) if current != NO_BID else ()
    return call + tuple(bid_action(q, f) for q, f in valid_bids(current, total_dice))


@functools.cache
def _legal_set(current: Bid, total_dice: int) -> frozenset[str]:
    return frozenset(_legal_actions(current, total_dice))


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


@functools.cache
def moves_text(current: Bid, total_dice: int) -> str:
    """The observation's moves line: the call when a bid stands and the range of legal bids
    (not each of them)."""
    parts = [f"'{CALL}'"] if current != NO_BID else []
    quantity, face = current
    if valid_bids(current, total_dice):
        if current == NO_BID:
            bids = f"'[Bid: QUANTITY, FACE]' with QUANTITY {_span(1, total_dice)} and FACE 1-6"
        else:
            bids = (f"'[Bid: QUANTITY, FACE]' with QUANTITY {_span(quantity, total_dice)} and FACE "
                    f"{_span(face, 6)}, other than '{bid_action(quantity, face)}'")
        parts.append(bids)
    return "Available Moves: " + ", or ".join(parts)


@functools.cache
def _rules(seat: int) -> str:
    """TextArena's prompt for two players (the fixed head of every observation)."""
    return (
        f"You are Player {seat} in a 2-player Liar's Dice game.\n"
        "Rules:\n- On your turn, you may either:\n"
        "  1) Make a new bid with a higher quantity or higher face (or both) than the current bid; i.e. '[Bid: 3, 4]',\n"
        "  2) Call the last bid by typing '[Call]'.\n\n"
        "If you call:\n"
        "  - If the actual count of that face value among all dice is less than the bid, the last bidder loses one die.\n"
        "  - Otherwise, the caller loses one die.\n"
        "A player who reaches 0 dice is eliminated. The last remaining player wins."
    )


def _dice_line(remaining: Mapping[str, int]) -> str:
    return "; ".join(f"Player {SEATS[a]}: {n}" for a, n in remaining.items())


# -- the env --------------------------------------------------------------------------------
class LiarsDice(ZeroSumGame):
    """Liar's Dice for two seats of one model (TextArena's LiarsDice, SPIRAL's evaluation game)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "liars_dice", "is_parallelizable": False}

    def __init__(self, num_dice: int = 5, mode: Literal["train", "eval"] = "train", max_turns: int = 50,
                 render_mode: str | None = None):
        if int(num_dice) < 1:
            raise ArenaError(f"num_dice must be >= 1, got {num_dice}")
        super().__init__(mode=mode, max_turns=max_turns, render_mode=render_mode)
        self.num_dice = int(num_dice)

    # -- state ---------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> str:
        fixed = options.get("dice")
        if fixed is not None:
            try:
                fixed = [[int(d) for d in rolled] for rolled in fixed]
            except (TypeError, ValueError):
                raise ArenaError(f"options['dice'] must be two sequences of die values, got {options['dice']!r}") from None
            if len(fixed) != 2 or any(len(r) != self.num_dice or any(not 1 <= d <= 6 for d in r) for r in fixed):
                raise ArenaError(f"options['dice'] must be two sequences of {self.num_dice} die values 1-6, "
                                 f"got {options['dice']!r}")
        self.remaining: dict[str, int] = dict.fromkeys(self.possible_agents, self.num_dice)
        self.log: dict[str, list[str]] = {a: [] for a in self.possible_agents}
        self.round = -1
        self._start_round(fixed)
        return "player_0"

    def _start_round(self, fixed: list[list[int]] | None = None) -> None:
        """Reset the bid and roll every seat's remaining dice (player_0's first)."""
        self.round += 1
        self.bid: Bid = NO_BID
        self.last_bidder: str | None = None
        if fixed is not None:
            self.dice = {a: list(fixed[i]) for i, a in enumerate(self.possible_agents)}
        else:
            self.dice = {a: [int(d) for d in self.np_random.integers(1, 7, size=self.remaining[a])]
                         for a in self.possible_agents}
        head = f"New round - Remaining dice: {_dice_line(self.remaining)}"
        for a in self.possible_agents:
            self.log[a].append(f"{head}\nYour current Dice are: {', '.join(map(str, self.dice[a]))}")

    @property
    def total_dice(self) -> int:
        """Dice in play (both seats)."""
        return sum(self.remaining.values())

    def legal_actions(self, agent: str | None = None) -> list[str]:
        """`[Call]` when a bid stands, then every valid bid, for the acting seat; [] otherwise."""
        if self.done or (agent is not None and agent != self.agent_selection):
            return []
        return list(_legal_actions(self.bid, self.total_dice))

    def is_legal(self, agent: str, action: str | None) -> bool:
        # `ZeroSumGame.is_legal` without building the list
        return (action is not None and not self.done and agent == self.agent_selection
                and action in _legal_set(self.bid, self.total_dice))

    # -- text ----------------------------------------------------------------------------
    def parse_action(self, text: str) -> str | None:
        """SPIRAL's extraction, then TextArena's patterns: `[call]` -> `[Call]`, `[bid 3 4]`
        -> `[Bid: 3, 4]`; anything else as extracted (an invalid move)."""
        action = super().parse_action(text)
        if action is None:
            return None
        if _CALL_RE.fullmatch(action):
            return CALL
        match = _BID_RE.fullmatch(action)
        if match:
            return bid_action(int(match.group(1)), int(match.group(2)))
        return action

    def _observe(self, agent: str) -> str:
        seat = SEATS[agent]
        lines = [_rules(seat), "", *self.log[agent]]
        if not self.done:
            if self.bid == NO_BID:
                bid = "none yet this round."
            else:
                bid = f"Player {SEATS[self.last_bidder]} bids {self.bid[0]} of face {self.bid[1]}."
            lines += ["", (f"Your dice: {', '.join(map(str, self.dice[agent]))}. "
                           f"Remaining dice: {_dice_line(self.remaining)} ({self.total_dice} in play)."),
                      f"Current bid: {bid}"]
            if agent == self.agent_selection:
                lines.append(moves_text(self.bid, self.total_dice))
            else:
                lines.append(f"Waiting for Player {1 - seat} to act.")
        return "\n".join(lines)

    # -- moves ---------------------------------------------------------------------------
    def _play(self, agent: str, action: str) -> None:
        seat = SEATS[agent]
        if action != CALL:
            match = _BID_RE.fullmatch(action)
            self.bid = (int(match.group(1)), int(match.group(2)))
            self.last_bidder = agent
            self._say(f"Player {seat} bids {self.bid[0]} of face {self.bid[1]}.")
            self.agent_selection = OPPONENT[agent]
            return
        quantity, face = self.bid
        loser, count = resolve_call(self.bid, self.dice.values(), self.last_bidder, agent)
        if loser == self.last_bidder:
            self._say(f"Player {seat} calls! The actual count of face {face} is {count}, which is LESS than "
                      f"{quantity}.\nPlayer {SEATS[loser]} (the last bidder) loses one die.")
        else:
            self._say(f"Player {seat} calls! The actual count of face {face} is {count}, which is >= "
                      f"{quantity}.\nPlayer {seat} (the caller) loses one die.")
        self.remaining[loser] -= 1
        if self.remaining[loser] == 0:
            winner = OPPONENT[loser]
            self._say(f"Player {SEATS[loser]} has no dice left. Player {SEATS[winner]} wins!")
            self._end({winner: 1.0, loser: -1.0}, winner=winner, dice=dict(self.remaining))
            return
        self._start_round()
        self.agent_selection = OPPONENT[agent]  # TextArena: the next player after the caller

    def _turn_cap(self) -> None:
        """SPIRAL's move cap: a draw, with the remaining dice in the outcome."""
        self._finish({a: 0.0 for a in self.agents}, reason="turn_cap", truncated=True, winner=None,
                     dice=dict(self.remaining))

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """Call when the current bid's quantity exceeds the expected count of its face (own
        dice showing it + the opponent's dice / 6) by more than 1; else bid the smallest
        legal raise on the face held most among those that can still be bid (ties: the
        smallest raise, then the lowest face; with `rng`, a random one of the most-held
        faces). Calls when no raise is left."""
        agent = agent or self.agent_selection
        if self.done:
            raise ArenaError("the Liar's Dice game is over; reset it before asking for a move")
        own = self.dice[agent]
        quantity, face = self.bid
        if self.bid != NO_BID and quantity - (own.count(face) + self.remaining[OPPONENT[agent]] / 6) > 1:
            return CALL
        raises: dict[int, int] = {}  # face -> smallest legal quantity on it
        for f in FACES:
            q = max(1, quantity) if f > face else quantity + 1 if f == face else None
            if q is not None and q <= self.total_dice:
                raises[f] = q
        if not raises:
            return CALL
        most = max(own.count(f) for f in raises)
        best = [f for f in raises if own.count(f) == most]
        if rng is not None:
            f = best[int(rng.integers(len(best)))]
        else:
            f = min(best, key=lambda f: (raises[f], f))
        return bid_action(raises[f], f)
