"""Simple Negotiation, as SPIRAL plays it (`spiral/SimpleNegotiation-v0`).

## Description
Two seats of one model trade five resources (Wheat, Wood, Sheep, Brick, Ore). Each seat
starts with 5-25 units of each and values each resource privately at its base value
(5, 10, 15, 25, 40) +-20% (at least 5, at most 40), all drawn with `self.np_random` as in
TextArena's SimpleNegotiation. Seats alternate; each turn a seat makes an offer, or
answers the pending one. After `max_turns` turns the seat whose inventory value (at its
own prices) grew more wins. The trade rules are plain functions (`parse_offer`,
`holds`, `trade`, `inventory_value`); the env renders them to text and parses moves.

## Roles
- `player_0`: moves first.
- `player_1`: moves second.
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's text: the rules, the seat's quantities and private values, the public log
(offers, acceptances, refusals), the turn count, the seat's inventory value and its
change, the pending offer if any, and the moves allowed now.

## Actions
- `[Offer: 2 Wheat, 1 Ore -> 3 Sheep]`: offer the resources left of `->` (which the seat
  must hold) for those on the right. Items are `<quantity> <Resource>` (quantity 1 to
  999999, names case-insensitive, plurals such as `Sheeps` accepted), separated by commas
  or `and`; `Offer:` may be written without the colon. A resource may not appear on both
  sides. A new offer replaces (and refuses) a pending one.
- `[Accept]`: accept the pending offer; legal only when an offer is pending and the seat
  holds the resources it asks for. The trade is carried out at once.
- `[Deny]`: refuse the pending offer; legal only when an offer is pending.
The completion's last `\\boxed{X}` (or a short bare answer) is normalised to `[X]`.
Anything else (free text, an offer of resources the seat lacks, an answer without a
pending offer) is an invalid move. SPIRAL's parser likewise accepts only regex-built
offers, `[Accept]` and `[Deny]`; since offers are unbounded, `legal_actions` is None and
`is_legal` checks a move directly.

## Rewards
With `change_i = value_i(inventory now) - value_i(inventory at start)`: +1 to the seat
with the larger change, -1 to the other, 0 to both when equal (TextArena's rule). An
invalid move ends the game: -1.5 to its author and +0.5 to the opponent with
`mode="train"`, -1/+1 with `mode="eval"`.

## Episode end
After `max_turns` turns (the game's length, scored as above, not a draw), or an invalid
move. TextArena checks its turn limit before it counts the turn, so its `max_turns=10`
plays 11 moves, Player 0 both first and last; here the game is `max_turns` moves, each
seat making as many (player_1 last when the number is even).

## Arguments
- `max_turns`: game length in turns, both seats together (SPIRAL: 10).
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `render_mode`: None or "ansi".
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Literal

import numpy as np

from arena.game import ZeroSumGame

RESOURCES: tuple[str, ...] = ("Wheat", "Wood", "Sheep", "Brick", "Ore")
BASE_VALUES: dict[str, int] = {"Wheat": 5, "Wood": 10, "Sheep": 15, "Brick": 25, "Ore": 40}
#: Longest action text that is parsed at all (longer ones are invalid).
MAX_ACTION_CHARS = 1000

Bundle = dict[str, int]  # resource -> positive quantity
_NAMES = {name.lower(): name for name in RESOURCES} | {name.lower() + "s": name for name in RESOURCES}
_ITEM = r"[0-9]{1,6}[ \t]+[A-Za-z]+"
_LIST = rf"{_ITEM}(?:[ \t]*(?:,[ \t]*(?:and[ \t]+)?|and[ \t]+){_ITEM})*"
_OFFER = re.compile(rf"\[[ \t]*Offer[ \t]*:?[ \t]*({_LIST})[ \t]*->[ \t]*({_LIST})[ \t]*\.?[ \t]*\]", re.IGNORECASE | re.ASCII)
_ITEM_RE = re.compile(r"([0-9]{1,6})[ \t]+([A-Za-z]+)", re.ASCII)


# -- trade rules --------------------------------------------------------------------------
def parse_bundle(text: str) -> Bundle | None:
    """`"2 Wheat, 1 Ore"` -> `{"Wheat": 2, "Ore": 1}`; None on an unknown name or a zero."""
    bundle: Bundle = {}
    for qty, name in _ITEM_RE.findall(text):
        resource = _NAMES.get(name.lower())
        if resource is None or int(qty) == 0:
            return None
        bundle[resource] = bundle.get(resource, 0) + int(qty)
    return bundle or None


def parse_offer(action: str) -> tuple[Bundle, Bundle] | None:
    """`"[Offer: 2 Wheat -> 1 Ore]"` -> `({"Wheat": 2}, {"Ore": 1})` (given, asked), else None.

    The whole action must be one offer; a resource on both sides gives None.
    """
    if len(action) > MAX_ACTION_CHARS:
        return None
    match = _OFFER.fullmatch(action.strip())
    if match is None:
        return None
    give, get = parse_bundle(match.group(1)), parse_bundle(match.group(2))
    if give is None or get is None or set(give) & set(get):
        return None
    return give, get


def holds(inventory: Bundle, bundle: Bundle) -> bool:
    """True when `inventory` has at least `bundle` of every resource."""
    return all(inventory.get(r, 0) >= q for r, q in bundle.items())


def trade(giver: Bundle, taker: Bundle, give: Bundle, get: Bundle) -> None:
    """Carry out an accepted offer in place: `giver` hands `give` to `taker` for `get`."""
    for r, q in give.items():
        giver[r] -= q
        taker[r] += q
    for r, q in get.items():
        taker[r] -= q
        giver[r] += q


def inventory_value(inventory: Bundle, values: dict[str, int]) -> int:
    """sum_r quantity_r * value_r."""
    return sum(q * values[r] for r, q in inventory.items())


def bundle_text(bundle: Bundle) -> str:
    return ", ".join(f"{q} {r}" for r, q in bundle.items())


def offer_text(give: Bundle, get: Bundle) -> str:
    return f"[Offer: {bundle_text(give)} -> {bundle_text(get)}]"


def market_trades() -> list[tuple[str, int, str, int]]:
    """Every (give, qty, get, qty) of two different resources at equal base value, smallest."""
    out = []
    for a in RESOURCES:
        for b in RESOURCES:
            if a != b:
                g = math.gcd(BASE_VALUES[a], BASE_VALUES[b])
                out.append((a, BASE_VALUES[b] // g, b, BASE_VALUES[a] // g))
    return out


MARKET_TRADES = market_trades()


# -- the env ------------------------------------------------------------------------------
class SimpleNegotiation(ZeroSumGame):
    """Simple Negotiation for two seats of one model (SPIRAL's SimpleNegotiation-v1)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "simple_negotiation", "is_parallelizable": False}

    def __init__(self, max_turns: int = 10, mode: Literal["train", "eval"] = "train", render_mode: str | None = None):
        super().__init__(mode=mode, max_turns=max_turns, render_mode=render_mode)

    def _new_game(self, options: dict[str, Any]) -> str:
        rng = self.np_random
        self.inventory: dict[str, Bundle] = {}
        self.values: dict[str, dict[str, int]] = {}
        for a in self.possible_agents:
            self.inventory[a] = {r: int(rng.integers(5, 26)) for r in RESOURCES}
        for a in self.possible_agents:
            self.values[a] = {}
            for r in RESOURCES:
                base = BASE_VALUES[r]
                spread = int(0.2 * base)
                self.values[a][r] = int(rng.integers(max(base - spread, 5), min(base + spread, 40) + 1))
        self.initial_value = {a: self.value(a) for a in self.possible_agents}
        self.offer: dict[str, Any] | None = None  # {"from": agent, "give": Bundle, "get": Bundle}
        self.log: list[str] = []
        self.offers_made: list[tuple[str, str]] = []  # (seat, offer text), in order
        return "player_0"

    def value(self, agent: str) -> int:
        """`agent`'s inventory value at its own prices."""
        return inventory_value(self.inventory[agent], self.values[agent])

    def change(self, agent: str) -> int:
        return self.value(agent) - self.initial_value[agent]

    # -- legality ------------------------------------------------------------------------
    def is_legal(self, agent: str, action: str | None) -> bool:
        if action is None or self.done or agent != self.agent_selection:
            return False
        word = action[1:-1].strip().lower()
        if word in ("accept", "deny"):
            if self.offer is None or self.offer["from"] == agent:
                return False
            return word == "deny" or (holds(self.inventory[agent], self.offer["get"])
                                      and holds(self.inventory[self.offer["from"]], self.offer["give"]))
        offer = parse_offer(action)
        return offer is not None and holds(self.inventory[agent], offer[0])

    # -- text ----------------------------------------------------------------------------
    def _observe(self, agent: str) -> str:
        seat = self.seat(agent)
        rows = "\n".join(f"\t+ {f'[{r}]':<8}  Qty: {self.inventory[agent][r]:<2}   Value: {self.values[agent][r]}"
                         for r in RESOURCES)
        lines = [
            f"You are Player {seat} in the Negotiation Game.",
            "You have some resources, and your task is to trade such that the total value of your resources increases.",
            f"The resources and associated values you currently have are:\n{rows}",
            "At each turn, you make a trade offer or answer the offer you received.",
            "Use the following special tokens for actions:",
            "  - '[Offer: 3 Sheep, 2 Ore -> 5 Brick, 1 Wood]': [Offer: Offered Resources -> Requested Resources]",
            "  - '[Accept]': To accept an incoming offer.",
            "  - '[Deny]': To deny an incoming offer.",
            (f"The game lasts for {self.max_turns} turns in total. The player whose total resource value "
             "increased more wins."),
        ]
        if self.log:
            lines += ["", *self.log]
        lines += ["", f"Your inventory value: {self.value(agent)} (start {self.initial_value[agent]}, change {self.change(agent):+d})."]
        if self.done:
            return "\n".join(lines)
        lines.append(f"Turn {self.num_moves + 1} of {self.max_turns}.")
        if agent != self.agent_selection:
            lines.append(f"Waiting for Player {1 - seat} to act.")
        elif self.offer is not None:
            lines.append(f"Player {1 - seat} offers you: {bundle_text(self.offer['give'])} for your "
                         f"{bundle_text(self.offer['get'])}.")
            lines.append(self.moves_line(["[Accept]", "[Deny]", "[Offer: <your resources> -> <their resources>]"]))
        else:
            lines.append("No offer is pending.")
            lines.append(self.moves_line(["[Offer: <your resources> -> <their resources>]"]))
        return "\n".join(lines)

    # -- moves ---------------------------------------------------------------------------
    def _play(self, agent: str, action: str) -> None:
        seat, word = self.seat(agent), action[1:-1].strip().lower()
        if word == "accept":
            offer = self.offer
            trade(self.inventory[offer["from"]], self.inventory[agent], offer["give"], offer["get"])
            self.log.append(f"Player {seat} accepted the trade offer from Player {1 - seat}.")
            self.offer = None
        elif word == "deny":
            self.log.append(f"Player {seat} rejected the trade offer.")
            self.offer = None
        else:
            if self.offer is not None:
                self.log.append(f"Player {seat} rejected the trade offer.")
            give, get = parse_offer(action)
            self.offer = {"from": agent, "give": give, "get": get}
            self.offers_made.append((agent, offer_text(give, get)))
            self.log.append(f"Player {seat} made the following offer to Player {1 - seat}: "
                            f"Offered items: {bundle_text(give)} -> Requested items: {bundle_text(get)}")
        self.agent_selection = self.opponent(agent)

    def _turn_cap(self) -> None:
        """The game's end after `max_turns` turns: the larger change in value wins."""
        changes = {a: self.change(a) for a in self.possible_agents}
        c0, c1 = changes["player_0"], changes["player_1"]
        winner = "player_0" if c0 > c1 else "player_1" if c1 > c0 else None
        returns = {a: (0.0 if winner is None else 1.0 if a == winner else -1.0) for a in self.possible_agents}
        self._end(returns, winner, value_change=changes)

    def sample_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """A random valid move: with an offer pending, `[Accept]` (when both sides can pay),
        `[Deny]` or a new offer, equally likely; else an offer of 1-2 held resources (1-3
        units each, at most what is held) for 1-2 others (1-3 units each)."""
        agent = agent or self.agent_selection
        rng = rng if rng is not None else np.random.default_rng()
        if self.offer is not None and self.offer["from"] != agent:
            answers = [a for a in ("[Accept]", "[Deny]") if self.is_legal(agent, a)] + ["offer"]
            answer = answers[int(rng.integers(len(answers)))]
            if answer != "offer":
                return answer
        inv = self.inventory[agent]
        held = [r for r in RESOURCES if inv[r] > 0]
        give_names = [held[i] for i in sorted(rng.choice(len(held), size=min(len(held), int(rng.integers(1, 3))), replace=False))]
        others = [r for r in RESOURCES if r not in give_names]
        get_names = [others[i] for i in sorted(rng.choice(len(others), size=int(rng.integers(1, 3)), replace=False))]
        give = {r: int(rng.integers(1, min(inv[r], 3) + 1)) for r in give_names}
        get = {r: int(rng.integers(1, 4)) for r in get_names}
        return offer_text(give, get)

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """A value rule using only the seat's own prices.

        Accept a pending offer that raises the seat's inventory value and that it can pay.
        Otherwise offer the market trade (equal base values, e.g. 8 Wheat -> 1 Ore) that
        raises its value most, `q_b v_b - q_a v_a`, among those it can pay and has not offered
        yet in this game (all of them once each has been offered; ties broken by `rng`, else
        the first); refuse a pending offer when no trade gains; with nothing
        pending and no gaining trade, offer 1 unit of its least valued held resource for
        1 of its most valued other one.
        """
        agent = agent or self.agent_selection
        inv, values = self.inventory[agent], self.values[agent]
        if self.offer is not None and self.offer["from"] != agent:
            give, get = self.offer["give"], self.offer["get"]  # the seat receives `give`, pays `get`
            if holds(inv, get) and inventory_value(give, values) > inventory_value(get, values):
                return "[Accept]"
        gains = [(q_b * values[b] - q_a * values[a], a, q_a, b, q_b)
                 for a, q_a, b, q_b in MARKET_TRADES if inv[a] >= q_a]
        gains = [g for g in gains if g[0] > 0]
        made = {text for seat, text in self.offers_made if seat == agent}
        gains = [g for g in gains if offer_text({g[1]: g[2]}, {g[3]: g[4]}) not in made] or gains
        if gains:
            best = max(g[0] for g in gains)
            top = [g for g in gains if g[0] == best]
            _, a, q_a, b, q_b = top[int(rng.integers(len(top)))] if rng is not None else top[0]
            return offer_text({a: q_a}, {b: q_b})
        if self.offer is not None and self.offer["from"] != agent:
            return "[Deny]"
        held = [r for r in RESOURCES if inv[r] > 0]
        a = min(held, key=lambda r: values[r])
        b = max((r for r in RESOURCES if r != a), key=lambda r: values[r])
        return offer_text({a: 1}, {b: 1})
