"""SPICE (corpus self-play): a challenger writes questions from a document; a reasoner
answers them without it; a verifier judges one answer against the gold.

## Description
Each episode draws one document from the corpus (the env's seeded generator). The
challenger reads it and writes a question with a gold answer: a multiple-choice question
with 4 options (A-D) or a free-form one (a number, an expression or a short string). The
reasoner answers `n` times without the document (each attempt a turn, the same prompt);
the verifier sees the question, the gold answer and one of the answers (drawn from the
env's generator) and says whether it is correct. Id: `spice/Corpus-v0`.

## Roles
- `challenger`: reads the document, writes a question and its gold answer.
- `reasoner`: answers the question without the document; `n` attempts.
- `verifier`: judges one reasoner answer against the gold answer.

## Observation
R1-style prompts (`<think>...</think><answer>...</answer>`). The challenger sees the
document and the answer format; the reasoner the question (and options); the verifier
the question, the gold answer and the answer to judge. A role that is not acting sees a
one-line waiting text.

## Actions
Free text. Challenger: in `<answer>`, a ```` ```question ```` block, for MCQ an
```` ```options ```` block with four lines `A) ...` to `D) ...`, and an
```` ```answer ```` block (the letter, or the free-form answer, at most 200 characters).
Reasoner: the content of `<answer>...</answer>`. Verifier: `correct` or `incorrect`.

## Rewards
Given when the episode ends; each reasoner attempt's turn carries its own reward in
`turn_credit`.
- Reasoner, per attempt: 1 when its answer is equivalent to the gold, else 0 (MCQ: the
  letter in any common spelling, or the option's text; free form: numbers in any form
  (`1/2`, `0.5`, `5e-1`, `50%`), expressions (math-verify and SymPy on plain text,
  parsed without `eval`: both sides are model-written; equal when neither says not, so an
  ambiguous `1/2x` matches no reading; never across different words, units or names, a
  relation on one side, or dotted numbers), else normalised strings; `\\text{}`, full-width
  and zero-width characters read as plain text). The episode return is the mean over
  attempts.
- Challenger: `exp(-(p(1-p) - 0.25)^2 / 0.02)` with p the reasoner pass rate (1 at
  p = 0.5, about 0.04 at p = 0 or 1); an invalid or unparsable task gets -0.1.
- Verifier: 1 when its verdict agrees with the equivalence check, 0 when not, -1 when
  unparsable.

## Episode end
After the verifier's turn, or right after an invalid task (outcome `invalid_task` with
the reason).

## Arguments
- `corpus` (None: the bundled paragraphs of the Python standard library's documentation;
  a JSONL/text file or folder, recorded as its absolute path so that episodes replay from
  any folder; `hf:NAME` for a Hugging Face dataset when online). Text is cut into
  documents of 200 to 1,500 characters at paragraphs, then lines and sentences; a JSONL
  record is one document (cut the same way over 1,500): `arena.envs.spice.corpus`.
- `n` (8): reasoner attempts. `max_turns` (at least n + 2), `render_mode`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from arena.envs.absolute_zero.prompts import SYSTEM_PROMPT
from arena.envs.absolute_zero.tasks import answer_text, parse_verdict
from arena.envs.spice.answers import LETTERS, equivalent, letter, normalise
from arena.envs.spice.corpus import load_corpus

from arena.errors import ArenaError
from arena.protocol import ArenaEnv, Role

INVALID_TASK_REWARD = -0.1
_BLOCK = re.compile(r"```[ \t]*+(question|options|answer)[ \t]*+\n?(.*?)```", re.DOTALL | re.IGNORECASE)  # possessive: linear
_OPTION = re.compile(r"^\(?([A-D])\s*[).:]\s*(\S.*)$")


def challenger_reward(p: float) -> float:
    """SPICE's variance reward: `exp(-(p(1-p) - 0.25)^2 / 0.02)`."""
    return math.exp(-((p * (1 - p) - 0.25) ** 2) / 0.02)


def parse_task(completion: str) -> tuple[str, list[str] | None, str] | str:
    """(question, options or None, gold) from a challenger's completion, or the reason it
    is not a task."""
    answer = answer_text(completion)
    if answer is None:
        return "no <answer>...</answer> block"
    blocks: dict[str, list[str]] = {"question": [], "options": [], "answer": []}
    for label, body in _BLOCK.findall(answer):
        blocks[label.lower()].append(body.strip())
    if len(blocks["question"]) != 1 or not blocks["question"][0] or len(blocks["answer"]) != 1 or len(blocks["options"]) > 1:
        return "need one ```question block, one ```answer block and at most one ```options block"
    question, gold = blocks["question"][0], blocks["answer"][0]
    if not gold or len(gold) > 200:
        return "the gold answer must be 1 to 200 characters"
    if not blocks["options"]:
        return question, None, gold
    lines = [ln.strip() for ln in blocks["options"][0].splitlines() if ln.strip()]
    parsed = [_OPTION.match(ln) for ln in lines]
    if len(lines) != 4 or not all(parsed) or [m.group(1) for m in parsed if m] != list(LETTERS):
        return "the options block needs exactly four lines A) to D)"
    options = [m.group(2).strip() for m in parsed if m]
    if len({normalise(o) for o in options}) < 4:  # `Through` and `through`: a reasoner naming it was marked by the first
        return "the four options must differ (two read the same)"
    if letter(gold, options) is None:
        return "the gold answer of a multiple-choice question must name one of A-D"
    return question, options, gold


class SpiceCorpus(ArenaEnv):
    """SPICE: challenger questions from a corpus document, reasoner answers, verifier judges."""

    roles = (
        Role("challenger", "reads a document and writes a question with its gold answer",
             "exp(-(p(1-p) - 0.25)^2 / 0.02), p the reasoner pass rate; -0.1 invalid task", system_prompt=SYSTEM_PROMPT),
        Role("reasoner", "answers the question without the document, n attempts",
             "per attempt: 1 equivalent to the gold answer, else 0", system_prompt=SYSTEM_PROMPT),
        Role("verifier", "judges one reasoner answer against the gold answer",
             "1 agrees with the answer check, 0 disagrees, -1 format failure", system_prompt=SYSTEM_PROMPT),
    )
    edges = (("corpus", "challenger"), ("challenger", "reasoner"), ("reasoner", "verifier"), ("challenger", "verifier"))
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "spice_corpus", "is_parallelizable": False}
    credits_each_turn: ClassVar[bool] = True  # `turn_credit`: each attempt its own reward
    # Dr. GRPO's per-role baseline for the roles whose prompts repeat only by chance: the
    # challenger's document is drawn with replacement (74 documents and 128 episodes a step:
    # most are drawn 2-5 times), and per-document groups gave two invalid tasks on one
    # document advantage 0 (no penalty) and the same two on two documents a negative one
    grpo_pooled_roles: ClassVar[tuple[str, ...]] = ("challenger", "verifier")

    @classmethod
    def resolve_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """A local corpus as its absolute path (`docs.jsonl` given in one folder and replayed
        from another named no file)."""
        corpus = kwargs.get("corpus")
        if isinstance(corpus, str) and corpus not in ("", "default") and not corpus.startswith("hf:"):
            return {**kwargs, "corpus": str(Path(corpus).expanduser().absolute())}
        return kwargs

    def __init__(self, corpus: str | None = None, n: int = 8, max_turns: int | None = None, render_mode: str | None = None):
        if n < 1:
            raise ArenaError(f"n must be >= 1, got {n}")
        if max_turns is not None and max_turns < n + 2:
            raise ArenaError(f"max_turns must be at least n + 2 = {n + 2}")
        super().__init__(render_mode=render_mode, max_turns=max_turns or n + 2)
        self.n = int(n)
        self.documents = load_corpus(corpus)
        self.turn_credit: list[dict[str, Any]] = []

    @staticmethod
    def summarize(episodes: Any) -> dict[str, Any]:
        """The play summary of this env (`summarize_spice`); `arena play` prints it."""
        return summarize_spice(episodes)

    def _reset(self, options: dict[str, Any]) -> str:
        self.doc_index = int(self.np_random.integers(len(self.documents)))
        self.document = self.documents[self.doc_index]
        self.question: str | None = None
        self.options: list[str] | None = None
        self.gold: str | None = None
        self.answers: list[str | None] = []
        self.correct: list[bool] = []
        self.chosen: int | None = None
        self.turn_credit = []
        return "challenger"

    def _question_text(self) -> str:
        assert self.question is not None
        opts = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(self.options)) if self.options else ""
        return self.question + (f"\n\n{opts}" if opts else "")

    def _observe(self, agent: str) -> str:
        if self.outcome is not None:
            return f"The episode is over ({self.outcome['reason']})."
        if agent != self.agent_selection:
            return f"Waiting: the {self.agent_selection} acts now."
        if agent == "challenger":
            return ("## Task: write a question about a document\nRead the document and write one question that a "
                    "careful reader of it can answer, and its answer. Either a multiple-choice question with four "
                    "options A-D (the answer is the letter), or a free-form question whose answer is a number, an "
                    "expression or a short phrase. The solver will not see the document. Your score is highest when "
                    "about half of the solver's attempts are right.\n\n### Document\n" + self.document +
                    "\n\n### Answer format\n<answer>\n```question\n...\n```\n```options\nA) ...\nB) ...\nC) ...\nD) ...\n"
                    "```\n```answer\n...\n```\n</answer>\n(leave out the options block for a free-form question)\n")
        if agent == "reasoner":
            form = "the letter of the right option" if self.options else "the answer alone"
            return f"## Question\n{self._question_text()}\n\nPut {form} in <answer>...</answer>.\n"
        shown = self.answers[self.chosen] if self.chosen is not None else None
        return (f"## Task: judge an answer\n### Question\n{self._question_text()}\n\n### Gold answer\n{self.gold}\n\n"
                f"### The answer\n{shown if shown is not None else '(no answer given)'}\n\n"
                "Reply <answer>correct</answer> if the answer means the same as the gold answer, else "
                "<answer>incorrect</answer>.\n")

    def _step(self, agent: str, text: str) -> None:
        if agent == "challenger":
            task = parse_task(text)
            if isinstance(task, str):
                self.turn_info = {"action": answer_text(text), "legal": False, "reason": task}
                self.turn_credit.append({"reward": INVALID_TASK_REWARD})
                self._finish({"challenger": INVALID_TASK_REWARD}, reason="invalid_task", detail=task)
                return
            self.question, self.options, self.gold = task
            self.turn_info = {"action": answer_text(text), "legal": True, "kind": "mcq" if self.options else "free"}
            self.turn_credit.append({})
            self.agent_selection = "reasoner"
        elif agent == "reasoner":
            answer = answer_text(text)
            right = answer is not None and equivalent(answer, self.gold or "", self.options)
            self.answers.append(answer)
            self.correct.append(right)
            self.turn_info = {"action": answer, "legal": answer is not None, "correct": right}
            self.turn_credit.append({"reward": 1.0 if right else 0.0})
            if len(self.answers) >= self.n:
                self.chosen = int(self.np_random.integers(len(self.answers)))
                self.agent_selection = "verifier"
        else:
            verdict = parse_verdict(text)
            truth = self.correct[self.chosen or 0]
            verifier = -1.0 if verdict is None else 1.0 if verdict == truth else 0.0
            self.turn_info = {"action": None if verdict is None else ("correct" if verdict else "incorrect"),
                              "legal": verdict is not None}
            self.turn_credit.append({"reward": verifier})
            p = sum(self.correct) / len(self.correct)
            challenger = challenger_reward(p)
            self.turn_credit[0] = {"reward": challenger}
            self._finish({"challenger": challenger, "reasoner": p, "verifier": verifier}, reason="verified", pass_rate=p,
                         document=self.doc_index, verifier_agrees=None if verdict is None else verdict == truth)

    # -- scripted moves ------------------------------------------------------------------
    def _mcq(self, rng: np.random.Generator) -> str:
        return self.scripted_question(rng)

    def scripted_question(self, rng: np.random.Generator, free: bool = False) -> str:
        """A fill-the-blank question built from the document: a sentence of it with one of
        its words blanked, and as options that word and three other words of the document
        (the answer is the letter); `free=True`: no options, the answer is the word."""
        seen: dict[str, str] = {}
        for w in re.findall(r"[A-Za-z]{5,}", self.document):
            seen.setdefault(w.lower(), w)  # one spelling of each word: options that read the same are refused
        words = list(seen.values())
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", self.document) if any(w in s for w in words)]
        sentence = sentences[int(rng.integers(len(sentences)))] if sentences else self.document[:200]
        inside = [w for w in words if re.search(rf"\b{w}\b", sentence)] or words[:1] or ["python"]
        target = inside[int(rng.integers(len(inside)))]
        others = [w for w in words if w.lower() != target.lower()] + ["banana", "orange", "purple"]
        picks = [others[int(i)] for i in rng.choice(len(others), size=3, replace=False)]
        options = [target, *picks]
        order = [int(i) for i in rng.permutation(4)]
        shown = [options[i] for i in order]
        gold = LETTERS[order.index(0)]
        blank = re.sub(rf"\b{target}\b", "____", sentence.replace("`", "'"), count=1)[:400]
        opts = "\n".join(f"{LETTERS[i]}) {w}" for i, w in enumerate(shown))
        if free:
            return (f"<think>scripted</think>\n<answer>\n```question\nWhich word fills the blank? \"{blank}\"\n```\n"
                    f"```answer\n{target}\n```\n</answer>")
        return (f"<think>scripted</think>\n<answer>\n```question\nWhich word fills the blank? \"{blank}\"\n```\n"
                f"```options\n{opts}\n```\n```answer\n{gold}\n```\n</answer>")

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """Challenger: a fill-the-blank MCQ built from the document; reasoner: the gold
        answer (an oracle); verifier: the truth."""
        agent = agent or self.agent_selection
        rng = rng if rng is not None else np.random.default_rng()
        if agent == "challenger":
            return self._mcq(rng)
        if agent == "reasoner":
            return f"<answer>{self.gold}</answer>"
        truth = self.correct[self.chosen] if self.chosen is not None else True
        return "<answer>correct</answer>" if truth else "<answer>incorrect</answer>"

    def sample_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str | None:
        """A random well-formed move: a scripted MCQ; a random letter; a random verdict."""
        agent = agent or self.agent_selection
        rng = rng if rng is not None else np.random.default_rng()
        if self.done:
            return None
        if agent == "challenger":
            return self._mcq(rng)
        if agent == "reasoner":
            return f"<answer>{LETTERS[int(rng.integers(4))]}</answer>"
        return "<answer>correct</answer>" if rng.random() < 0.5 else "<answer>incorrect</answer>"


def summarize_spice(episodes: Any) -> dict[str, Any]:
    """Reasoner solve rate, challenger reward, verifier accuracy and why tasks were refused,
    over played episodes: `episodes`, `valid_tasks`, `by_kind` (`mcq`, `free`, and `all`:
    episodes, solve_rate (the mean pass rate), mean_challenger_reward, verifier_accuracy;
    None when nothing was measured) and `rejections` (per reason: count)."""
    out: dict[str, Any] = {"episodes": 0, "valid_tasks": 0, "by_kind": {}, "rejections": {}}
    raw: dict[str, dict[str, Any]] = {}
    for ep in episodes:
        outcome = ep.outcome or {}
        out["episodes"] += 1
        if outcome.get("reason") == "invalid_task":
            rej = out["rejections"].setdefault(outcome.get("detail", "?"), {"count": 0})
            rej["count"] += 1
            continue
        if outcome.get("reason") != "verified":
            continue
        out["valid_tasks"] += 1
        kind = next((t.info.get("kind") for t in ep.turns if t.role == "challenger"), None) or "?"
        for key in (kind, "all"):
            acc = raw.setdefault(key, {"episodes": 0, "solve": [], "challenger": [], "verifier": []})
            acc["episodes"] += 1
            acc["solve"].append(float(outcome.get("pass_rate", 0.0)))
            acc["challenger"].append(ep.rewards.get("challenger", 0.0))
            if outcome.get("verifier_agrees") is not None:
                acc["verifier"].append(1.0 if outcome["verifier_agrees"] else 0.0)
    names = {"solve": "solve_rate", "challenger": "mean_challenger_reward", "verifier": "verifier_accuracy"}
    for key in sorted(raw, key=lambda k: (k == "all", k)):
        acc = raw[key]
        row: dict[str, Any] = {"episodes": acc["episodes"]}
        for field, name in names.items():
            row[name] = sum(acc[field]) / len(acc[field]) if acc[field] else None
        out["by_kind"][key] = row
    out["rejections"] = dict(sorted(out["rejections"].items(), key=lambda kv: -kv[1]["count"]))
    return out
