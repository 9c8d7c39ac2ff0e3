"""Absolute Zero's prompts, written for arena (same rules and answer blocks as AZR's, in our
own words). The evaluation criteria of each task type describe that type; AZR's code has
the deduction and abduction criteria swapped.
"""

from __future__ import annotations

from collections.abc import Sequence

from arena.envs.absolute_zero.buffers import Task

SYSTEM_PROMPT = (
    "You are the assistant in a conversation with a user who sets you a task. Before you answer, think the "
    "task through; write that reasoning between <think> and </think>, then write your final answer between "
    "<answer> and </answer>, in this shape: <think> your reasoning </think> <answer> your answer </answer>."
)

BANNED_HINT = ("random, secrets, time, datetime, uuid, os, sys, subprocess, threading, multiprocessing, asyncio, io, "
               "pathlib, shutil, socket, urllib, ctypes, importlib, inspect, gc, pickle, hashlib, hmac, calendar, "
               "numpy.random and other ways to reach randomness, clocks, files, the network or the interpreter")


def _fence(kind: str, body: str) -> str:
    return f"```{kind}\n{body.rstrip()}\n```"


def _rules(timeout: float, single_function: bool) -> str:
    helpers = ("Only the function f: no other functions or classes." if single_function
               else "Helper functions and classes are allowed; f is the entry point.")
    return (
        "### Rules\n"
        "- Define the entry function `f` at the top level of the program. " + helpers + "\n"
        "- The program must be deterministic: the same input always gives the same output. No randomness, no "
        "clocks or dates, no reading or writing of files, the console or the network, no printing, and no state "
        "outside the program.\n"
        f"- It must finish within {timeout:g} seconds.\n"
        "- Put any imports at the top. Do not import (in any spelling) or call the following, and do not use "
        f"eval, exec, open, getattr or __import__: {BANNED_HINT}.\n"
        "- An input is the argument list of one call to f, written with Python literals: `f(<input>)` must be "
        "a valid call; separate several arguments with commas.\n"
        "- Outputs must be builtin values (numbers, strings, booleans, None, and lists, tuples, dicts and sets of "
        "them) whose repr reads back as a Python literal.\n"
    )


_CRITERIA = {
    "deduction": (
        "### Evaluation criteria\n"
        "The solver will see your program and your input and must work out the output by reasoning alone. "
        "Choose a program and an input whose output takes several careful steps to trace (loops, branches, "
        "state, data structures), yet can be reached without running the code. Your score is highest when "
        "the solver succeeds sometimes but not always.\n"
    ),
    "abduction": (
        "### Evaluation criteria\n"
        "The solver will see your program and the output it gives on your input, and must find an input that "
        "produces that output (any such input counts). Choose a program whose behaviour must be understood, "
        "and run backwards, to find an input: not one whose input can be read off the output. Your score is "
        "highest when the solver succeeds sometimes but not always.\n"
    ),
}


def _snippets(references: Sequence[Task]) -> str:
    parts = []
    for i, task in enumerate(references, 1):
        parts.append(f"<snippet_{i}>\n{_fence('python', task.program)}\n{_fence('input', task.inputs[0])}\n"
                     f"{_fence('output', task.outputs[0])}\n</snippet_{i}>")
    return "\n".join(parts)


def propose_prompt(task_type: str, references: Sequence[Task], timeout: float, single_function: bool) -> str:
    """The proposer's task for deduction or abduction: a new program and one input, with
    the reference triplets from the buffer."""
    return (
        "## Task: write a Python program and one input for it\n"
        "Write a new Python program with an entry function `f`, and one input to call it with. Make it "
        "different from the reference examples below.\n\n"
        + _rules(timeout, single_function) + "\n" + _CRITERIA[task_type] + "\n"
        "### Answer format\n"
        "<answer>\n" + _fence("python", "def f(...):\n    ...") + "\n" + _fence("input", "...") + "\n</answer>\n\n"
        "### Reference examples\n" + _snippets(references)
    )


def induction_propose_prompt(reference: Task, num_inputs: int, timeout: float) -> str:
    """The proposer's task for induction: inputs for a program from the buffer, and a
    message that hints at what it does."""
    return (
        "## Task: write inputs and a message for a program\n"
        f"Here is a Python program. Write {num_inputs} different inputs for it, and a message for a solver. "
        "The solver will see half of the input/output pairs and your message, and must write a function f "
        "that also gives the outputs of the hidden half.\n\n"
        + _fence("python", reference.program) + "\n\n"
        "### Rules\n"
        "- Each input is the argument list of one call to f, written with Python literals (`f(<input>)` must be "
        "a valid call); put each input in its own ```input block.\n"
        f"- Every call must finish within {timeout:g} seconds and return a builtin value.\n"
        "- The message describes the task without giving the code away; put it in one ```message block.\n\n"
        "### Evaluation criteria\n"
        "Choose inputs that, together, show what the program does (different kinds and sizes), and a message "
        "that helps without stating the answer. Your score is highest when the solver succeeds sometimes but "
        "not always.\n\n"
        "### Answer format\n"
        "<answer>\n" + _fence("input", "...") + "\n" + _fence("input", "...") + "\n...\n"
        + _fence("message", "...") + "\n</answer>\n"
    )


def deduction_solve_prompt(program: str, input_text: str) -> str:
    return (
        "## Task: work out the output of a program\n"
        "Given the program and the input below, work out what `f(<input>)` returns, by reasoning.\n\n"
        + _fence("python", program) + "\n" + _fence("input", input_text) + "\n\n"
        "Answer with the returned value as a Python literal:\n<answer>\n" + _fence("output", "...") + "\n</answer>\n"
    )


def abduction_solve_prompt(program: str, output_text: str) -> str:
    return (
        "## Task: find an input for a program\n"
        "Given the program and an output below, find an input such that `f(<input>)` returns exactly this "
        "output. Any input that does is right.\n\n"
        + _fence("python", program) + "\n" + _fence("output", output_text) + "\n\n"
        "Answer with the input as the argument list of the call, written with Python literals (several "
        "arguments separated by commas):\n<answer>\n" + _fence("input", "...") + "\n</answer>\n"
    )


def induction_solve_prompt(message: str, pairs: Sequence[tuple[str, str]]) -> str:
    shown = "\n".join(f"{_fence('input', i)}\n{_fence('output', o)}" for i, o in pairs)
    return (
        "## Task: write the function\n"
        "Write a Python function `f` that returns each output below for its input, and the right outputs for "
        "other inputs of the same kind (it is checked on inputs you do not see). The message from the task's "
        "author:\n" + _fence("message", message) + "\n\n### Examples\n" + shown + "\n\n"
        "Answer with the program (helper functions and classes allowed; the entry point is f):\n"
        "<answer>\n" + _fence("python", "def f(...):\n    ...") + "\n</answer>\n"
    )


def verify_prompt(task_text: str, answer: str) -> str:
    return (
        "## Task: judge an answer\n"
        "Below is a task and one answer to it. Decide whether the answer is correct.\n\n"
        "### The task\n" + task_text + "\n\n### The answer\n" + answer + "\n\n"
        "Reply <answer>correct</answer> if the answer is right, or <answer>incorrect</answer> if it is not.\n"
    )
