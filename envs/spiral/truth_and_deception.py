"""Truth and Deception, as SPIRAL evaluates on it (`spiral/TruthAndDeception-v0`).

## Description
A conversation game of two seats of one model. Both see two facts about the world, one true
and one false; the Deceiver also knows which is which. They talk for `max_turns - 1`
messages (the Deceiver first), then the Guesser names the fact it believes: it wins when it
picks the true one, the Deceiver wins when it picks the false one. TextArena's
TruthAndDeception rules and its 260 fact pairs (textarena 0.7.4, MIT licence, bundled in
`data/`); SPIRAL uses it as an out-of-distribution evaluation game. The pair and the order
of its two facts are drawn with the env's seeded generator (`self.np_random`), not Python's
global `random` as in TextArena, so an episode replays exactly from its seed.

## Roles
- `player_0`: the Deceiver; moves first.
- `player_1`: the Guesser; makes the final guess.
Protocol graph: player_0 -> player_1 -> player_0.

## Observation
TextArena's text: the seat's role and the two facts (the Deceiver's marked correct /
wrong), the conversation so far (`[Player 0] ...`), and what to do now: write a message,
or on the Guesser's last turn "Now guess which of the two facts are correct by returning
'[Fact 1]' or '[Fact 2]'" with `Available Moves: '[Fact 1]', '[Fact 2]'`.

## Actions
On a message turn any text is a move: the content of the completion's last `\\boxed{...}`
(at most `MAX_MESSAGE_CHARS` characters; empty text is an invalid move), or without a box a
bare answer of at most five words, as SPIRAL's `extract_action` reads any move. A longer
completion without a box is an invalid move: the prompt asks the model to reason step by
step and box its answer, and the whole completion, its reasoning about which fact is true
included, went to the Guesser before. On the guessing turn, `[Fact 1]` or `[Fact 2]`: the completion's
last `\\boxed{X}` (or a short bare answer) normalised to `[X]` and matched
case-insensitively (`\\boxed{fact 2}` is `[Fact 2]`). Anything else there is an invalid move.

## Rewards
+1 to the winner, -1 to the loser (TextArena's). An invalid move ends the game: -1.5 to
its author and +0.5 to the opponent with `mode="train"`, -1/+1 with `mode="eval"`.

## Episode end
The guess (move `max_turns`), or an invalid move.

## Arguments
- `max_turns`: moves in the game, both seats together, the guess included; even, at least
  2 (TextArena's TruthAndDeception-v0: 6, so five messages and the guess).
- `mode`: "train" (default) or "eval" (invalid-move rewards).
- `facts`: path of a JSON file in TextArena's format (`[{"facts": {"fact1": ..., "fact2":
  ...}, "correct_fact": "fact1"}, ...]`), recorded as its absolute path; default: the
  bundled 260 pairs.
- `render_mode`: None or "ansi".

`reset(options={"pair": 7, "swap": True})` plays fact pair 7 with its two facts in swapped
order (`env.facts` lists the two facts as shown, with which is true).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from arena.errors import ArenaError
from arena.game import SPIRAL_PROMPT, ZeroSumGame, extract_action
from arena.protocol import Role, last_boxed

FACTS_FILE = Path(__file__).parent / "data" / "truth_and_deception_facts.json"
BARE_WORDS = 5  # an unboxed message of at most this many words is a move (SPIRAL's `extract_action`)
MAX_MESSAGE_CHARS = 2000
GUESSES: tuple[str, str] = ("[Fact 1]", "[Fact 2]")
_GUESS = re.compile(r"\[\s*fact\s*([12])\s*\]", re.IGNORECASE)
ROLE_NAMES: dict[str, str] = {"player_0": "Deceiver", "player_1": "Guesser"}


@functools.cache
def load_facts(path: str | None = None) -> tuple[tuple[str, str, int], ...]:
    """The fact pairs of a TextArena facts file as `(fact1, fact2, index of the true one)`."""
    file = Path(path) if path is not None else FACTS_FILE
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        pairs = tuple((str(d["facts"]["fact1"]), str(d["facts"]["fact2"]), 0 if d["correct_fact"] == "fact1" else 1)
                      for d in data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArenaError(f"cannot read the facts file {file}: {exc}; give a JSON list in TextArena's format") from None
    if not pairs:
        raise ArenaError(f"the facts file {file} holds no fact pairs")
    return pairs


def normalise_guess(action: str | None) -> str | None:
    """`[fact 2]`, `[FACT2]` -> `[Fact 2]`; anything else unchanged."""
    if action is None:
        return None
    match = _GUESS.fullmatch(action.strip())
    return f"[Fact {match.group(1)}]" if match else action


class TruthAndDeception(ZeroSumGame):
    """Truth and Deception for two seats of one model (TextArena's game, one of SPIRAL's evaluation games)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "truth_and_deception",
                                          "is_parallelizable": False}
    roles: ClassVar[tuple[Role, ...]] = (
        Role("player_0", "the Deceiver: knows which of two facts is true and talks the Guesser towards the false one",
             "+1 when the Guesser picks the false fact, -1 otherwise; an invalid move ends the game (-1.5 / +0.5 in training, -1 / +1 in evaluation)",
             prompt_template=SPIRAL_PROMPT),
        Role("player_1", "the Guesser: talks with the Deceiver, then names the fact it believes true",
             "+1 when it picks the true fact, -1 otherwise; an invalid move ends the game (-1.5 / +0.5 in training, -1 / +1 in evaluation)",
             prompt_template=SPIRAL_PROMPT),
    )

    @classmethod
    def resolve_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A facts file as its absolute path: `facts.json` given in one folder named another
        folder's file (or none) when the episodes were replayed from there."""
        facts = kwargs.get("facts")
        if isinstance(facts, str | Path):
            return {**kwargs, "facts": str(Path(facts).expanduser().absolute())}
        return kwargs

    def __init__(self, max_turns: int = 6, mode: Literal["train", "eval"] = "train", facts: str | None = None,
                 render_mode: str | None = None):
        if int(max_turns) < 2 or int(max_turns) % 2:
            raise ArenaError(f"max_turns must be even and at least 2 (messages, then the guess), got {max_turns}")
        super().__init__(mode=mode, max_turns=max_turns, render_mode=render_mode)
        self.pairs = load_facts(facts)

    # -- state ---------------------------------------------------------------------------
    def _new_game(self, options: dict[str, Any]) -> str:
        pair = options.get("pair")
        if pair is None:
            pair = int(self.np_random.integers(len(self.pairs)))
        elif not (isinstance(pair, int) and 0 <= pair < len(self.pairs)):
            raise ArenaError(f"options['pair'] must be a fact pair index in [0, {len(self.pairs)}), got {pair!r}")
        swap = options.get("swap")
        if swap is None:
            swap = bool(self.np_random.integers(2))
        first, second, true = self.pairs[pair]
        shown = [(first, true == 0), (second, true == 1)]
        self.facts: list[tuple[str, bool]] = shown[::-1] if swap else shown
        self.pair = pair
        self.conversation: list[str] = []
        return "player_0"

    @property
    def guessing(self) -> bool:
        """True on the Guesser's last move (the guess)."""
        return self.num_moves == self.max_turns - 1

    def legal_actions(self, agent: str | None = None) -> list[str] | None:
        """The two guesses on the guessing turn; None (any message) on a message turn; [] for
        the seat not to move and after the end."""
        if self.done or (agent is not None and agent != self.agent_selection):
            return []
        return list(GUESSES) if self.guessing else None

    def is_legal(self, agent: str, action: str | None) -> bool:
        if action is None or self.done or agent != self.agent_selection:
            return False
        return action in GUESSES if self.guessing else 0 < len(action) <= MAX_MESSAGE_CHARS

    # -- text ----------------------------------------------------------------------------
    def parse_action(self, text: str) -> str | None:
        if self.guessing:
            return normalise_guess(extract_action(text))
        boxed = last_boxed(text)
        message = (boxed if boxed is not None else text).strip()
        if boxed is None and len(message.split()) > BARE_WORDS:  # reasoning, not a message to send
            return None
        return message or None

    def _observe(self, agent: str) -> str:
        seat = self.seat(agent)
        deceiver = agent == "player_0"
        lines = [f"You are Player {seat}, and you are the {ROLE_NAMES[agent]} in the 'Truth and Deception' game."]
        if deceiver:
            lines.append("You know which of the following two facts is correct:")
            lines += [f"Fact {i + 1}: {fact} ({'correct' if true else 'wrong'})" for i, (fact, true) in enumerate(self.facts)]
            lines.append("Your goal is to convince the other player to choose the incorrect fact.")
        else:
            lines.append("You need to determine which of the following two facts is correct:")
            lines += [f"Fact {i + 1}: {fact}" for i, (fact, _) in enumerate(self.facts)]
        lines += [f"You will have a conversation for {self.max_turns - 1} turns.",
                  "After that, the other player will make their guess." if deceiver else "After that, you will make your guess.",
                  "On your turn, simply type your message."]
        if self.conversation:
            lines += ["", *self.conversation]
        if not self.done and agent == self.agent_selection:
            if self.guessing:
                lines += ["", "Now guess which of the two facts are correct by returning '[Fact 1]' or '[Fact 2]'.",
                          self.moves_line(list(GUESSES))]
            else:
                lines += ["", f"Your message ({self.num_moves // 2 + 1} of {self.max_turns // 2 - (not deceiver)}):"]
        return "\n".join(lines)

    # -- moves ---------------------------------------------------------------------------
    def _play(self, agent: str, action: str) -> None:
        seat = self.seat(agent)
        if not self.guessing:
            self.conversation.append(f"[Player {seat}] {action}")
            self.agent_selection = self.opponent(agent)
            return
        picked = GUESSES.index(action)
        right = self.facts[picked][1]
        winner = agent if right else self.opponent(agent)
        self.conversation.append(f"[Player {seat}] {action}")
        self._end({winner: 1.0, self.opponent(winner): -1.0}, winner=winner, guess=action, correct=right,
                  pair=self.pair)

    def sample_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str | None:
        """A random guess on the guessing turn, else a random one of a few plain messages."""
        rng = rng if rng is not None else np.random.default_rng()
        if self.done:
            return None
        if self.guessing:
            return GUESSES[int(rng.integers(2))]
        fact = int(rng.integers(2)) + 1
        return ["I think Fact {} is correct.", "Why do you believe Fact {}?", "Fact {} sounds wrong to me."][int(rng.integers(3))].format(fact)

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """The naive strategies. The Deceiver argues for the false fact in every message (naming
        only it); the Guesser asks, then picks the fact the Deceiver named less by number (Fact 1
        on a tie), which beats that naive Deceiver every time."""
        agent = agent or self.agent_selection
        if self.done:
            raise ArenaError("the Truth and Deception game is over; reset it before asking for a move")
        if agent == "player_0":
            wrong = next(i for i, (_, true) in enumerate(self.facts) if not true) + 1
            return f"Fact {wrong} is the correct one: {self.facts[wrong - 1][0]} The other one is a common myth."
        if not self.guessing:
            return "Which fact is correct, and how do you know?"
        said = " ".join(m for m in self.conversation if m.startswith("[Player 0]"))
        named = [said.count("Fact 1"), said.count("Fact 2")]
        return GUESSES[1] if named[0] > named[1] else GUESSES[0]
