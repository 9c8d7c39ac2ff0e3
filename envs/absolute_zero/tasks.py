"""Absolute Zero's task logic, host side: answer parsing, proposal validation, the three
checks, the reward formulas, and the sandbox pools (one per trust domain).

Every comparison with a gold value happens here, on the host, on values the sandbox's
runner computed with builtin code (`CallResult.value` when `plain`); no gold value is ever
sent into a job.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arena.errors import ArenaError

TASK_TYPES: tuple[str, ...] = ("deduction", "abduction", "induction")
INVALID_PROPOSAL_REWARD = -1.0
MAX_INPUT_CHARS = 5000
#: Characters of one output's repr, and of a job's stdout, that a task may produce (the
#: sandbox's defaults are 1 MiB and 64 KiB): an output no prompt could show is no task, and a
#: hostile result line's size, which the host scans before refusing it, scales with them
#: (60 MB, 1.8 s of the host's CPU an answer, at the defaults; under 1 MB here).
MAX_OUTPUT_CHARS = 10_000

# -- answer parsing ------------------------------------------------------------------------

_OPEN = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.IGNORECASE)
# possessive (`*+`): a fence then 2,000 spaces and no closing one took 12.5 s (cubic backtracking)
_FENCE = re.compile(r"```[ \t]*+(?:([A-Za-z][\w+-]*+)[ \t]*+)?\n?(.*?)```", re.DOTALL)
_ALIASES = {"python": "python", "py": "python", "python3": "python", "input": "input",
            "output": "output", "message": "message"}


_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)


def answer_text(completion: str) -> str | None:
    """The content of the last `<answer>...</answer>` block after the reasoning (tags in any
    case, spaces inside the brackets allowed), stripped; None when there is none. With a
    `</think>`, only what follows the last one counts, and a `<think>` never closed has no
    answer (AZR's format, `<think>...</think> <answer>...</answer>`): an answer drafted
    inside the reasoning and taken back there ("no wait, it is 6") was scored before."""
    closes = list(_THINK_CLOSE.finditer(completion))
    if closes:
        completion = completion[closes[-1].end():]
    elif _THINK_OPEN.search(completion):
        return None
    found = _answer_blocks(completion)
    return found[-1].strip() if found else None


def _answer_blocks(text: str) -> list[str]:
    """What `<answer>(.*?)</answer>` finds, left to right, each tag found once: the regex
    scanned to the end from every unclosed `<answer>` (50 KB of them: 1.5 s)."""
    closes = list(_CLOSE.finditer(text))
    starts = [m.start() for m in closes]
    out: list[str] = []
    pos = 0
    for opened in _OPEN.finditer(text):
        if opened.start() < pos:
            continue
        k = bisect.bisect_left(starts, opened.end())
        if k == len(closes):
            break
        out.append(text[opened.end():closes[k].start()])
        pos = closes[k].end()
    return out


def fenced_blocks(text: str) -> dict[str, list[str]]:
    """The fenced blocks of `text` by kind (`python`, `input`, `output`, `message`); a fence
    with another label, or none, is ignored (never guessed at)."""
    out: dict[str, list[str]] = {"python": [], "input": [], "output": [], "message": []}
    for label, body in _FENCE.findall(text):
        kind = _ALIASES.get((label or "").lower())
        if kind is not None:
            out[kind].append(body.strip("\n").rstrip())
    return out


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code).strip("\n") + "\n"


def parse_literal(text: str) -> tuple[bool, Any]:
    """(True, value) when `text` is one Python literal (`ast.literal_eval`), else (False, None)."""
    if len(text) > MAX_INPUT_CHARS * 20:
        return False, None
    try:
        return True, ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def parse_input(text: str) -> str | None:
    """The call `f(...)` for an input written as an argument list of Python literals
    (`'Hello world'`, `[1, 2], 3`), rebuilt from the parsed values (only literals ever reach
    the sandbox); None when it is not such a list."""
    text = text.strip()
    if not text or len(text) > MAX_INPUT_CHARS:
        return None
    try:
        tree = ast.parse(f"f(\n{text}\n)", mode="eval")
        call = tree.body
        if not isinstance(call, ast.Call) or call.keywords or not call.args:
            return None
        values = []
        for arg in call.args:
            if isinstance(arg, ast.Starred):
                return None
            values.append(ast.literal_eval(arg))
        return "f(" + ", ".join(repr(v) for v in values) + ")"
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


#: `\\text{X}` and its kin: their content is what the answer says (`\\text{A}`, `\\text{correct}`).
TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def parse_verdict(completion: str) -> bool | None:
    """True for `correct`, False for `incorrect` in the answer block (any case, surrounding
    spaces, punctuation, backticks or `\\boxed{}` allowed); None otherwise."""
    answer = answer_text(completion)
    if answer is None:
        return None
    if len(answer) > 1000:  # a verdict is a word; the box pattern below backtracks on every open box
        return None
    word = re.sub(r"\\boxed\{(.*)\}", r"\1", answer.strip())
    word = TEXT_WRAPPER.sub(r"\1", word.strip())  # `\\text{correct}`
    word = word.strip(" \t\n.!`*\"'").lower()
    return {"correct": True, "incorrect": False}.get(word)


# -- sandbox pools ---------------------------------------------------------------------------

_POOLS: dict[tuple, Any] = {}
_LAST_USE: dict[tuple, float] = {}
_POOLS_LOCK = threading.Lock()
#: Seconds a pool may sit unused before it is closed (its workers stop; the next use starts
#: a fresh one in ~0.1 s): no sandbox worker outlives the episodes that needed it.
IDLE_CLOSE_S = 11.0
_reaper: threading.Thread | None = None


def _reap() -> None:
    import time

    while True:
        time.sleep(1.0)
        with _POOLS_LOCK:
            idle = [k for k, t in _LAST_USE.items() if time.monotonic() - t > IDLE_CLOSE_S]
            pools = [_POOLS.pop(k) for k in idle]
            for k in idle:
                _LAST_USE.pop(k, None)
        for pool in pools:
            with contextlib.suppress(Exception):  # best effort: a pool that fails to close is gone anyway
                pool.close()


def close_pools() -> None:
    """Close every shared sandbox pool now (they restart on next use)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
        _LAST_USE.clear()
    for pool in pools:
        pool.close()


def sandbox_pool(domain: str, backend: str = "auto", workers: int = 1, config: dict[str, Any] | None = None) -> Any:
    """The process-wide sandbox pool of one trust domain (`gold`: proposers' programs and
    their gold outputs, and `gold-recheck`, the second run of their determinism check in
    another runner; `solver`: anything that carries a solver's answer), started on first
    use and shared by every env with the same settings."""
    from arena.sandbox import Sandbox, SandboxUnavailable

    key = (domain, backend, workers, json.dumps(config or {}, sort_keys=True))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            try:
                pool = Sandbox(backend=backend, workers=workers, **(config or {}))
            except SandboxUnavailable as exc:
                raise ArenaError(f"{exc} (an env takes sandbox_config={{'allow_unsafe': True}})") from None
            except (TypeError, ValueError) as exc:
                raise ArenaError(f"bad sandbox settings {config!r}: {exc}; see arena.sandbox.SandboxConfig") from None
            _POOLS[key] = pool
        global _reaper
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="arena-azr-pool-reaper", daemon=True)
            _reaper.start()
        import time

        _LAST_USE[key] = time.monotonic()
        return pool


# -- validation -------------------------------------------------------------------------------


@dataclass
class Validation:
    """What `validate_proposal` found.

    Attributes:
        valid: the proposal is a task (program and inputs run, deterministically).
        reason: why not, in words a person reads ("" when valid).
        kind: the rejection's category, for counting (`syntax`, `banned_import`, ...).
        calls: the calls `f(...)` the inputs make (rebuilt from literals).
        outputs: the gold outputs (reprs computed by builtin code), one per call.
        infra: the sandbox failed; nothing is known about the proposal.
        statuses: sandbox statuses of the runs, in order.
    """

    valid: bool
    reason: str = ""
    kind: str = ""
    calls: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    infra: bool = False
    statuses: list[str] = field(default_factory=list)

    @property
    def output(self) -> str | None:
        """The gold output of the first call (deduction, abduction)."""
        return self.outputs[0] if self.outputs else None


def _reject(kind: str, reason: str, **kw: Any) -> Validation:
    return Validation(False, reason, kind, **kw)


def static_problems(program: str, single_function: bool = False, banned: Sequence[str] | None = None) -> tuple[str, str] | None:
    """(kind, reason) of the first static problem of `program`, or None: size, syntax,
    the entry function `f`, several functions when `single_function`, banned imports (every
    spelling: `import os.path`, `from os import path`, `__import__('os')`, ...)."""
    from arena.sandbox.checks import BANNED_MODULES, check_size, check_syntax, find_banned_imports

    problem = check_size(program)
    if problem:
        return "size", problem
    problem = check_syntax(program)
    if problem:
        return "syntax", problem
    tree = ast.parse(program)
    entries = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "f"]
    if not entries:
        return "no_entry", "no top-level function named f: the entry function must be `def f(...)`"
    if len(entries) > 1:
        return "no_entry", "f is defined more than once"
    if isinstance(entries[0], ast.AsyncFunctionDef):
        return "no_entry", "f is async: write a plain function"
    if single_function:
        others = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n is not entries[0]]
        if others:
            return "several_functions", f"only the function f is allowed (single_function=True), found also {', '.join(others)}"
    found = find_banned_imports(program, BANNED_MODULES if banned is None else banned)
    if found:
        return "banned_import", "banned: " + "; ".join(found[:3])
    return None


def _padded(program: str) -> str:
    """`program` with an allocation first (after any docstring and `__future__` imports), so
    that its objects live at other addresses than in the plain run: `id()`, default reprs
    and the iteration order of sets of objects hashed by identity then differ."""
    tree = ast.parse(program)
    line = 0
    for node in tree.body:
        is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        if is_doc or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            line = node.end_lineno or line
            continue
        break
    lines = re.split(r"\r\n|\r|\n", program)  # the tokenizer's line ends: `str.splitlines` also splits at
    # \x0c, \x1c-\x1e, \x85 and \u2028, inside a docstring too, which put the pad in it (no padding at all)
    pad = "_arena_pad = [object() for _ in range(4099)] + [[0] * 37 for _ in range(513)]"
    return "\n".join(lines[:line] + [pad] + lines[line:]).rstrip("\n") + "\n"


#: A job the recheck pool runs before the second run, 0 or 1 of them at random (`_spacers`).
SPACER = "def f():\n    open('spacer', 'w').close()\n"


def _spacers(limits: Any) -> list[tuple[str, list[str], Any]]:
    """0 or 1 `SPACER` jobs, drawn from the OS (not the env's seeded stream: it changes no
    output of a deterministic program). The gold and recheck runners each served one job
    a validation, so they stayed in lockstep: their jobs' PIDs (their own PID namespaces)
    and scratch inode numbers were equal, and a program returning `x + getpid() % 2`
    (`os` reached past the static checks) passed every time while the solver pool gave
    another output. A spacer forks a process and makes a file, so the two runners' counters
    drift apart at random: a one-bit dependence is caught half the time, which costs such
    a proposer more (-1 a rejection) than it gains."""
    import secrets

    return [(SPACER, ["f()"], limits)] * secrets.randbelow(2)


_FAILURES = {"error": "error", "timeout": "timeout", "memory": "memory", "output_limit": "output_limit",
             "killed": "killed"}


def validate_proposal(program: str, inputs: str | Sequence[str], *, sandbox: Any = None, single_function: bool = False,
                      banned: Sequence[str] | None = None, limits: Any = None, recheck: Any = None) -> Validation:
    """Validate a proposed task: `program` (defining `f`) and its inputs (argument lists of
    Python literals). Returns valid / reason / gold outputs (`Validation`).

    Rules, in order: the program is within size and parses; it defines one top-level `f`
    (helpers and classes allowed unless `single_function`); it imports nothing banned in
    any spelling (`arena.sandbox.checks`); every input is an argument list of literals; it
    runs within `limits` (default 5 s) in the sandbox; it is deterministic: run twice in
    separate processes, the second time in another sandbox runner (`recheck`) with its
    objects at other addresses, with equal statuses, outputs and stdout; every output is
    built of builtin types and reads back as a Python literal. `sandbox` is a
    `arena.sandbox.Sandbox` (default: the shared `gold` pool); `recheck` the one of the
    second run (default: the shared `gold-recheck` pool; `sandbox` itself when only that is
    given). A sandbox failure gives `infra=True` (masked, never scored).

    Why another runner: a runner forks each job from itself, so every job of one runner
    sees its address layout, and the padding moves only the program's own objects. A
    program returning `id(len) % 1000` gave the same output twice there and another in
    every other runner (the solver pool, a replay): a gold that no solver could reproduce,
    its proposer paid about 0.5 a task. Another runner is another exec, at another layout
    (ASLR: it moves whole pages, so what reads only the low 12 bits of addresses, such as
    the order of a small set of builtins, mostly stays put). A dependence on one address
    bit is caught half the time, which already costs such a proposer more (-1 a
    rejection) than it gains (AZR runs `f` twice in one process, and catches none of these).
    For the same reason the recheck runner's per-job counters (PIDs, inode numbers) are put
    out of step with the first one's at random (`_spacers`).
    """
    from arena.sandbox import Limits

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    problem = static_problems(program, single_function, banned)
    if problem:
        return _reject(*problem)
    if not inputs:
        return _reject("bad_input", "no input given")
    calls = []
    for i, text in enumerate(inputs, 1):
        call = parse_input(text)
        if call is None:
            return _reject("bad_input", f"input {i} is not an argument list of Python literals: {text.strip()[:80]!r}")
        calls.append(call)
    if recheck is None:
        recheck = sandbox if sandbox is not None else sandbox_pool("gold-recheck")
    sandbox = sandbox if sandbox is not None else sandbox_pool("gold")
    limits = limits if limits is not None else Limits(timeout=5.0)
    first, second = _two_runs(program, calls, limits, sandbox, recheck)
    statuses = [first.status, second.status]
    if first.infra or second.infra:
        return Validation(False, "the sandbox failed (infrastructure): nothing is known", "infra", calls, infra=True,
                          statuses=statuses)
    if first.status != second.status:
        return _reject("nondeterministic", f"nondeterministic: {_disagreement(first, second)}", calls=calls, statuses=statuses)
    for result in (first, second):
        if result.status != "ok":
            bad = next((c for c in result.calls if c.status != "ok"), None)
            what = (bad.error_type or result.error_type or result.status) if bad else (result.error_type or result.status)
            detail = (bad.error if bad else result.error) or ""
            where = f" on {bad.call}" if bad else ""
            kind = _FAILURES.get(result.status, "error")
            if kind == "timeout":
                return _reject(kind, f"ran over the time limit ({limits.timeout:g} s){where}", calls=calls, statuses=statuses)
            return _reject(kind, f"{what}{where}: {detail[:200]}".rstrip(": "), calls=calls, statuses=statuses)
    for c in first.calls:
        if not c.plain:
            return _reject("not_builtin", f"{c.call} returned a custom object (its repr is the program's own): "
                                          "return builtin values", calls=calls, statuses=statuses)
    differs = _disagreement(first, second)
    if differs:
        return _reject("nondeterministic", f"nondeterministic: {differs}", calls=calls, statuses=statuses)
    outputs = []
    for c in first.calls:
        ok, _value = parse_literal(c.value or "")
        if not ok:
            return _reject("not_literal", f"the output of {c.call}, {c.value!r:.60}, does not read back as a Python literal",
                           calls=calls, statuses=statuses)
        outputs.append(c.value or "")
    return Validation(True, "", "", calls, outputs, statuses=statuses)


def _two_runs(program: str, calls: list[str], limits: Any, sandbox: Any, recheck: Any) -> tuple[Any, Any]:
    """`program` on `calls` twice, in separate processes: as it is in `sandbox`, and padded
    (`_padded`) in `recheck`, another runner put out of step with the first (`_spacers`), or
    in `sandbox` again when `recheck` is it (see `validate_proposal`)."""
    if recheck is sandbox:
        first, second = sandbox.run_many([(program, calls, limits), (_padded(program), calls, limits)])
        return first, second
    (first,) = sandbox.run_many([(program, calls, limits)])
    *_, second = recheck.run_many([*_spacers(limits), (_padded(program), calls, limits)], together=True)
    return first, second


def _disagreement(first: Any, second: Any) -> str | None:
    """How two runs of one program on the same calls differ (their statuses, a call's value,
    or the text they printed), or None when they agree."""
    if first.status != second.status:
        return f"two runs ended {first.status} and {second.status}"
    for a, b in zip(first.calls, second.calls):
        if (a.value, a.plain, a.status) != (b.value, b.plain, b.status):
            return f"two runs of {a.call} gave {a.value or a.status!r:.60} and {b.value or b.status!r:.60}"
    if first.stdout != second.stdout:
        return "two runs printed different text"
    return None


# -- checks ------------------------------------------------------------------------------------


@dataclass
class Check:
    """One solver answer, checked: `formatted` (the answer block parsed), `correct` (None
    when the sandbox failed: `infra`), the answer as parsed, and why."""

    formatted: bool
    correct: bool | None
    answer: str | None = None
    detail: str = ""
    statuses: list[str] = field(default_factory=list)
    #: The task's program gave two results for the answer (`check_abduction`): the task, not
    #: the answer, is at fault (`correct` is False, and the env voids the proposal).
    nondeterministic: bool = False

    @property
    def infra(self) -> bool:
        return self.formatted and self.correct is None


def same_value(predicted: Any, gold_repr: str) -> bool:
    """Value equality of a prediction with a gold output repr, both as Python values."""
    ok, gold = parse_literal(gold_repr)
    if not ok:
        return False
    try:
        return bool(predicted == gold)
    except Exception:  # noqa: BLE001 - a comparison of literals should never raise; be safe
        return False


def check_deduction(completion: str, gold_output: str) -> Check:
    """Deduction: the ```output block, read as a literal, equals the gold output (values,
    never strings: `[1,2]` and `[1, 2]` are the same answer)."""
    answer = answer_text(completion)
    blocks = fenced_blocks(answer or "")["output"]
    if answer is None or len(blocks) != 1:
        return Check(False, False, None, "no <answer> with exactly one ```output block")
    ok, value = parse_literal(blocks[0])
    if not ok:
        return Check(False, False, blocks[0], "the output is not a Python literal")
    return Check(True, same_value(value, gold_output), blocks[0])


def check_abduction(completion: str, program: str, gold_output: str, sandbox: Any, limits: Any,
                    recheck: Any = None) -> Check:
    """Abduction: f(answer) runs in the solver's sandbox pool; its value (computed by
    builtin code) equals the gold output on the host. Any input that does is right.

    f is the proposer's program, and the proposal's determinism check ran it on the
    proposer's inputs only: on another input it may be a coin toss (`if x == 12345: return
    1` and a random bit otherwise, the random source reached past the static checks), which
    paid its proposer a learnability of about 0.5 on every task, and its solvers for
    guesses. So f(answer) runs twice, as `validate_proposal` runs it: the second time
    padded, in `recheck` (the `gold-recheck` pool; `sandbox` again when None). Two results
    give `nondeterministic=True` (the env then voids the proposal: -1, as validation
    would have given); a one-bit coin is caught at each attempt with probability 1/2."""
    answer = answer_text(completion)
    blocks = fenced_blocks(answer or "")["input"]
    if answer is None or len(blocks) != 1:
        return Check(False, False, None, "no <answer> with exactly one ```input block")
    call = parse_input(blocks[0])
    if call is None:
        return Check(False, False, blocks[0], "the input is not an argument list of Python literals")
    result, again = _two_runs(program, [call], limits, sandbox, sandbox if recheck is None else recheck)
    if result.infra or again.infra:
        return Check(True, None, blocks[0], "sandbox infrastructure failure", [result.status, again.status])
    differs = _disagreement(result, again)
    if differs:
        return Check(True, False, blocks[0], f"the task's f is nondeterministic: {differs}", [result.status, again.status],
                     nondeterministic=True)
    c = result.calls[0]
    if c.status != "ok" or not c.plain:
        return Check(True, False, blocks[0], f"f{call[1:]} -> {c.status} {c.error_type or ''}".strip(),
                     [result.status, again.status])
    ok, value = parse_literal(c.value or "")
    return Check(True, ok and same_value(value, gold_output), blocks[0], "", [result.status, again.status])


def check_induction(completion: str, calls: Sequence[str], gold_outputs: Sequence[str], sandbox: Any, limits: Any) -> Check:
    """Induction: the written f, run in the solver's sandbox pool on the hidden inputs,
    reproduces every hidden output (compared on the host)."""
    answer = answer_text(completion)
    blocks = fenced_blocks(answer or "")["python"]
    if answer is None or len(blocks) != 1:
        return Check(False, False, None, "no <answer> with exactly one ```python block")
    program = _dedent(blocks[0])
    problem = static_problems(program, banned=())
    if problem and problem[0] in ("size", "syntax", "no_entry"):
        return Check(True, False, program, problem[1])
    result = sandbox.run(program, list(calls), limits)
    if result.infra:
        return Check(True, None, program, "sandbox infrastructure failure", [result.status])
    for c, gold in zip(result.calls, gold_outputs):
        if c.status != "ok" or not c.plain:
            return Check(True, False, program, f"{c.call} -> {c.status} {c.error_type or ''}".strip(), [result.status])
        ok, value = parse_literal(c.value or "")
        if not (ok and same_value(value, gold)):
            return Check(True, False, program, f"{c.call} gave {c.value!r:.60}", [result.status])
    return Check(True, True, program, "", [result.status])


# -- rewards ------------------------------------------------------------------------------------


def solver_reward(check: Check) -> float:
    """1 when correct; -0.5 when well formatted and wrong; -1 on a format failure (AZR's
    training rewards). Undefined (the caller masks it) when the check was `infra`."""
    if not check.formatted:
        return -1.0
    return 1.0 if check.correct else -0.5


def learnability(accuracies: Sequence[float]) -> float:
    """The proposer's reward: with r the mean solver accuracy, `1 - r` when 0 < r < 1,
    else 0 (a task every attempt solves, or none does, teaches nothing). AZR's code scores
    r = 0 as -0.5 by falling into the wrong-answer branch; this is the paper's formula."""
    if not accuracies:
        return 0.0
    r = sum(accuracies) / len(accuracies)
    return 1.0 - r if 0.0 < r < 1.0 else 0.0


def verifier_reward(verdict: bool | None, truth: bool) -> float:
    """1 when the verdict agrees with the execution check, 0 when not, -1 when unparsable."""
    if verdict is None:
        return -1.0
    return 1.0 if verdict == truth else 0.0
