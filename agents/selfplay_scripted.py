"""The `scripted` agent: plays every role of the proposer / solver / verifier envs
(`azr/*`, `spice/Corpus-v0`) without a model, so they can be tested and shown end to end.

Roles it plays:
- AZR `proposer`: a valid task drawn from a varied set of built-in programs per task type
  (`arena.envs.absolute_zero.programs.PROGRAMS`: loops, helpers, a class, an import, set
  and dict outputs; for induction, inputs and a message for the buffered program); with
  probability `invalid` a deliberately invalid proposal instead (syntax error, banned
  import, no `f`, a raising or nondeterministic program, a bad input, a missing block), so
  the rejection reasons show up.
- AZR `solver`: an oracle. Deduction: runs the task's program on its input in the env's
  solver sandbox pool and answers the value it returned (the gold output if the sandbox
  fails); abduction: the proposer's input; induction: the proposer's program. With
  `noisy=P`, each attempt is right with probability P and otherwise a well-formed wrong
  answer (another literal; an input of the wrong type; a program returning None).
- SPICE `challenger`: builds a question from the document: a fill-the-blank MCQ (four
  words of the document, A-D) or, with probability `free`, the same question free form
  (the answer is the word); `invalid` as above (an options block of three lines, no
  answer block).
- SPICE `reasoner`: the gold answer (an oracle); with `noisy=P` right with probability P,
  else a wrong letter or word.
- `verifier` (both): `oracle` (the env's own check of the judged answer) or `yes` (always
  says correct).
- Any other env: its `heuristic_action` (as the `heuristic` agent).

Spec: `scripted`, or options after colons: `scripted:noisy=0.5`,
`scripted:noisy=0.5:verifier=yes:invalid=0.2:free=0.5` (colons, since `--agents` splits at
commas).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import numpy as np

from arena.errors import ArenaError
from arena.policy import Completion, Request

#: Proposals that validation refuses, by the rejection kind expected (cheap: none runs long).
INVALID_PROGRAMS: tuple[tuple[str, str, str], ...] = (
    ("syntax", "def f(x)\n    return x\n", "1"),
    ("banned_import", "import os\n\n\ndef f(x):\n    return os.getcwd()\n", "1"),
    ("no_entry", "def g(x):\n    return x\n", "1"),
    ("error", "def f(x):\n    return x / 0\n", "1"),
    ("nondeterministic", "def f(x):\n    return id(object()) + x\n", "1"),
    ("bad_input", "def f(x):\n    return x\n", "open('x')"),
)

_WRONG_LITERALS = ("-12345", "'wrong'", "[0, 0, 0]", "None", "{'a': 0}", "(9, 9)", "3.5", "False")


def _reply(kind: str, body: str) -> str:
    return f"<think>scripted</think>\n<answer>\n```{kind}\n{body.rstrip()}\n```\n</answer>"


def _verdict(yes: bool) -> str:
    return "<think>scripted</think>\n<answer>correct</answer>" if yes else "<think>scripted</think>\n<answer>incorrect</answer>"


def _value(text: str) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


class SelfPlayScripted:
    """Scripted proposer, oracle or noisy solver, question-writing challenger, and oracle or
    always-yes verifier for `azr/*` and `spice/*` (see the module docstring).

    Args:
        seed: seed of its random generator.
        noisy: solver / reasoner accuracy per attempt (None: an oracle, always right).
        verifier: `oracle` or `yes`.
        invalid: probability of a deliberately invalid proposal or question.
        free: probability of a free-form (not multiple-choice) SPICE question.
    """

    name = "scripted"

    def __init__(self, seed: int | None = None, noisy: float | None = None, verifier: str = "oracle",
                 invalid: float = 0.0, free: float = 0.0):
        for key, p in (("noisy", noisy), ("invalid", invalid), ("free", free)):
            if p is not None and not 0.0 <= p <= 1.0:
                raise ArenaError(f"scripted agent: {key} must be a probability in [0, 1], got {p}")
        if verifier not in ("oracle", "yes"):
            raise ArenaError(f"scripted agent: verifier must be 'oracle' or 'yes', got {verifier!r}")
        self.noisy, self.verifier, self.invalid, self.free = noisy, verifier, float(invalid), float(free)
        self.rng = np.random.default_rng(seed)
        self._outputs: dict[tuple[str, str], str] = {}

    @classmethod
    def from_spec(cls, spec: str, seed: int | None = None) -> SelfPlayScripted:
        """`scripted[:KEY=VALUE]...` with keys noisy, verifier, invalid, free."""
        name, *options = spec.strip().split(":")
        if name != "scripted":
            raise ArenaError(f"not a scripted agent spec: {spec!r}")
        kwargs: dict[str, Any] = {}
        for option in options:
            key, sep, value = option.partition("=")
            key = key.strip()
            if not sep or key not in ("noisy", "verifier", "invalid", "free"):
                raise ArenaError(f"scripted agent option {option!r}: write KEY=VALUE with KEY one of noisy, verifier, "
                                 "invalid, free (e.g. scripted:noisy=0.5:verifier=yes)")
            if key == "verifier":
                kwargs[key] = value.strip()
                continue
            try:
                kwargs[key] = float(value)
            except ValueError:
                raise ArenaError(f"scripted agent option {option!r}: {key} must be a number in [0, 1]") from None
        agent = cls(seed=seed, **kwargs)
        agent.name = spec.strip()
        return agent

    def note_for(self, env: Any) -> str | None:
        """A warning where options were given for an env that has no use for them: outside
        `azr/*` and `spice/*` the agent plays the env's heuristic moves, options aside."""
        from arena.envs.absolute_zero import AbsoluteZero
        from arena.envs.spice import SpiceCorpus

        if self.name == "scripted" or isinstance(getattr(env, "unwrapped", env), (AbsoluteZero, SpiceCorpus)):
            return None
        return (f"{self.name}: the scripted agent's options apply to azr/* and spice/* only; here it plays the "
                "heuristic agent's moves")

    # -- dispatch ----------------------------------------------------------------------------
    def act(self, requests: Sequence[Request]) -> list[Completion]:
        from arena.envs.absolute_zero import AbsoluteZero
        from arena.envs.spice import SpiceCorpus

        out = []
        for request in requests:
            env = request.env
            if env is None:
                raise ArenaError("the scripted agent needs the live env in its request")
            base = getattr(env, "unwrapped", env)
            if isinstance(base, AbsoluteZero):
                text = self._azr(base, request.role)
            elif isinstance(base, SpiceCorpus):
                text = self._spice(base, request.role)
            else:
                from arena.agents.scripted import boxed

                text = boxed(env.heuristic_action(request.role, rng=self.rng))
            out.append(Completion(text=text))
        return out

    def _right(self) -> bool:
        return self.noisy is None or bool(self.rng.random() < self.noisy)

    def _chance(self, p: float) -> bool:
        return p > 0 and bool(self.rng.random() < p)

    # -- Absolute Zero -------------------------------------------------------------------------
    def _azr(self, env: Any, role: str) -> str:
        if role == "proposer":
            if self._chance(self.invalid):
                return self._azr_invalid(env)
            return env.scripted_proposal(self.rng)
        if role == "solver":
            return self._azr_solve(env) if self._right() else self._azr_wrong(env)
        if self.verifier == "yes":
            return _verdict(True)
        chosen = env.attempts[env.chosen] if env.chosen is not None else None
        return _verdict(chosen is None or chosen.correct is not False)

    def _azr_invalid(self, env: Any) -> str:
        if env.ttype == "induction":
            if self.rng.random() < 0.5:
                return "<think>scripted</think>\n<answer>\n```input\n1\n```\n```input\n1\n```\n```message\nsame\n```\n</answer>"
            return "<think>scripted</think>\n<answer>\n```input\n1\n```\n```input\n2\n```\n</answer>"  # no message
        if self.rng.random() < 1 / (len(INVALID_PROGRAMS) + 1):
            return "<think>scripted</think>\n<answer>\n```python\ndef f(x):\n    return x\n```\n</answer>"  # no input
        _kind, program, inputs = INVALID_PROGRAMS[int(self.rng.integers(len(INVALID_PROGRAMS)))]
        return f"<think>scripted</think>\n<answer>\n```python\n{program}```\n```input\n{inputs}\n```\n</answer>"

    def _azr_solve(self, env: Any) -> str:
        task = env.task
        if env.ttype == "abduction":
            return _reply("input", task.inputs[0])
        if env.ttype == "induction":
            return _reply("python", task.program)
        key = (task.program, task.inputs[0])
        if key not in self._outputs:  # run it in the solver's sandbox pool, once per task
            output = task.outputs[0]
            try:
                result = env.pool("solver").run(task.program, [f"f({task.inputs[0]})"], env.limits)
                if result.status == "ok" and result.calls and result.calls[0].plain and result.calls[0].value:
                    output = result.calls[0].value
            except Exception:  # noqa: BLE001, S110 - a sandbox failure: answer from what the env knows
                pass
            self._outputs[key] = output
            if len(self._outputs) > 4096:
                self._outputs.pop(next(iter(self._outputs)))
        return _reply("output", self._outputs[key])

    def _azr_wrong(self, env: Any) -> str:
        task = env.task
        if env.ttype == "induction":
            return _reply("python", "def f(*args):\n    return None\n")
        if env.ttype == "abduction":  # an input of another type: f raises or returns another value
            return _reply("input", ("None", "'#'", "[[]]")[int(self.rng.integers(3))])
        ok, gold = _value(task.outputs[0])
        wrong = [t for t in _WRONG_LITERALS if not ok or _value(t)[1] != gold or type(_value(t)[1]) is not type(gold)]
        return _reply("output", wrong[int(self.rng.integers(len(wrong)))])

    # -- SPICE ---------------------------------------------------------------------------------
    def _spice(self, env: Any, role: str) -> str:
        if role == "challenger":
            if self._chance(self.invalid):
                if self.rng.random() < 0.5:
                    return ("<think>scripted</think>\n<answer>\n```question\nWhich?\n```\n```options\nA) x\nB) y\nC) z\n```\n"
                            "```answer\nA\n```\n</answer>")
                return "<think>scripted</think>\n<answer>\n```question\nWhat is it?\n```\n</answer>"
            return env.scripted_question(self.rng, free=self._chance(self.free))
        if role == "reasoner":
            if self._right():
                return f"<think>scripted</think>\n<answer>{env.gold}</answer>"
            return f"<think>scripted</think>\n<answer>{self._spice_wrong(env)}</answer>"
        if self.verifier == "yes":
            return _verdict(True)
        return _verdict(env.correct[env.chosen] if env.chosen is not None else True)

    def _spice_wrong(self, env: Any) -> str:
        from arena.envs.spice.answers import LETTERS, equivalent

        if env.options:
            candidates = [c for c in LETTERS if not equivalent(c, env.gold, env.options)]
        else:
            candidates = [w for w in ("banana", "purple", "seventeen", "nothing") if not equivalent(w, env.gold)]
        return candidates[int(self.rng.integers(len(candidates)))]
