"""Absolute Zero (AZR): one model proposes Python tasks, solves them, and judges answers.

## Description
Tasks are (program `f`, input, output) triplets checked by running code in the sandbox.
Three task types: **deduction** (see f and an input, give the output), **abduction** (see
f and an output, give any input that produces it) and **induction** (see a message and
half of f's input/output pairs, write f; it must reproduce the hidden half). Ids:
`azr/Deduction-v0`, `azr/Abduction-v0`, `azr/Induction-v0`, and `azr/Mixed-v0` (the type
drawn per episode from the env's seeded generator).

An episode: the proposer sees K reference triplets from the task buffer of its type (for
induction: one program from the deduction and abduction buffers) and proposes a task;
`validate_proposal` checks it and computes the gold outputs by execution; a valid task
enters the buffer (its lineage, the references shown, goes into the networkx graph); the
solver answers it `n` times (each attempt a turn, the same prompt); the verifier sees the
task and one of the answers (drawn from the env's generator) and says whether it is
correct.

## Roles
- `proposer`: writes a program and an input (deduction, abduction), or inputs and a
  message for a given program (induction).
- `solver`: answers the task; `n` attempts.
- `verifier`: judges one solver answer: correct or incorrect.

## Observation
R1-style prompts (the system prompt asks for `<think>...</think><answer>...</answer>`)
with AZR's answer blocks: ```` ```python ````, ```` ```input ````, ```` ```output ````,
```` ```message ````. The propose prompt states the rules (entry function `f`,
determinism, time limit, banned imports, literal inputs, builtin outputs), the evaluation
criteria of its task type, and the references as `<snippet_i>` blocks. A role that is not
acting sees a one-line waiting text.

## Actions
Free text (`legal_actions` is None). The answer is the last `<answer>...</answer>` block
of the completion; inside it, fenced blocks labelled `python` (or `py`), `input`,
`output`, `message`, tags and labels in any case, whitespace and indentation tolerated.
An unlabelled fence, several blocks where one is asked, or no answer block is a format
failure: nothing is guessed. Inputs are argument lists of Python literals
(`'Hello world'`, `[1, 2], 3`); the call sent to the sandbox is rebuilt from the parsed
literals. The verifier answers `correct` or `incorrect`.

## Rewards
All rewards are given when the episode ends; each solver attempt's turn carries its own
reward and infra flag in `turn_credit` (the rollout credits turns from it).
- Solver, per attempt: 1 correct; -0.5 well formatted but wrong; -1 format failure.
  Deduction: the ```output block and the gold output are compared as Python values
  (`ast.literal_eval`), never as strings. Abduction: f(answer) runs in the solver's
  sandbox pool and its value is compared with the gold output on the host; any input
  that gives it is right. f(answer) runs twice (the second run padded, in the
  `gold-recheck` pool): two results make the proposal invalid after all (below). Induction: the written f runs on the hidden inputs (solver
  pool) and must reproduce every hidden output. The solver's episode return is the mean
  over its attempts.
- Proposer: learnability `1 - r` when 0 < r < 1, else 0, with r the solver's accuracy
  over the n attempts; an invalid proposal -1.
- Verifier: 1 when its verdict agrees with the execution check, 0 when not, -1 when the
  verdict is unparsable.
- A sandbox `infra` result (the sandbox failed, not the program) never scores: the
  turn's credit says `infra: True` and the trainer masks it (the proposer's too when
  every attempt was infra; the verifier's when its answer was).

## Episode end
After the verifier's turn; or right after the proposer's turn when the proposal is invalid
(outcome `invalid_proposal` with the `rejection` kind and the reason, also counted in
`env.rejections`); or at the abduction attempt whose f(answer) gave two results (the same
outcome, rejection `nondeterministic`, detail `found when solved: ...`: the proposer -1,
the attempts so far masked as infra, the task kept out of every buffer).

## Arguments
- `task_type`: `deduction`, `abduction`, `induction` or `mixed`.
- `n` (8): solver attempts. `k` (6): reference triplets in a propose prompt.
  `num_inputs` (10): most inputs of an induction proposal (at least 2 distinct).
- `single_function` (False): refuse helper functions and classes (AZR's
  `reject_multiple_functions`). `timeout` (5.0): seconds per sandbox job. An output's
  repr and a job's printed text are limited to 10,000 characters (`MAX_OUTPUT_CHARS`; more
  is an `output_limit` rejection or a wrong answer): no prompt shows more, and a hostile
  result line the host reads is then under 1 MB.
- `sandbox` (`auto`: docker when the engine and image are there, else bubblewrap;
  `docker`; `process`), `sandbox_workers` (1 per pool), `sandbox_config`
  (`arena.sandbox.SandboxConfig` fields). Solver answers and gold programs run in
  separate pools (trust domains; the second run of the determinism check in a pool of its
  own, at another address layout), shared by every env of the process with the same
  settings.
- `store` (None): name of a process-wide task store shared by every env built with it
  (one buffer for all concurrent episodes, as AZR's one dataset manager); it grows by
  `after_episode`, from each finished episode's valid task (`info["task"]` of its proposer
  turn), in episode-index order: `arena.play` adds each episode's task once the episode is
  stored, training adds a step's tasks after the step (the step's proposers all see the
  buffer of its start, as AZR samples a batch's references before generating it). None:
  this env object's own buffers, which grow with each verified episode's task. A training
  run and `arena play` share one store over the run, kept in the run's `env-state/azr/`
  (`run_kwargs`); `arena eval` does not.
  `buffer_path`: a folder; saved tasks there are loaded, and each new task is appended
  to `azr_tasks.jsonl` (`env.store.save()` also writes `azr_lineage.json`).
- Replay: the references an episode showed are its `options` (`episode_options`), so
  `arena replay --verify` rebuilds the episode in a fresh env, re-running the sandbox,
  without `buffer_path` and `store` (`replay_kwargs`): a replay adds nothing to them.
- `max_turns` (at least n + 2), `render_mode`.

Fixed relative to AZR's code: the deduction and abduction prompts each carry their own
evaluation criteria (AZR's two are swapped); banned imports match dotted names and every
spelling (`import os.path`, `from os import path`, `__import__`; AZR's `os.path` entries
never matched); determinism is two runs in separate processes, the second with its
objects at other addresses, compared with `or` over every difference (AZR ran f twice in
one process, and joined its `code_e` comparisons with `and`); a learnability of 0 scores
0 (AZR's code gives -0.5); answers are compared as values on the host, never inside a
job that runs model-written code.

Different from AZR's code by design: every solver attempt is a trained turn (its own
reward, TRR++ over the batch), where AZR's trainer uses its n solver samples only to
measure learnability and trains solvers on one answer per buffer task (`rollout.n == 1`);
and a `<think>` block is not required (AZR's format reward asks for one; its R1 template
opens it for the model).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from arena.envs.absolute_zero import prompts
from arena.envs.absolute_zero.buffers import (
    IDENTITY_INDUCTION_INPUTS,
    IDENTITY_PROGRAM,
    Task,
    TaskStore,
    references_from,
    shared_store,
)
from arena.envs.absolute_zero.programs import PROGRAMS
from arena.envs.absolute_zero.summary import summarize_azr
from arena.envs.absolute_zero.tasks import (
    INVALID_PROPOSAL_REWARD,
    MAX_OUTPUT_CHARS,
    TASK_TYPES,
    Check,
    _dedent,
    answer_text,
    check_abduction,
    check_deduction,
    check_induction,
    fenced_blocks,
    learnability,
    parse_input,
    parse_verdict,
    sandbox_pool,
    solver_reward,
    validate_proposal,
    verifier_reward,
)

from arena.errors import ArenaError
from arena.protocol import ArenaEnv, Role

_RANDOM_LITERALS = ("0", "1", "-1", "''", "'Hello world'", "[]", "[1, 2, 3]", "None", "True", "{}", "(1, 'a')")


def _reply(kind: str, body: str) -> str:
    return f"<think>scripted</think>\n<answer>\n```{kind}\n{body.rstrip()}\n```\n</answer>"


class AbsoluteZero(ArenaEnv):
    """Absolute Zero: propose, solve and verify Python tasks checked in the sandbox."""

    roles = (
        Role("proposer", "proposes a Python task (program and input, or inputs and a message)",
             "learnability 1 - r when 0 < r < 1 else 0 (r: solver accuracy); -1 invalid proposal",
             system_prompt=prompts.SYSTEM_PROMPT),
        Role("solver", "solves the task (output, input or program), n attempts",
             "per attempt: 1 correct, -0.5 wrong, -1 format failure", system_prompt=prompts.SYSTEM_PROMPT),
        Role("verifier", "judges one solver answer: correct or incorrect",
             "1 agrees with the execution check, 0 disagrees, -1 format failure", system_prompt=prompts.SYSTEM_PROMPT),
    )
    edges = (("proposer", "sandbox"), ("sandbox", "solver"), ("solver", "verifier"), ("sandbox", "verifier"))
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "name": "absolute_zero", "is_parallelizable": False}
    credits_each_turn: ClassVar[bool] = True  # `turn_credit`: each attempt its own reward

    def __init__(self, task_type: Literal["deduction", "abduction", "induction", "mixed"] = "mixed", n: int = 8,
                 k: int = 6, num_inputs: int = 10, single_function: bool = False, timeout: float = 5.0,
                 sandbox: Literal["auto", "docker", "process"] = "auto", sandbox_workers: int = 1,
                 sandbox_config: dict | None = None, store: str | None = None, buffer_path: str | None = None,
                 max_turns: int | None = None, render_mode: str | None = None):
        if task_type not in (*TASK_TYPES, "mixed"):
            raise ArenaError(f"task_type must be one of {', '.join((*TASK_TYPES, 'mixed'))}, got {task_type!r}")
        if n < 1 or k < 1 or num_inputs < 2 or sandbox_workers < 1 or not 0 < timeout <= 3600:
            raise ArenaError("need n >= 1, k >= 1, num_inputs >= 2, sandbox_workers >= 1 and 0 < timeout <= 3600 "
                             f"seconds; got n={n}, k={k}, num_inputs={num_inputs}, sandbox_workers={sandbox_workers}, "
                             f"timeout={timeout}")
        if sandbox not in ("auto", "docker", "process"):
            raise ArenaError(f"sandbox must be 'auto', 'docker' or 'process', got {sandbox!r}")
        if max_turns is not None and max_turns < n + 2:
            raise ArenaError(f"max_turns must be at least n + 2 = {n + 2} (proposer, n solver attempts, verifier)")
        super().__init__(render_mode=render_mode, max_turns=max_turns or n + 2)
        from arena.sandbox import Limits

        self.task_type, self.n, self.k, self.num_inputs = task_type, int(n), int(k), int(num_inputs)
        self.single_function, self.timeout = bool(single_function), float(timeout)
        self.sandbox_backend, self.sandbox_workers, self.sandbox_config = sandbox, int(sandbox_workers), dict(sandbox_config or {})
        self.limits = Limits(timeout=self.timeout, max_value=MAX_OUTPUT_CHARS, max_output=MAX_OUTPUT_CHARS)
        self.store: TaskStore = shared_store(store, buffer_path) if store else TaskStore(buffer_path)
        self.shared = bool(store)  # a named store grows by `after_episode`, not as proposals pass
        #: Rejection kinds of invalid proposals seen by this env object.
        self.rejections: Counter = Counter()
        #: Per turn of the current episode: {"reward": ..., "infra": ...} (read by the rollout).
        self.turn_credit: list[dict[str, Any]] = []
        #: What replay needs besides the seed: the episode's task type and references.
        self.episode_options: dict[str, Any] = {}
        self._clear()

    def _clear(self) -> None:
        self.ttype = "deduction"
        self.references: list[Task] = []
        self.task: Task | None = None
        self.visible: list[int] = []
        self.hidden: list[int] = []
        self.attempts: list[Check] = []
        self.completions: list[str] = []
        self.chosen: int | None = None
        self.turn_credit = []
        self._texts: dict[str, str] = {}

    @classmethod
    def resolve_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`buffer_path` as an absolute path: the same buffer from any folder."""
        path = kwargs.get("buffer_path")
        if isinstance(path, str) and path:
            return {**kwargs, "buffer_path": str(Path(path).expanduser().absolute())}
        return kwargs

    @classmethod
    def replay_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Without `buffer_path` and `store`: an episode's references are in its options, and
        its replay appends nothing to the user's buffer file or to a store in use."""
        return {k: v for k, v in kwargs.items() if k not in ("buffer_path", "store")}

    @classmethod
    def run_kwargs(cls, kwargs: dict[str, Any], run: str, folder: Path | None) -> dict[str, Any]:
        """One task buffer for the whole run, as AZR's one dataset manager: every env of the
        run in this process shares the store `run:<run>`, kept in `<folder>/azr/` when the
        run has a folder (a resumed run goes on with the buffer of its checkpoint). Without
        it each env object kept its own buffer, and a training step's new env objects started
        from the seed task: the proposers never saw an earlier proposal. A `store` given is
        kept, in `<folder>/azr-<store>/`; a `buffer_path` given is the user's (not cut back
        on resume, and read by every process of a data-parallel or Ray run as it is: a
        folder they all see, i.e. one machine)."""
        out = {"store": f"run:{run}", **kwargs}
        if folder is not None and "buffer_path" not in kwargs:  # a store the user named: a folder of its own
            name = kwargs.get("store")
            sub = "azr" if name is None else f"azr-{re.sub(r'[^A-Za-z0-9_.-]', '_', str(name))}"
            out["buffer_path"] = str(Path(folder).absolute() / sub)
        return out

    @classmethod
    def after_episode(cls, kwargs: dict[str, Any], episode: Any) -> None:
        """Add the episode's valid task (its proposer turn's `info["task"]`) to the named
        store of `kwargs`, with its lineage; nothing without a store."""
        if not kwargs.get("store") or (episode.outcome or {}).get("reason") != "verified":
            return  # a task voided when solved (`_void`) never enters the buffer
        store = shared_store(kwargs["store"], kwargs.get("buffer_path"))
        for turn in episode.turns:
            if turn.role == "proposer" and isinstance(turn.info.get("task"), dict):
                store.add(Task.from_dict(turn.info["task"]))

    @staticmethod
    def summarize(episodes: Any) -> dict[str, Any]:
        """The play summary of these envs (`summarize_azr`); `arena play` prints it."""
        return summarize_azr(episodes)

    # -- sandboxes ---------------------------------------------------------------------
    def pool(self, domain: str) -> Any:
        """The sandbox pool of `domain` (`gold`, `gold-recheck` or `solver`)."""
        return sandbox_pool(domain, self.sandbox_backend, self.sandbox_workers, self.sandbox_config)

    # -- episode -------------------------------------------------------------------------
    def _reset(self, options: dict[str, Any]) -> str:
        self._clear()
        ttype = self.task_type
        if ttype == "mixed":
            ttype = TASK_TYPES[int(self.np_random.integers(len(TASK_TYPES)))]
        ref_seed = int(self.np_random.integers(2**63 - 1))
        if "task_type" in options:
            if options["task_type"] not in TASK_TYPES:
                raise ArenaError(f"options['task_type'] must be one of {', '.join(TASK_TYPES)}")
            ttype = options["task_type"]
        self.ttype = ttype
        if "references" in options:
            self.references = references_from(options["references"])
            if ttype == "induction" and len(self.references) != 1:
                raise ArenaError("an induction episode's options['references'] must hold exactly one task")
        else:
            rng = np.random.default_rng(ref_seed)
            self.references = ([self.store.sample_program(rng)] if ttype == "induction"
                               else self.store.sample(ttype, self.k, rng))
        self.episode_options = {"task_type": ttype, "references": [r.to_dict() for r in self.references]}
        if ttype == "induction":
            self._texts["proposer"] = prompts.induction_propose_prompt(self.references[0], self.num_inputs, self.timeout)
        else:
            self._texts["proposer"] = prompts.propose_prompt(ttype, self.references, self.timeout, self.single_function)
        return "proposer"

    def _observe(self, agent: str) -> str:
        if self.outcome is not None:
            return f"The episode is over ({self.outcome['reason']})."
        if agent != self.agent_selection:
            return f"Waiting: the {self.agent_selection} acts now."
        return self._texts[agent]

    def _step(self, agent: str, text: str) -> None:
        info: dict[str, Any] = {"task_type": self.ttype}
        if agent == "proposer":
            self._propose(text, info)
        elif agent == "solver":
            self._solve(text, info)
        else:
            self._verify(text, info)
        self.turn_info = info

    # -- proposer ------------------------------------------------------------------------
    def _parse_proposal(self, text: str) -> tuple[str, list[str], str] | tuple[None, str, str]:
        """(program, inputs, message), or (None, kind, reason)."""
        answer = answer_text(text)
        if answer is None:
            return None, "format", "no <answer>...</answer> block"
        blocks = fenced_blocks(answer)
        if self.ttype == "induction":
            if len(blocks["message"]) != 1:
                return None, "format", "an induction proposal needs exactly one ```message block"
            if not blocks["input"]:
                return None, "format", "no ```input block"
            if len(blocks["input"]) > self.num_inputs:
                return None, "format", f"{len(blocks['input'])} inputs (at most {self.num_inputs})"
            calls = [parse_input(t) for t in blocks["input"]]
            bad = next((t for t, c in zip(blocks["input"], calls) if c is None), None)
            if bad is not None:
                return None, "bad_input", f"an input is not an argument list of Python literals: {bad.strip()[:80]!r}"
            distinct = list(dict.fromkeys(c[2:-1] for c in calls if c))
            if len(distinct) < 2:
                return None, "bad_input", "an induction proposal needs at least 2 distinct inputs"
            return self.references[0].program, distinct, blocks["message"][0].strip()
        if len(blocks["python"]) != 1 or len(blocks["input"]) != 1:
            return None, "format", (f"need exactly one ```python and one ```input block, found "
                                    f"{len(blocks['python'])} and {len(blocks['input'])}")
        call = parse_input(blocks["input"][0])
        inputs = [call[2:-1] if call else blocks["input"][0]]
        return _dedent(blocks["python"][0]), inputs, ""

    def _propose(self, text: str, info: dict[str, Any]) -> None:
        program, inputs, message = self._parse_proposal(text)
        info["action"] = answer_text(text)
        if program is None:
            self._reject(info, inputs, message, infra=False)
            return
        single = self.single_function and self.ttype != "induction"
        v = validate_proposal(program, inputs, sandbox=self.pool("gold"), recheck=self.pool("gold-recheck"),
                              single_function=single, limits=self.limits)
        info["sandbox"] = v.statuses
        if not v.valid:
            self._reject(info, v.kind, v.reason, infra=v.infra)
            return
        task = Task(self.ttype, program, [c[2:-1] for c in v.calls], list(v.outputs), message,
                    parents=[r.id for r in self.references])
        info["task"] = task.to_dict()  # what `after_episode` adds to a named store, once the episode is verified
        self.task = task
        if self.ttype == "induction":
            order = [int(i) for i in self.np_random.permutation(len(task.inputs))]
            cut = len(order) // 2
            self.visible, self.hidden = sorted(order[:cut]), sorted(order[cut:])
            solve = prompts.induction_solve_prompt(message, [(task.inputs[i], task.outputs[i]) for i in self.visible])
        elif self.ttype == "deduction":
            solve = prompts.deduction_solve_prompt(task.program, task.inputs[0])
        else:
            solve = prompts.abduction_solve_prompt(task.program, task.outputs[0])
        self._texts["solver"] = solve
        info.update(legal=True, task_id=task.id)
        self.turn_credit.append({})  # filled when the episode ends
        self.agent_selection = "solver"

    def _reject(self, info: dict[str, Any], kind: str, reason: str, infra: bool) -> None:
        info.update(legal=None if infra else False, rejection=kind, reason=reason)
        if infra:
            info["infra"] = True
        self.rejections[kind] += 1
        reward = 0.0 if infra else INVALID_PROPOSAL_REWARD
        self.turn_credit.append({"reward": reward, "infra": True} if infra else {"reward": reward})
        self._finish({"proposer": reward}, reason="infra" if infra else "invalid_proposal", rejection=kind, detail=reason)

    # -- solver --------------------------------------------------------------------------
    def _check(self, text: str) -> Check:
        task = self.task
        assert task is not None
        if self.ttype == "deduction":
            return check_deduction(text, task.outputs[0])
        if self.ttype == "abduction":
            return check_abduction(text, task.program, task.outputs[0], self.pool("solver"), self.limits,
                                   recheck=self.pool("gold-recheck"))
        calls = [f"f({task.inputs[i]})" for i in self.hidden]
        return check_induction(text, calls, [task.outputs[i] for i in self.hidden], self.pool("solver"), self.limits)

    def _solve(self, text: str, info: dict[str, Any]) -> None:
        check = self._check(text)
        self.attempts.append(check)
        self.completions.append(text)
        info.update(action=check.answer, legal=check.formatted, correct=check.correct, attempt=len(self.attempts))
        if check.detail:
            info["detail"] = check.detail
        if check.statuses:
            info["sandbox"] = check.statuses
        if check.nondeterministic:
            self._void(info, check.detail)
            return
        if check.infra:
            info["infra"] = True
            self.turn_credit.append({"reward": 0.0, "infra": True})
        else:
            self.turn_credit.append({"reward": solver_reward(check)})
        if len(self.attempts) >= self.n:
            candidates = [i for i, c in enumerate(self.attempts) if not c.infra] or list(range(len(self.attempts)))
            self.chosen = candidates[int(self.np_random.integers(len(candidates)))]
            shown = answer_text(self.completions[self.chosen])
            shown = shown if shown is not None else self.completions[self.chosen][-4000:]
            self._texts["verifier"] = prompts.verify_prompt(self._texts["solver"], shown)
            self.agent_selection = "verifier"

    def _void(self, info: dict[str, Any], reason: str) -> None:
        """The task showed two results for one answer (`check_abduction`): the proposal is
        invalid after all, as if validation had caught it. The proposer gets -1, the
        episode ends, the solver's attempts are masked (their results were the task's coin,
        not their answers' worth: `infra`, as nothing is known), and the task enters no
        buffer (`after_episode` adds only verified episodes' tasks)."""
        info["correct"] = None
        self.rejections["nondeterministic"] += 1
        self.turn_credit[0] = {"reward": INVALID_PROPOSAL_REWARD}
        self.turn_credit[1:] = [{"reward": 0.0, "infra": True}] * len(self.attempts)
        self._finish({"proposer": INVALID_PROPOSAL_REWARD}, reason="invalid_proposal", rejection="nondeterministic",
                     detail=f"found when solved: {reason}")

    # -- verifier ------------------------------------------------------------------------
    def _verify(self, text: str, info: dict[str, Any]) -> None:
        assert self.chosen is not None
        verdict = parse_verdict(text)
        chosen = self.attempts[self.chosen]
        info.update(action=None if verdict is None else ("correct" if verdict else "incorrect"),
                    legal=verdict is not None, judged_attempt=self.chosen + 1)
        if chosen.infra:
            verifier, agrees = 0.0, None
            info["infra"] = True
            self.turn_credit.append({"reward": 0.0, "infra": True})
        else:
            verifier = verifier_reward(verdict, bool(chosen.correct))
            agrees = None if verdict is None else verdict == bool(chosen.correct)
            self.turn_credit.append({"reward": verifier})
        scored = [c for c in self.attempts if not c.infra]
        accuracy = [1.0 if c.correct else 0.0 for c in scored]
        proposer = learnability(accuracy)
        self.turn_credit[0] = {"reward": proposer} if scored else {"reward": 0.0, "infra": True}
        solver = sum(solver_reward(c) for c in scored) / len(scored) if scored else 0.0
        solve_rate = sum(accuracy) / len(accuracy) if accuracy else None
        if not self.shared and self.task is not None:  # this env's own buffer grows as its tasks hold up
            self.store.add(self.task)
        self._finish({"proposer": proposer, "solver": solver, "verifier": verifier}, reason="verified",
                     task_id=self.task.id if self.task else None, solve_rate=solve_rate, verifier_agrees=agrees)

    # -- scripted moves ------------------------------------------------------------------
    def _proposal(self, rng: np.random.Generator) -> str:
        return self.scripted_proposal(rng)

    def scripted_proposal(self, rng: np.random.Generator) -> str:
        """A valid proposal for this episode's task type: a program and one of its inputs
        from the varied built-in set (`programs.PROGRAMS`); for induction, inputs and a
        message for the reference program."""
        if self.ttype == "induction":
            ref = self.references[0]
            known = dict(PROGRAMS)
            inputs = (IDENTITY_INDUCTION_INPUTS if ref.program == IDENTITY_PROGRAM
                      else known.get(ref.program, tuple(ref.inputs)))[: self.num_inputs]
            blocks = "\n".join(f"```input\n{i}\n```" for i in inputs)
            return f"<think>scripted</think>\n<answer>\n{blocks}\n```message\nWork out what f computes.\n```\n</answer>"
        programs = [p for p in PROGRAMS if not self.single_function or p[0].count("def ") == 1 and "class " not in p[0]]
        program, inputs = programs[int(rng.integers(len(programs)))]
        return (f"<think>scripted</think>\n<answer>\n```python\n{program}```\n"
                f"```input\n{inputs[int(rng.integers(len(inputs)))]}\n```\n</answer>")

    def _correct_answer(self) -> str:
        task = self.task
        assert task is not None
        if self.ttype == "deduction":
            return _reply("output", task.outputs[0])
        if self.ttype == "abduction":
            return _reply("input", task.inputs[0])
        return _reply("python", task.program)

    def heuristic_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str:
        """Proposer: a valid program from a varied built-in set (for induction, inputs for
        the given program); solver: the right answer, from the gold; verifier: the truth."""
        agent = agent or self.agent_selection
        rng = rng if rng is not None else np.random.default_rng()
        if agent == "proposer":
            return self._proposal(rng)
        if agent == "solver":
            return self._correct_answer()
        chosen = self.attempts[self.chosen] if self.chosen is not None else None
        return "<answer>correct</answer>" if chosen is None or chosen.correct is not False else "<answer>incorrect</answer>"

    def sample_action(self, agent: str | None = None, rng: np.random.Generator | None = None) -> str | None:
        """A random well-formed move: a built-in proposal; a solver answer that is the right
        one or a random literal (program), by a coin flip; a random verdict."""
        agent = agent or self.agent_selection
        rng = rng if rng is not None else np.random.default_rng()
        if self.done:
            return None
        if agent == "proposer":
            return self._proposal(rng)
        if agent == "solver":
            if rng.random() < 0.5:
                return self._correct_answer()
            if self.ttype == "induction":
                return _reply("python", PROGRAMS[int(rng.integers(len(PROGRAMS)))][0])
            return _reply("output" if self.ttype == "deduction" else "input",
                          _RANDOM_LITERALS[int(rng.integers(len(_RANDOM_LITERALS)))])
        return "<answer>correct</answer>" if rng.random() < 0.5 else "<answer>incorrect</answer>"
