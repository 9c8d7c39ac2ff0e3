"""Absolute Zero envs: validation, the three checks, reward formulas, infra masking, buffers
and lineage, full episodes with scripted agents, replay. Real sandbox (process backend:
bubblewrap when installed), no mocks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import networkx as nx
import pytest
from arena.agents import HeuristicAgent
from arena.envs.absolute_zero import (
    Check,
    Task,
    TaskStore,
    check_abduction,
    check_deduction,
    check_induction,
    learnability,
    parse_input,
    solver_reward,
    summarize_azr,
    validate_proposal,
    verifier_reward,
)
from arena.envs.absolute_zero.buffers import shared_store
from arena.envs.absolute_zero.tasks import answer_text, fenced_blocks, parse_verdict, sandbox_pool
from arena.sandbox import Limits, Sandbox

import arena
from arena.errors import ArenaError
from arena.policy import Completion
from arena.replay import verify
from arena.rollout import play

FAST = Limits(timeout=1.0)


@pytest.fixture(scope="module")
def sb():
    with Sandbox(backend="process", workers=1) as box:
        yield box


def reply(kind: str, body: str) -> str:
    return f"<think>...</think>\n<answer>\n```{kind}\n{body}\n```\n</answer>"


def proposal(program: str, input_text: str) -> str:
    return f"<think>hmm</think><answer>\n```python\n{program}\n```\n```input\n{input_text}\n```\n</answer>"


class Scripted:
    """A policy that answers each role with the next of its given completions."""

    name = "scripted"

    def __init__(self, texts: dict[str, list[str]]):
        self.texts = {role: list(v) for role, v in texts.items()}

    def act(self, requests):
        return [Completion(text=self.texts[r.role].pop(0)) for r in requests]


# -- validation --------------------------------------------------------------------------------

def test_valid_proposal_gives_gold_outputs_helpers_and_classes_allowed(sb):
    program = ("class Box:\n    def __init__(self, v):\n        self.v = v\n\n\ndef helper(x):\n    return x * 2\n\n\n"
               "def f(a, b):\n    return [helper(Box(a).v), {b: (1, 2)}]\n")
    v = validate_proposal(program, "3, 'k'", sandbox=sb, limits=FAST)
    assert v.valid and v.reason == "" and v.output == "[6, {'k': (1, 2)}]" and v.calls == ["f(3, 'k')"]
    single = validate_proposal(program, "3, 'k'", sandbox=sb, limits=FAST, single_function=True)
    assert not single.valid and single.kind == "several_functions" and "Box" in single.reason and "helper" in single.reason


@pytest.mark.parametrize("program, kind, words", [
    ("def f(a)\n    return a", "syntax", "syntax error at line 1"),
    ("def g(a):\n    return a", "no_entry", "no top-level function named f"),
    ("def f(a):\n    return a\n\n\ndef f(b):\n    return b", "no_entry", "more than once"),
    ("def f(a):\n    return 1 / 0", "error", "ZeroDivisionError"),
    ("class A:\n    pass\n\n\ndef f(a):\n    return A()", "not_builtin", "custom object"),
    ("def f(a):\n    return float('nan')", "not_literal", "does not read back"),
])
def test_rejections_name_their_reason(sb, program, kind, words):
    v = validate_proposal(program, "1", sandbox=sb, limits=FAST)
    assert not v.valid and v.kind == kind and words in v.reason, v


@pytest.mark.parametrize("body", ["return id(len) % 1000003", "return (id(a) >> 12) % 1000003 + id(len) % 7"])
def test_an_output_read_from_the_runners_address_layout_is_nondeterministic(sb, body):
    """Every job of one runner sees its layout (`id(len)`): the second run of the check goes to
    another runner (another exec, another layout), or the proposer of such a task was paid
    for a gold that no solver pool reproduces."""
    with Sandbox(backend="process", workers=1) as other:
        v = validate_proposal(f"def f(a):\n    {body}\n", "[1, 2, 3]", sandbox=sb, recheck=other, limits=FAST)
    assert not v.valid and v.kind == "nondeterministic", v
    env = arena.make("azr/Deduction-v0", sandbox="process")  # the env's own pools: gold and gold-recheck
    assert env.pool("gold") is not env.pool("gold-recheck")
    v = validate_proposal(f"def f(a):\n    {body}\n", "[1, 2, 3]", sandbox=env.pool("gold"),
                          recheck=env.pool("gold-recheck"), limits=FAST)
    assert not v.valid and v.kind == "nondeterministic", v


def test_an_output_read_from_the_runners_job_counters_is_nondeterministic():
    """The gold and recheck runners each served one job a validation, so their jobs' PIDs
    (each runner's own PID namespace) stayed equal: `getpid() % 2` (with `os` reached past
    the static checks; here allowed outright, `banned=()`) passed 20 of 20. A spacer job
    on the recheck runner, 0 or 1 at random, now puts them out of step: each validation
    catches it with probability 1/2 (fewer than 2 of 20: p = 2e-5)."""
    from arena.envs.absolute_zero import tasks

    program = "import os\ndef f(x):\n    return x + os.getpid() % 2\n"

    def kinds(recheck_workers: int) -> list[str]:
        with Sandbox(backend="process", workers=1) as gold, Sandbox(backend="process", workers=recheck_workers) as recheck:
            return [validate_proposal(program, "10", sandbox=gold, recheck=recheck, limits=FAST, banned=()).kind
                    for _ in range(20)]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tasks, "_spacers", lambda limits: [])
        assert kinds(1) == [""] * 20  # without spacers: in lockstep, passed every time
    for workers in (1, 2):  # with two, the spacer goes with the checked job, to its runner
        got = kinds(workers)
        assert got.count("nondeterministic") >= 2 and set(got) <= {"nondeterministic", ""}, (workers, got)


@pytest.mark.parametrize("line", [
    "import os", "import os.path", "from os import path", "from os.path import join", "import numpy.random as r",
    "from random import randint", "import time as clock", "from datetime import datetime", "import importlib",
    "x = __import__('os')", "import subprocess, json",
])
def test_banned_imports_in_every_spelling(sb, line):
    v = validate_proposal(f"{line}\n\n\ndef f(a):\n    return a\n", "1", sandbox=sb, limits=FAST)
    assert not v.valid and v.kind == "banned_import", v


@pytest.mark.parametrize("body", [
    "return id(object())",
    "return repr(object())",
    "return [x.v for x in {A(i) for i in range(50)}]",
    "return hash(A(1))",
])
def test_nondeterminism_is_caught_by_two_runs_in_separate_processes(sb, body):
    program = f"class A:\n    def __init__(self, v):\n        self.v = v\n\n\ndef f(a):\n    {body}\n"
    v = validate_proposal(program, "1", sandbox=sb, limits=FAST)
    assert not v.valid and v.kind == "nondeterministic" and "two runs" in v.reason, v


def test_timeout_and_bad_inputs(sb):
    v = validate_proposal("def f(a):\n    while True:\n        pass\n", "1", sandbox=sb, limits=Limits(timeout=0.5))
    assert not v.valid and v.kind == "timeout" and "time limit (0.5 s)" in v.reason
    for bad in ("", "os.system('x')", "x=1", "*[1]", "f(1)"):
        v = validate_proposal("def f(*a):\n    return a\n", bad, sandbox=sb, limits=FAST)
        assert not v.valid and v.kind == "bad_input", (bad, v)
    assert parse_input(" [1, 2],\n 'a' ") == "f([1, 2], 'a')" and parse_input("set()") == "f(set())"


# -- parsing -------------------------------------------------------------------------------------

def test_answer_parsing_is_tolerant_but_never_guesses():
    text = "<think>x</think>< ANSWER >\n```Py\n    def f(a):\n        return a\n```\n```input   \n 1 \n```\n</Answer >"
    assert fenced_blocks(answer_text(text))["python"] == ["    def f(a):\n        return a"]
    assert fenced_blocks(answer_text(text))["input"] == [" 1"]
    assert answer_text("no tags here") is None
    # the answer follows the reasoning (AZR's format): one drafted inside it is not the answer
    assert answer_text("<think>maybe <answer>5</answer> no wait, it is 6</think> <answer>6</answer>") == "6"
    assert answer_text("<think>maybe <answer>5</answer> no wait, it is 6</think>") is None
    assert answer_text("<think>maybe <answer>5</answer>") is None  # the reasoning never ended
    assert answer_text("<answer>7</answer>") == "7"  # no reasoning written: the answer as it stands
    assert fenced_blocks("```\n1\n```")["output"] == []  # an unlabelled fence is not guessed to be the output
    assert parse_verdict("<answer> Correct. </answer>") is True and parse_verdict("<answer>`incorrect`</answer>") is False
    assert parse_verdict("<answer>maybe</answer>") is None and parse_verdict("correct") is None
    assert parse_verdict("<answer>\\text{correct}</answer>") is True  # was -1, unparsable
    assert parse_verdict("<answer>\\boxed{\\text{incorrect}}</answer>") is False


# -- checks ----------------------------------------------------------------------------------------

def test_deduction_compares_values_not_strings():
    assert check_deduction(reply("output", "[1,2]"), "[1, 2]").correct is True
    assert check_deduction(reply("output", "{'b': 2, 'a': 1}"), "{'a': 1, 'b': 2}").correct is True
    wrong = check_deduction(reply("output", "'[1, 2]'"), "[1, 2]")
    assert wrong.formatted and wrong.correct is False
    assert not check_deduction(reply("output", "[1, 2"), "[1, 2]").formatted  # not a literal
    two = "<answer>```output\n1\n```\n```output\n1\n```</answer>"
    assert not check_deduction(two, "1").formatted  # two blocks: ambiguous, not guessed
    assert not check_deduction("```output\n1\n```", "1").formatted  # no answer block


def test_abduction_accepts_any_input_that_gives_the_output(sb):
    program = "def f(x):\n    return x % 3\n"
    assert check_abduction(reply("input", "4"), program, "1", sb, FAST).correct is True
    assert check_abduction(reply("input", "7"), program, "1", sb, FAST).correct is True
    wrong = check_abduction(reply("input", "5"), program, "1", sb, FAST)
    assert wrong.formatted and wrong.correct is False
    raised = check_abduction(reply("input", "'a'"), program, "1", sb, FAST)
    assert raised.formatted and raised.correct is False and "error" in raised.detail
    code = check_abduction(reply("input", "__import__('os').getpid()"), program, "1", sb, FAST)
    assert not code.formatted  # only literals reach the sandbox


#: Deterministic on the proposer's input; on any other, a value that depends on the run (the plain run
#: lacks the padding's `_arena_pad`, the recheck has it): a coin toss's stand-in that always shows.
TWO_FACED = ("def f(x):\n    if x == 12345:\n        return 1\n    try:\n        _arena_pad\n        return 1\n"
             "    except NameError:\n        return 0\n")
COIN = "import os\n\ndef f(x):\n    if x == 12345:\n        return 1\n    return os.urandom(1)[0] % 2\n"


def test_abduction_runs_f_twice_so_a_task_with_two_results_shows(sb):
    """A proposer's f, deterministic on its own input and a coin toss on others (the random
    source reached past the static checks: `enum.bltns`), passed validation, paid its proposer
    about 0.5 learnability a task, and its solvers for guesses (a red-team review)."""
    check = check_abduction(reply("input", "0"), TWO_FACED, "1", sb, FAST)
    assert check.formatted and check.correct is False and check.nondeterministic
    assert "the task's f is nondeterministic: two runs of f(0) gave '0' and '1'" in check.detail
    honest = check_abduction(reply("input", "12345"), TWO_FACED, "1", sb, FAST)
    assert honest.correct is True and not honest.nondeterministic and honest.statuses == ["ok", "ok"]
    coins = [check_abduction(reply("input", "0"), COIN, "1", sb, FAST) for _ in range(30)]
    assert any(c.nondeterministic for c in coins)  # each caught with probability 1/2: all 30 missed, 2^-30
    assert all(c.correct is False for c in coins if c.nondeterministic)


def test_a_task_with_two_results_is_voided_when_solved(tmp_path):
    """Found at solve time, the proposal is invalid after all: -1, the episode ends there, the
    attempts are masked (their results were the task's, not their answers'), no buffer gets it."""
    texts = {"proposer": [proposal(TWO_FACED, "12345")], "solver": [reply("input", "12345"), reply("input", "0")]}
    kwargs = {"n": 4, "sandbox": "process", "store": "test-void", "buffer_path": str(tmp_path / "buffer")}
    [ep] = play("azr/Abduction-v0", [Scripted(texts)], 1, seed=0, env_kwargs=kwargs)
    assert [t.role for t in ep.turns] == ["proposer", "solver", "solver"]
    assert ep.outcome["reason"] == "invalid_proposal" and ep.outcome["rejection"] == "nondeterministic"
    assert "found when solved: the task's f is nondeterministic" in ep.outcome["detail"]
    assert ep.turns[0].reward == -1.0 and ep.rewards["proposer"] == -1.0
    assert [t.info.get("infra", False) for t in ep.turns] == [False, True, True]
    assert ep.turns[1].info["correct"] is True and ep.turns[2].info["correct"] is None
    assert not (tmp_path / "buffer" / "azr_tasks.jsonl").exists()
    assert ep.turns[0].info["task"]["id"] not in {t.id for b in shared_store("test-void").buffers.values() for t in b}
    assert verify(ep) == []
    env = arena.make("azr/Abduction-v0", n=2, sandbox="process")  # its own buffer: the same
    env.reset(seed=0)
    for text in (proposal(TWO_FACED, "12345"), reply("input", "0")):
        env.step(text)
    assert env.done and env.rejections == {"nondeterministic": 1} and len(env.store) == 3  # the seed tasks


def test_induction_must_reproduce_every_hidden_pair(sb):
    calls, gold = ["f(3)", "f(-4)", "f(10)"], ["6", "-8", "20"]
    assert check_induction(reply("python", "def f(x):\n    return x + x"), calls, gold, sb, FAST).correct is True
    partial = "def f(x):\n    return {3: 6, -4: -8}.get(x, 0)"
    assert check_induction(reply("python", partial), calls, gold, sb, FAST).correct is False
    broken = check_induction(reply("python", "def f(x) return x"), calls, gold, sb, FAST)
    assert broken.formatted and broken.correct is False
    assert not check_induction(reply("output", "6"), calls, gold, sb, FAST).formatted


# -- rewards ----------------------------------------------------------------------------------------

def test_reward_formulas_by_hand():
    assert solver_reward(Check(True, True)) == 1.0
    assert solver_reward(Check(True, False)) == -0.5
    assert solver_reward(Check(False, False)) == -1.0
    assert learnability([1, 0, 0, 0]) == pytest.approx(0.75)
    assert learnability([1, 1, 1, 0]) == pytest.approx(0.25)
    assert learnability([0] * 8) == 0.0  # r = 0: 0, not AZR code's -0.5
    assert learnability([1] * 8) == 0.0
    assert verifier_reward(True, True) == 1.0 and verifier_reward(False, True) == 0.0
    assert verifier_reward(None, False) == -1.0


def test_episode_rewards_and_per_attempt_credit():
    """n = 4 attempts: right, right, wrong, malformed. Proposer 1 - 0.5; each attempt its own reward."""
    program = "def f(a):\n    return a * 2\n"
    texts = {"proposer": [proposal(program, "21")],
             "solver": [reply("output", "42"), reply("output", " 42 "), reply("output", "41"), "42"],
             "verifier": ["<answer>correct</answer>"]}
    [ep] = play("azr/Deduction-v0", [Scripted(texts)], 1, seed=0, env_kwargs={"n": 4, "sandbox": "process"})
    assert [t.role for t in ep.turns] == ["proposer"] + ["solver"] * 4 + ["verifier"]
    assert [t.reward for t in ep.turns[1:5]] == [1.0, 1.0, -0.5, -1.0]
    assert ep.turns[0].reward == pytest.approx(0.5) and ep.rewards["proposer"] == pytest.approx(0.5)
    assert ep.rewards["solver"] == pytest.approx((1 + 1 - 0.5 - 1) / 4)
    assert [t.legal for t in ep.turns[1:5]] == [True, True, True, False]
    judged = ep.turns[-1].info["judged_attempt"]
    truth = judged <= 2
    assert ep.turns[-1].reward == (1.0 if truth else 0.0) and ep.outcome["solve_rate"] == 0.5
    assert all(t.info["task_type"] == "deduction" for t in ep.turns)
    assert verify(ep) == []


def test_invalid_proposal_scores_minus_one_and_is_counted():
    env = arena.make("azr/Abduction-v0", sandbox="process")
    env.reset(seed=1)
    env.step(proposal("import random\n\ndef f(a):\n    return random.random()", "1"))
    assert env.done and env.rewards["proposer"] == -1.0 and env.outcome["reason"] == "invalid_proposal"
    assert env.outcome["rejection"] == "banned_import" and env.turn_info["legal"] is False
    assert env.rejections == {"banned_import": 1} and env.turn_info["task_type"] == "abduction"
    env.reset(seed=2)
    env.step("<answer>```python\ndef f(a): return a\n```</answer>")  # no input block
    assert env.outcome["rejection"] == "format" and env.rewards["proposer"] == -1.0


# -- infra ---------------------------------------------------------------------------------------------

def test_infra_failure_is_masked_never_scored(tmp_path):
    """A sandbox that cannot start (its interpreter is missing) gives `infra`: the turn is
    flagged for the trainer and its reward is not a score."""
    from arena.samples import collect

    broken = {"python": "/nonexistent/python3", "start_timeout_s": 5}
    [ep] = play("azr/Deduction-v0", [HeuristicAgent(seed=0)], 1, seed=0,
                env_kwargs={"sandbox": "process", "sandbox_config": broken})
    assert ep.outcome["reason"] == "infra" and ep.turns[0].info["infra"] is True
    assert ep.turns[0].legal is None and ep.rewards["proposer"] == 0.0
    ep.turns[0].token_ids, ep.turns[0].prompt_ids = [1], [1]
    [sample] = collect([ep], "heuristic")
    assert sample.reward is None and sample.task_type == "deduction"

    env = arena.make("azr/Abduction-v0", n=2, sandbox="process")
    dead = sandbox_pool("solver", "process", 1, broken)
    good = env.pool("gold")
    env.pool = lambda domain: dead if domain == "solver" else good
    env.reset(seed=0)
    while not env.done:
        env.step(env.heuristic_action())
    assert [c.get("infra", False) for c in env.turn_credit] == [True, True, True, True]
    assert env.rewards == {"proposer": 0.0, "solver": 0.0, "verifier": 0.0}


@pytest.mark.parametrize("timeout", [1e12, float("inf"), float("nan"), 0])
def test_a_timeout_out_of_range_is_one_line(timeout):
    """1e12 passed the check and overflowed the runner's deadline (a traceback from the sandbox)."""
    with pytest.raises(ArenaError, match=r"0 < timeout <= 3600 seconds; .*timeout="):
        arena.make("azr/Deduction-v0", timeout=timeout, sandbox="process")
    with pytest.raises(ValueError, match="at most 86400 seconds"):
        Limits(timeout=timeout)


# -- buffers and lineage -----------------------------------------------------------------------------

def test_buffers_grow_save_restore_and_lineage(tmp_path):
    store_dir = tmp_path / "buffers"
    episodes = play("azr/Mixed-v0", [HeuristicAgent(seed=0)], 8, seed=0, concurrency=1,
                    env_kwargs={"n": 2, "sandbox": "process", "buffer_path": str(store_dir), "store": "test-lineage"})
    new_ids = {ep.outcome["task_id"] for ep in episodes}
    saved = (store_dir / "azr_tasks.jsonl").read_bytes()
    assert all(verify(ep) == [] for ep in episodes[:3])
    assert (store_dir / "azr_tasks.jsonl").read_bytes() == saved  # a replay adds nothing to the user's buffer
    lines = saved.decode().splitlines()
    assert {json.loads(line)["id"] for line in lines} == new_ids
    restored = TaskStore.load(store_dir)
    assert {"seed-deduction", "seed-abduction", "seed-induction"} | new_ids == {t.id for b in restored.buffers.values() for t in b}
    env = arena.make("azr/Mixed-v0", buffer_path=str(store_dir))
    assert len(env.store) == len(restored)
    for ep in episodes:
        refs = [r["id"] for r in ep.options["references"]]
        assert set(refs) <= set(restored.graph.predecessors(ep.outcome["task_id"]))
    first = next(ep for ep in episodes if ep.options["task_type"] != "induction")
    assert "seed-" + first.options["task_type"] in nx.ancestors(restored.graph, first.outcome["task_id"])
    restored.save(tmp_path / "saved")
    graph = nx.node_link_graph(json.loads((tmp_path / "saved" / "azr_lineage.json").read_text()), edges="edges")
    assert set(graph.edges) == set(restored.graph.edges) and len(graph) >= len(new_ids) + 3


def test_a_task_torn_by_a_kill_is_cut_and_the_next_one_starts_its_own_line(tmp_path):
    """A torn last line was skipped on load, then the next task was appended to it: that
    task was lost and every later load failed."""
    store = TaskStore(tmp_path)
    program = "def f(a):\n    return a + 1\n"
    store.add(Task("deduction", program, ["1"], ["2"]))
    with open(tmp_path / "azr_tasks.jsonl", "ab") as f:
        f.write(b'{"type": "deduction", "prog')
    again = TaskStore(tmp_path)
    again.add(Task("deduction", program, ["2"], ["3"]))
    assert len(TaskStore(tmp_path).buffers["deduction"]) == 3  # the seed and both tasks


def test_two_stores_appending_to_one_file_keep_its_order(tmp_path):
    """A store that appends after another one did (two `arena play` runs on one
    `buffer_path`, a mirror beside its writer) first reads the other's tasks: its count of
    the file's bytes once fell mid-line, and the next read of the file failed."""
    from arena.envs.absolute_zero.buffers import TASKS_FILE, Task, TaskStore, shared_store

    mine, other = shared_store("two-writers", str(tmp_path)), TaskStore(tmp_path)
    tasks = [Task("deduction", f"def f(a):\n    return a + {k}\n", ["1"], [str(1 + k)]) for k in (1, 2222222, 3)]
    mine.add(tasks[0])
    other.add(tasks[1])
    mine.add(tasks[2])
    assert mine.size == (tmp_path / TASKS_FILE).stat().st_size
    assert [t.id for t in mine.buffers["deduction"][1:]] == [t.id for t in tasks]
    assert [t.id for t in shared_store("two-writers", str(tmp_path)).buffers["deduction"][1:]] == [t.id for t in tasks]


def test_a_buffer_path_under_a_file_is_one_line_when_the_env_is_made(tmp_path):
    """It raised FileExistsError at the first valid proposal, mid-run."""
    (tmp_path / "afile").touch()
    for path in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(ArenaError, match="afile is a file, not a folder; give a folder for the task buffer"):
            arena.make("azr/Deduction-v0", buffer_path=str(path))


def test_references_come_from_the_buffer_and_replay_without_it():
    episodes = play("azr/Deduction-v0", [HeuristicAgent(seed=3)], 6, seed=5, concurrency=1,
                    env_kwargs={"n": 2, "sandbox": "process", "k": 3})
    sizes = [len(ep.options["references"]) for ep in episodes]
    assert sizes[0] == 1 and max(sizes) == 3  # the identity seed, then up to k of the grown buffer
    assert all(verify(ep) == [] for ep in episodes)  # a fresh env: the references come from options


def test_a_runs_buffer_lasts_the_run_and_a_resume_goes_on_from_its_checkpoint(tmp_path):
    """A run's envs share one buffer kept in its env-state folder (`run_kwargs`): every
    training step made new env objects, each of which started from the seed task, so no
    proposer ever saw an earlier proposal. A resumed run cuts the buffer file back to its
    checkpoint's size and plays the step again as the uncut run did."""
    from arena.resume import cut_env_state_after, env_state_sizes
    from arena.rollout import run_env_kwargs

    run = tmp_path / "run"
    kwargs = run_env_kwargs(["azr/Deduction-v0"], [{"n": 2, "sandbox": "process"}], run.name, run / "env-state")

    def step(index):  # one training step's rollout: 6 episodes, all reset before any proposal is checked
        return play("azr/Deduction-v0", [HeuristicAgent(seed=index)], 6, seed=0, start_index=6 * index,
                    env_kwargs=kwargs)

    first = step(0)
    assert all([r["id"] for r in ep.options["references"]] == ["seed-deduction"] for ep in first)
    checkpoint = env_state_sizes(run)  # as a checkpoint after step 0 records it
    assert list(checkpoint) == ["azr/azr_tasks.jsonl"]
    second = step(1)
    proposed = {ep.outcome["task_id"] for ep in first}
    assert all({r["id"] for r in ep.options["references"]} <= proposed | {"seed-deduction"} for ep in second)
    assert {r["id"] for ep in second for r in ep.options["references"]} & proposed
    assert cut_env_state_after(run, checkpoint) == 1
    buffer = run / "env-state" / "azr"
    assert (buffer / "azr_tasks.jsonl").stat().st_size == checkpoint["azr/azr_tasks.jsonl"]
    assert len((buffer / "azr_tasks.after-checkpoint.jsonl").read_text().splitlines()) == 6  # moved, not deleted
    again = step(1)  # the process's store reads the cut file again
    assert [(ep.options, [t.completion for t in ep.turns]) for ep in again] == \
        [(ep.options, [t.completion for t in ep.turns]) for ep in second]
    assert all(verify(ep) == [] for ep in again[:2])
    assert run_env_kwargs(["azr/Deduction-v0"], [{"store": "mine", "buffer_path": "b"}], "r", run)[0] == \
        {"store": "mine", "buffer_path": "b"}  # the user's own store and path are kept


def test_a_steps_episodes_see_the_buffer_of_its_start_and_a_mirror_plays_as_the_writer(tmp_path):
    """Training folds a step's valid tasks into the run's buffer after the step
    (`arena.env_state`): its episodes see the buffer of the step's start, one at a time as
    well as all at once, and a process that plays a share of the next step with a mirror of
    the writer's buffer (a data-parallel process, a Ray actor) plays what the writer would.
    Before, each process kept the tasks of its own share only, and from the seed again on
    --resume; `arena play` (run_state on) adds each stored episode's task at once."""
    from arena.env_state import StateMirror, apply_tail, fold_episodes
    from arena.rollout import run_env_kwargs

    env, base = "azr/Deduction-v0", {"n": 2, "sandbox": "process"}
    run, mirror = tmp_path / "run", tmp_path / "mirror"
    writer = run_env_kwargs([env], [base], run.name, run / "env-state")
    copy = run_env_kwargs([env], [base], run.name, mirror)

    def played(kwargs, start, count, run_state=False):  # a share of step 1 (episodes 6-11) or step 0
        episodes = play(env, [HeuristicAgent(seed=start)], count, seed=0, start_index=start, env_kwargs=kwargs,
                        concurrency=1, run_state=run_state)
        return episodes, [(ep.options, [t.completion for t in ep.turns]) for ep in episodes]

    first, _ = played(writer, 0, 6)
    assert all([r["id"] for r in ep.options["references"]] == ["seed-deduction"] for ep in first)
    tasks = run / "env-state" / "azr" / "azr_tasks.jsonl"
    assert not tasks.exists()  # nothing added during the step
    fold_episodes([env], writer, first)
    proposed = [t.info["task"]["id"] for ep in first for t in ep.turns if t.role == "proposer"]
    assert [json.loads(line)["id"] for line in tasks.read_text().splitlines()] == proposed  # in index order
    sent = StateMirror()
    apply_tail(mirror, sent.tail(run / "env-state"))
    assert (mirror / "azr" / "azr_tasks.jsonl").read_bytes() == tasks.read_bytes()
    assert sent.tail(run / "env-state") == {}  # nothing new to send
    mine, theirs = played(writer, 9, 3)[1], played(copy, 9, 3)[1]
    assert mine == theirs
    assert {r["id"] for options, _ in mine for r in options["references"]} & set(proposed)
    _, at_once = played(run_env_kwargs([env], [base], "play", None), 0, 3, run_state=True)
    assert [len(options["references"]) for options, _ in at_once] == [1, 2, 3]  # seed, then each stored episode's task


# -- whole episodes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["azr/Deduction-v0", "azr/Abduction-v0", "azr/Induction-v0", "azr/Mixed-v0"])
def test_scripted_agents_play_every_env_to_the_end(env_id):
    episodes = play(env_id, [HeuristicAgent(seed=1)], 4, seed=0, env_kwargs={"n": 3, "sandbox": "process"})
    summary = summarize_azr(episodes)
    assert summary["valid_proposals"] == 4 and summary["rejections"] == {}
    for stats in summary["by_type"].values():
        assert stats["solve_rate"] == 1.0 and stats["verifier_accuracy"] == 1.0 and stats["mean_learnability"] == 0.0
    assert all(verify(ep) == [] for ep in episodes)


def test_induction_hides_half_of_the_pairs():
    env = arena.make("azr/Induction-v0", n=1, sandbox="process")
    env.reset(seed=0)
    env.step(env.heuristic_action())
    shown = env.observe("solver")
    task = env.task
    assert len(env.visible) == len(task.inputs) // 2 and len(env.hidden) == len(task.inputs) - len(env.visible)
    for i in env.visible:
        assert f"```input\n{task.inputs[i]}\n```" in shown
    for i in env.hidden:
        assert f"```input\n{task.inputs[i]}\n```" not in shown


def test_prompts_carry_their_own_criteria_and_r1_format():
    ded, abd = arena.make("azr/Deduction-v0"), arena.make("azr/Abduction-v0")
    ded.reset(seed=0)
    abd.reset(seed=0)
    assert "must work out the output" in ded.observe("proposer") and "must find an input" not in ded.observe("proposer")
    assert "must find an input" in abd.observe("proposer") and "must work out the output" not in abd.observe("proposer")
    system = ded.prompt("proposer")[0]["content"]
    assert "<think>" in system and "<answer>" in system


def test_cli_play_and_replay_verify(tmp_path):
    env = {**os.environ, "COLUMNS": "160"}
    run = tmp_path / "azr"
    cmd = [sys.executable, "-m", "arena.cli"]
    played = subprocess.run([*cmd, "play", "azr/Mixed-v0", "--agents", "heuristic", "-n", "4", "--out", str(run),
                             "--kw", "n=2", "--kw", "sandbox=\"process\""], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert played.returncode == 0, played.stderr
    # roles scored on their own, no winner: the results are counted by the return's sign, and said so
    assert re.search(r"┃ role +┃ agent +┃ return > 0 ┃ = 0 +┃ < 0 +┃", played.stdout) and "win" not in played.stdout
    verified = subprocess.run([*cmd, "replay", str(run), "--verify"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert verified.returncode == 0 and "all replay exactly" in verified.stdout, verified.stdout + verified.stderr
    tasks = run / "env-state" / "azr" / "azr_tasks.jsonl"  # the run's buffer
    assert len(tasks.read_text().splitlines()) == 4
    again = subprocess.run([*cmd, "play", "azr/Deduction-v0", "--agents", "heuristic", "-n", "1", "--out", str(run),
                            "--overwrite", "--kw", "n=2", "--kw", "sandbox=\"process\""], capture_output=True, text=True,
                           env=env, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert len(tasks.read_text().splitlines()) == 1  # the replaced episodes' tasks went with them
    (run / "episodes.jsonl").unlink()
    (run / "run.json").unlink()
    fresh = subprocess.run([*cmd, "play", "azr/Deduction-v0", "--agents", "heuristic", "-n", "1", "--out", str(run),
                            "--kw", "n=2"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert fresh.returncode == 2 and "holds the env state of an earlier run" in fresh.stderr, fresh.stderr


def test_same_episodes_in_two_processes():
    code = ("import json; from arena.rollout import play; from arena.agents import RandomAgent; "
            "eps = play('azr/Mixed-v0', [RandomAgent(seed=2)], 4, seed=9, env_kwargs={'n': 3, 'sandbox': 'process'}); "
            "recs = [e.to_dict() for e in eps]; [t['info'].pop('seconds') for r in recs for t in r['turns']]; "
            "print(json.dumps(recs, sort_keys=True))")
    outs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1] and len(json.loads(outs[0])) == 4


def test_outputs_are_limited_so_a_hostile_result_costs_the_host_little():
    """An answer could fill its result line to 60 MB (`\\u0041` escapes), which the host
    scanned for 1.8 s of CPU before refusing it: the env's jobs keep values and printed text
    to `MAX_OUTPUT_CHARS`, so the line is under 1 MB; an output over it is no task."""
    from arena.envs.absolute_zero.tasks import MAX_OUTPUT_CHARS
    from arena.sandbox.runner import result_cap

    env = arena.make("azr/Deduction-v0", sandbox="process")
    assert env.limits.max_value == env.limits.max_output == MAX_OUTPUT_CHARS
    assert result_cap({"max_output": MAX_OUTPUT_CHARS, "max_value": MAX_OUTPUT_CHARS}, 5) < 1_000_000
    assert result_cap({"max_output": 65536, "max_value": 1 << 20}, 5) > 60_000_000  # the sandbox's defaults
    env.reset(seed=0)
    env.step(proposal("def f(n):\n    return list(range(n))", "5000"))
    assert env.outcome["rejection"] == "output_limit" and "limit 10000" in env.outcome["detail"]
