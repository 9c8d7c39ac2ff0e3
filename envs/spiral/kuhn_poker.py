"""Kuhn Poker, as SPIRAL plays it (`spiral/KuhnPoker-v0`, `spiral/KuhnPoker-v1`).

## Description
Two seats of one model play hands of Kuhn poker: a deck of three cards J < Q < K, each
seat antes 1 chip and gets one card; the first mover checks or bets 1 chip; facing a
check the other seat checks (showdown for the pot of 2) or bets; facing a bet a seat calls
(showdown for the pot of 4) or folds (the bettor takes the pot). The higher card wins a
showdown. The hand rules are plain functions (`legal_moves`, `hand_payoff`,
`info_state`); the env renders them to text and parses moves. The module also computes
the exact exploitability of a tabular strategy (`exploitability`), the Nash equilibrium
family (`nash_policy`) and the strategy table of any agent (`kuhn_policy_table`).

## Roles
- `player_0`: moves first in hands 0, 2, 4, ... (the starting seat alternates).
- `player_1`: moves first in hands 1, 3, ...
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's KuhnPoker text: the rules, then the log of the game (each hand's start and the
seat's card, the moves, showdowns and folds with the chip counts), the seat's card, both
seats' net chips, the pot, and `Available Moves: '[check]', '[bet]'` on the acting
seat's turn. Chips are net (antes and bets paid, pots won): with the pot they sum to 0.
Unlike TextArena 0.7.4, whose pot stays at the two antes whatever is bet, bets and calls
go into the pot, as in the standard game. The first mover alternates from hand to hand,
player_0 first in hand 1 (TextArena's `_init_round` flips its starting player before the
first hand, so its Player 1 acts first there): one hand (v0) is the standard game with
player_0 as its first mover, the seat `exploitability` and `nash_policy` read as such.

## Actions
`[check]` or `[bet]` when no bet is on the table (first move, or after a check);
`[call]` or `[fold]` facing a bet. The completion's last `\\boxed{X}` (or a short bare
answer) is normalised to `[X]`; the move name is matched case-insensitively (`[Bet]` is
`[bet]`, as in TextArena). Anything else, or a move not legal now, is an invalid move.

## Rewards
With `scoring="chips"` (v0): the chips won over the game, `sum_h payoff_h`, where a hand
pays +-1 (check-check showdown, or a fold facing a bet) or +-2 (a called bet): the
standard game's utilities for `rounds=1`. With `scoring="outcome"` (v1, SPIRAL's
TextArena scoring): +1 to the seat with more chips after all hands, -1 to the other, 0
to both on a tie. An invalid move ends the game: -1.5 to its author and +0.5 to the
opponent with `mode="train"`, -1/+1 with `mode="eval"`, added under chips scoring to the
chips of the hands already finished (none in one hand), so that no seat behind gains by
an invalid move.

## Episode end
After `rounds` hands, an invalid move, or `max_turns` moves (a draw, never reached by
legal play when `3 * rounds <= max_turns`).

## Arguments
- `rounds`: hands per game (v0: 1, v1: 5 as in SPIRAL).
- `scoring`: "chips" (v0) or "outcome" (v1).
- `ante`: chips each seat puts in the pot per hand (1).
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `max_turns`: turn cap, default 50.
- `render_mode`: None or "ansi".

`reset(options={"cards": ("J", "Q")})` deals player_0 a J and player_1 a Q in hand 0
(later hands are dealt with `self.np_random`); `kuhn_policy_table` uses it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import numpy as np

from arena.errors import ArenaError
from arena.game import OPPONENT, SEATS, ZeroSumGame
from arena.policy import Policy, Request

logger = logging.getLogger(__name__)

CARDS: tuple[str, ...] = ("J", "Q", "K")
MOVES: tuple[str, ...] = ("check", "bet", "call", "fold")
#: Each move as a history letter: p (pass: check or fold) or b (bet or call).
MOVE_LETTER: dict[str, str] = {"check": "p", "fold": "p", "bet": "b", "call": "b"}
#: The four actions as the constrained model writes them: `parse_action` returns these as is.
ACTIONS: frozenset[str] = frozenset(f"[{m}]" for m in MOVES)
_RANK: dict[str, int] = {c: i for i, c in enumerate(CARDS)}
#: Histories (letters over the hand, first mover first) that end a hand.
TERMINAL_HISTORIES: frozenset[str] = frozenset({"pp", "bp", "bb", "pbp", "pbb"})
#: The 12 information states `<card><history>` of the one-hand game.
INFO_STATES: tuple[str, ...] = tuple(c + h for h in ("", "p", "b", "pb") for c in CARDS)


# -- hand rules ---------------------------------------------------------------------------
def legal_moves(history: str) -> tuple[str, ...]:
    """Legal moves after `history` (passive first): check/bet unless facing a bet, then fold/call."""
    if history in TERMINAL_HISTORIES:
        return ()
    return ("fold", "call") if history.endswith("b") else ("check", "bet")


@functools.cache
def _rules(seat: int, rounds: int, ante: int) -> str:
    """The fixed head of every observation (TextArena's text), up to the game log."""
    return "\n".join([
        f"You are Player {seat} in a {rounds} round game of Kuhn Poker.",
        "Game Rules:",
        "- Kuhn Poker uses a 3-card deck with J, Q, K (J lowest, K highest)",
        (f"- Each player antes {ante} chip and receives 1 card each round (note that the cards are dealt "
         "without replacement, so you cannot have the same card as your opponent)."),
        f"- Game continues for {rounds} rounds",
        "- The player with the most chips after all rounds wins",
        "",
        "Action Rules:",
        "- '[check]': Pass without betting (only if no bet is on the table)",
        "- '[bet]': Add 1 chip to the pot (only if no bet is on the table)",
        "- '[call]': Match an opponent's bet by adding 1 chip to the pot",
        "- '[fold]': Surrender your hand and let your opponent win the pot",
        "",
    ])


@functools.cache
def _legal_actions(history: str) -> tuple[str, ...]:
    """`legal_moves(history)` as actions, `[check]` (cached: a handful of histories)."""
    return tuple(f"[{m}]" for m in legal_moves(history))


@functools.cache
def _moves_line(history: str) -> str:
    """The observation's `Available Moves: ...` line after `history` (cached)."""
    return ZeroSumGame.moves_line(list(_legal_actions(history)))


def facing_bet(history: str) -> bool:
    return history.endswith("b")


def hand_payoff(history: str, first_card: str, second_card: str, ante: int = 1) -> int:
    """Chips the first mover wins in a finished hand (the second mover wins the negative).

    A fold loses the ante (`bp`: the second mover folds; `pbp`: the first mover folds);
    a showdown wins the ante (`pp`) or ante + 1 bet (`bb`, `pbb`) from the lower card.
    """
    if history not in TERMINAL_HISTORIES:
        raise ArenaError(f"hand history {history!r} is not finished")
    if history == "bp":
        return ante
    if history == "pbp":
        return -ante
    stake = ante if history == "pp" else ante + 1
    return stake if _RANK[first_card] > _RANK[second_card] else -stake


def info_state(card: str, history: str) -> str:
    """The information state `<card><history>` of the seat to act (e.g. `Kpb`)."""
    return card + history


# -- exploitability -------------------------------------------------------------------------
def _check_policy(policy: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(policy, Mapping):
        raise ArenaError(f"a Kuhn policy is a mapping {{info_state: P(bet or call)}}, got {type(policy).__name__}")
    unknown = sorted(set(policy) - set(INFO_STATES), key=str)
    if unknown:
        raise ArenaError(f"unknown Kuhn info state {unknown[0]!r}; the 12 states are {', '.join(INFO_STATES)}")
    table = {}
    for state in INFO_STATES:
        if state not in policy:
            raise ArenaError(f"Kuhn policy misses info state {state!r} (give P(bet or call) for all of {', '.join(INFO_STATES)})")
        try:
            p = float(policy[state])
        except (TypeError, ValueError):
            raise ArenaError(f"Kuhn policy at {state!r} is {policy[state]!r}, not a probability") from None
        if not (0.0 <= p <= 1.0) or math.isnan(p):
            raise ArenaError(f"Kuhn policy at {state!r} is {p}, outside [0, 1]")
        table[state] = p
    return table


def _deals() -> list[tuple[str, str]]:
    return [(a, b) for a in CARDS for b in CARDS if a != b]


def _best_response_value(policy: dict[str, float], player: int) -> float:
    """Expected chips of `player` (0 acts first) best-responding to `policy`'s other seat.

    Info states of `player` are decided bottom-up (longest history first): at info state I
    the chosen move a maximises `sum_{h in I} pi_{-i}(h) v_i(h a)`, where pi_{-i} is the
    chance (1/6 per deal) times the opponent's move probabilities along h, and v_i uses
    the already chosen deeper moves.
    """
    choice: dict[str, str] = {}

    def value(cards: tuple[str, str], history: str) -> float:
        if history in TERMINAL_HISTORIES:
            u = hand_payoff(history, cards[0], cards[1])
            return u if player == 0 else -u
        actor = len(history) % 2
        state = info_state(cards[actor], history)
        if actor == player:
            return value(cards, history + choice[state])
        p = policy[state]
        return (1 - p) * value(cards, history + "p") + p * value(cards, history + "b")

    def reach(cards: tuple[str, str], history: str) -> float:
        prob = 1.0 / 6.0
        for i, letter in enumerate(history):
            if i % 2 != player:
                p = policy[info_state(cards[i % 2], history[:i])]
                prob *= p if letter == "b" else 1 - p
        return prob

    histories = ("", "pb") if player == 0 else ("p", "b")
    for history in sorted(histories, key=len, reverse=True):
        for card in CARDS:
            deals = [d for d in _deals() if d[player] == card]
            best = max("pb", key=lambda a: sum(reach(d, history) * value(d, history + a) for d in deals))
            choice[info_state(card, history)] = best
    return sum(value(d, "") for d in _deals()) / 6.0


def nash_conv(policy: Mapping[str, float]) -> float:
    """NashConv = BR_0(sigma_1) + BR_1(sigma_0) - (v_0 + v_1) = BR_0 + BR_1 (zero-sum)."""
    table = _check_policy(policy)
    return _best_response_value(table, 0) + _best_response_value(table, 1)


def exploitability(policy: Mapping[str, float]) -> float:
    """Exact exploitability of a tabular strategy in one-hand Kuhn poker (player_0 first).

    `policy` maps each of the 12 `INFO_STATES` to P(bet or call); both seats use it.
    exploitability = NashConv / 2 = (BR_0(sigma_1) + BR_1(sigma_0)) / 2, where BR_i is the
    expected chips of seat i's best response, computed by walking the game tree. Uniform
    random: 11/24 ~ 0.4583; a Nash equilibrium (`nash_policy`): 0.

    Raises `ArenaError` naming the first missing or unknown state or a value outside [0, 1].
    """
    return nash_conv(policy) / 2.0


def action_gaps(policy: Mapping[str, float]) -> dict[str, float]:
    """Per info state I, how much more the active move earns than the passive one when both
    seats play `policy` (self-play): `gap(I) = Q(I, bet or call) - Q(I, check or fold)`, in
    chips for the acting seat, where `Q(I, a) = sum_{h in I} w(h) v(h a) / sum_{h in I} w(h)`
    with `w(h)` the chance (1/6 per deal) times the opponent's reach of h (the actor's own
    reach cancels). The sign is where self-play's policy gradient pushes P(active | I); an
    entropy bonus tau settles at `P(active | I) = sigmoid(gap(I) / tau)` (the logit QRE,
    `scripts/kuhn_qre.py`), so a policy far from that is still learning. Info states the
    opponent never lets happen (reach 0) are left out.
    """
    table = _check_policy(policy)
    num = dict.fromkeys(table, 0.0)
    den = dict.fromkeys(table, 0.0)
    for deal in _deals():
        def value(h: str, deal: tuple[str, str] = deal) -> float:
            """Chips the first mover wins from history h on."""
            if h in TERMINAL_HISTORIES:
                return hand_payoff(h, *deal)
            p = table[info_state(deal[len(h) % 2], h)]
            return p * value(h + "b") + (1 - p) * value(h + "p")

        def walk(h: str, reach0: float, reach1: float, deal: tuple[str, str] = deal) -> None:
            if h in TERMINAL_HISTORIES:
                return
            actor = len(h) % 2
            state = info_state(deal[actor], h)
            weight = (reach0, reach1)[1 - actor] / 6
            num[state] += weight * (1, -1)[actor] * (value(h + "b") - value(h + "p"))
            den[state] += weight
            p = table[state]
            if actor == 0:
                walk(h + "b", reach0 * p, reach1)
                walk(h + "p", reach0 * (1 - p), reach1)
            else:
                walk(h + "b", reach0, reach1 * p)
                walk(h + "p", reach0, reach1 * (1 - p))

        walk("", 1.0, 1.0)
    return {s: num[s] / den[s] for s in table if den[s] > 0}


def nash_policy(alpha: float = 1 / 3) -> dict[str, float]:
    """The Nash equilibrium family of Kuhn poker (Kuhn 1950), alpha in [0, 1/3].

    First mover: bets J with alpha, Q never, K with 3 alpha; after check-bet calls J never,
    Q with alpha + 1/3, K always. Second mover: facing a bet calls J never, Q with 1/3,
    K always; after a check bets J with 1/3, Q never, K always. Game value: -1/18 for the
    first mover.
    """
    if not 0.0 <= alpha <= 1 / 3 + 1e-12:
        raise ArenaError(f"alpha must lie in [0, 1/3], got {alpha}")
    return {
        "J": alpha, "Q": 0.0, "K": min(1.0, 3 * alpha),
        "Jpb": 0.0, "Qpb": min(1.0, alpha + 1 / 3), "Kpb": 1.0,
        "Jb": 0.0, "Qb": 1 / 3, "Kb": 1.0,
        "Jp": 1 / 3, "Qp": 0.0, "Kp": 1.0,
    }


def info_state_request(state: str, env_id: str = "spiral/KuhnPoker-v0", seed: int = 0) -> Request:
    """The `Request` a rollout would build at info state `state` (e.g. `Qpb`): a fresh
    `env_id` env (a Kuhn Poker) reset with fixed cards (the acting seat's card; the opponent
    the lowest other card, hidden, so it changes nothing the agent sees) and the history
    replayed (`p` = check, `b` = bet)."""
    from arena.registry import make  # imported here: the registry imports this module's package

    if state not in INFO_STATES:
        raise ArenaError(f"unknown Kuhn info state {state!r}; the 12 states are {', '.join(INFO_STATES)}")
    card, history = state[0], state[1:]
    actor = len(history) % 2
    other = next(c for c in CARDS if c != card)
    env = make(env_id)
    if not isinstance(env, KuhnPoker):
        raise ArenaError(f"{env_id!r} is not a Kuhn Poker env (it is {type(env).__name__})")
    env.reset(seed=seed, options={"cards": (card, other) if actor == 0 else (other, card)})
    for letter in history:
        env.step("[bet]" if letter == "b" else "[check]")
    role = env.agent_selection
    return Request(env_id=env_id, role=role, observation=str(env.observe(role)), messages=env.prompt(role),
                   legal_actions=env.legal_actions(role), env=env)


def kuhn_policy_table(agent: Policy, samples: int = 8, seed: int = 0, *, env_id: str = "spiral/KuhnPoker-v0",
                      return_invalid: bool = False) -> dict[str, float] | tuple[dict[str, float], dict[str, float]]:
    """The strategy table {info_state: P(bet or call)} of any `Policy`, by sampling it.

    For each of the 12 info states, the agent gets `samples` copies of the `Request` a
    rollout would build there (`info_state_request`) in one `act` call;
    each completion is parsed with `env.parse_action`. Bet/call count 1, check/fold 0, and
    an invalid answer counts as the passive move (check/fold, 0): the table is what the
    agent's play amounts to when invalid answers are replaced by passing.

    Returns the table, or with `return_invalid=True` the pair (table, invalid fraction per
    state). The mean invalid fraction is logged at INFO level.
    """
    if samples < 1:
        raise ArenaError(f"samples must be >= 1, got {samples}")
    table: dict[str, float] = {}
    invalid: dict[str, float] = {}
    for state in INFO_STATES:
        request = info_state_request(state, env_id, seed)
        env = request.env
        completions = agent.act([request] * samples)
        if len(completions) != samples:
            raise ArenaError(f"agent {getattr(agent, 'name', agent)!r} answered {len(completions)} of {samples} requests")
        active = 0
        bad = 0
        legal = request.legal_actions
        for completion in completions:
            action = env.parse_action(completion.text)
            if action not in legal:
                bad += 1
            elif action in ("[bet]", "[call]"):
                active += 1
        table[state] = active / samples
        invalid[state] = bad / samples
    logger.info("kuhn_policy_table: %.1f%% invalid answers over %d samples per state",
                100 * sum(invalid.values()) / len(invalid), samples)
    return (table, invalid) if return_invalid else table


# -- the env ------------------------------------------------------------------------------
class KuhnPoker(ZeroSumGame):
    """Kuhn Poker for two seats of one model (SPIRAL's KuhnPoker-v1; v0 is the one-hand game)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "kuhn_poker", "is_parallelizable": False}

    def __init__(self, rounds: int = 1, scoring: Literal["chips", "outcome"] = "chips", ante: int = 1,
                 mode: Literal["train", "eval"] = "train", max_turns: int = 50, render_mode: str | None = None):
        if int(rounds) < 1:
            raise ArenaError(f"rounds must be >= 1, got {rounds}")
        if scoring not in ("chips", "outcome"):
            raise ArenaError(f"scoring must be 'chips' or 'outcome', got {scoring!r}")
        if int(ante) < 1:
            raise ArenaError(f"ante must be >= 1, got {ante}")
        super().__init__(mode=mode, max_turns=max_turns, render_mode=render_mode)
        self.rounds = int(rounds)
        self.scoring = scoring
        self.ante = int(ante)

    # -- state ---------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> str:
        fixed = options.get("cards")
        if fixed is not None:
            fixed = tuple(fixed)
            if len(fixed) != 2 or fixed[0] == fixed[1] or any(c not in CARDS for c in fixed):
                raise ArenaError(f"options['cards'] must be two different cards of {CARDS}, got {options['cards']!r}")
        self.chips: dict[str, int] = dict.fromkeys(self.possible_agents, 0)
        self.round = -1
        self.log: dict[str, list[str]] = {a: [] for a in self.possible_agents}
        return self._start_hand(fixed)

    def _start_hand(self, fixed: tuple[str, str] | None = None) -> str:
        self.round += 1
        self.banked = dict(self.chips)  # the chips of the hands already finished
        if fixed is not None:
            self.cards = {"player_0": fixed[0], "player_1": fixed[1]}
        else:
            # `permutation(3)` deals the same cards and leaves the generator in the same state
            # (checked over 20,000 seeds); shuffling a list skips numpy's array and errstate work.
            deck = [0, 1, 2]
            self.np_random.shuffle(deck)
            self.cards = {"player_0": CARDS[deck[0]], "player_1": CARDS[deck[1]]}
        self.history = ""
        self.first = self.possible_agents[self.round % 2]
        head = f"### Starting round {self.round + 1} out of {self.rounds} rounds. Your card is: '"
        tail = f"'. Player {SEATS[self.first]} acts first."
        for a in self.possible_agents:
            self.chips[a] -= self.ante
            self.log[a].append(head + self.cards[a] + tail)
        return self.first

    def invalid_move_returns(self, agent: str) -> dict[str, float]:
        """Under chips scoring, the chips of the hands already finished plus SPIRAL's
        invalid-move rewards: over several hands a seat 6 chips down once cut its loss to
        -1.5 by an invalid move. In one hand (v0) none is finished: SPIRAL's rewards alone."""
        returns = super().invalid_move_returns(agent)
        if self.scoring == "chips":
            returns = {a: float(self.banked[a]) + r for a, r in returns.items()}
        return returns

    @property
    def pot(self) -> int:
        return 2 * self.ante + self.history.count("b")

    def legal_actions(self, agent: str | None = None) -> list[str]:
        if self.outcome is not None or (agent is not None and agent != self.agent_selection):
            return []
        return list(_legal_actions(self.history))

    def is_legal(self, agent: str, action: str | None) -> bool:
        # `ZeroSumGame.is_legal` without building the list (this runs on every move)
        return (action is not None and self.outcome is None and agent == self.agent_selection
                and action in _legal_actions(self.history))

    def info_state(self, agent: str | None = None) -> str:
        """The acting seat's information state in the current hand, e.g. `Kpb`."""
        agent = agent or self.agent_selection
        return info_state(self.cards[agent], self.history)

    # -- text ----------------------------------------------------------------------------
    def parse_action(self, text: str) -> str | None:
        if text in ACTIONS:  # what extract_action and the lower-casing below make of it anyway
            return text
        action = super().parse_action(text)
        if action is not None and action[1:-1].strip().lower() in MOVES:
            return f"[{action[1:-1].strip().lower()}]"
        return action

    def _observe(self, agent: str) -> str:
        seat = SEATS[agent]
        lines = [_rules(seat, self.rounds, self.ante), *self.log[agent]]
        if self.outcome is None:
            lines += ["", (f"Your card: '{self.cards[agent]}'. Chips: Player {seat}: {self.chips[agent]}; "
                           f"Player {1 - seat}: {self.chips[OPPONENT[agent]]}. Pot: {self.pot}.")]
            if agent == self.agent_selection:
                lines.append(_moves_line(self.history))
            else:
                lines.append(f"Waiting for Player {1 - seat} to act.")
        return "\n".join(lines)

    # -- moves ---------------------------------------------------------------------------
    def _play(self, agent: str, action: str) -> None:
        # (seat numbers and opponents from `arena.game`'s dicts, not `seat` / `opponent`: this runs
        # on every move, between two `generate` calls, where each call costs a cache miss)
        move = action[1:-1]
        self.history += MOVE_LETTER[move]
        chips = self.chips
        if move in ("bet", "call"):
            chips[agent] -= 1
        self._say(f"Player {SEATS[agent]}, submitted move: '[{move}]'.")
        if self.history not in TERMINAL_HISTORIES:
            self.agent_selection = OPPONENT[agent]
            return
        first, second = self.first, OPPONENT[self.first]
        won = hand_payoff(self.history, self.cards[first], self.cards[second], self.ante)
        winner = first if won > 0 else second
        pot = self.pot
        if self.history in ("bp", "pbp"):
            reason = f"Player {SEATS[agent]} has folded."
        else:
            loser = OPPONENT[winner]
            reason = (f"Showdown: Player {SEATS[winner]}'s {self.cards[winner]} beats Player "
                      f"{SEATS[loser]}'s {self.cards[loser]}. Player {SEATS[winner]} wins pot of {pot} chips.")
        chips[winner] += pot
        self._say(f"{reason} Current scores: Player 0: '{chips['player_0']}'; Player 1: '{chips['player_1']}'")
        if self.round + 1 < self.rounds:
            self.agent_selection = self._start_hand()
            return
        self._end_game()

    def _end_game(self) -> None:
        c0, c1 = self.chips["player_0"], self.chips["player_1"]
        winner = "player_0" if c0 > c1 else "player_1" if c1 > c0 else None
        if self.scoring == "chips":
            returns = {a: float(self.chips[a]) for a in self.possible_agents}
        else:
            returns = {a: (0.0 if winner is None else 1.0 if a == winner else -1.0) for a in self.possible_agents}
        self._end(returns, winner, chips=dict(self.chips))

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """The Nash equilibrium `nash_policy(1/3)`, sampled with `rng`.

        Without `rng`, the more likely move (the passive one on a tie), deterministically.
        """
        agent = agent or self.agent_selection
        if self.done:
            raise ArenaError("the Kuhn Poker game is over; reset it before asking for a move")
        p = nash_policy()[self.info_state(agent)]
        active = bool(rng.random() < p) if rng is not None else p > 0.5
        passive_move, active_move = legal_moves(self.history)
        return f"[{active_move if active else passive_move}]"
