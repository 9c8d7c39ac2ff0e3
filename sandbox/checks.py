"""Static checks before execution, and the determinism check (AZR's validation of a proposal).

These are AZR's task-validity rules for proposals (programs a model wrote as tasks: no
randomness, no I/O, no clocks, within size bounds). They are **not a security boundary**
and never were one: routes to a clock or a file through allowed modules may remain (each
one found is refused: ``print.__self__``, ``_frozen_importlib``, ``posixpath.os``,
``codecs.open``; a task reading a clock rounded coarsely enough passes the determinism
check and makes its solvers' results a coin toss). The sandbox contains programs with
ctypes and raw system calls whether or not they passed these checks (issue 8; see
`arena.sandbox.runner`).

- `check_syntax`: the program parses.
- `check_size`: characters and lines within bounds.
- `find_banned_imports`: an AST walk that resolves dotted names. ``import os.path``,
  ``from os import system``, ``from os.path import join``, ``import numpy.random as r``
  all reduce to their top-level module (``os``, ``numpy``) and to the full dotted name, and
  each is matched against the banned list (a banned ``a`` bans ``a.b``; a banned ``a.b``
  bans ``a.b`` and ``a.b.c`` but not ``a``). Dynamic imports are flagged too:
  ``__import__(...)``, ``importlib.*``, ``exec``/``eval``/``compile`` on strings,
  ``builtins``/``__builtins__`` access, ``globals()``/``vars()`` tricks and
  ``getattr(x, "__import__")``-style lookups of dunder names given as strings.
- `check_program`: all of the above, returning a `CheckResult`.
- `check_determinism`: runs the program and calls ``runs`` times in separate processes
  and compares the results (values, statuses and stdout).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arena.sandbox.config import Limits
    from arena.sandbox.pool import Sandbox
    from arena.sandbox.result import ExecResult

BANNED_MODULES: tuple[str, ...] = (
    # nondeterminism (AZR's list): randomness, clocks, the environment
    "random", "secrets", "time", "datetime", "uuid",
    # the operating system, processes and threads
    "os", "sys", "subprocess", "threading", "_thread", "multiprocessing", "concurrent",
    "asyncio", "signal", "resource", "pty", "fcntl", "termios", "posix", "pwd", "grp",
    "platform", "sysconfig",
    # files and I/O
    "io", "pathlib", "shutil", "tempfile", "glob", "fnmatch", "fileinput", "filecmp",
    "mmap", "pickle", "shelve", "marshal", "sqlite3", "dbm", "zipfile", "tarfile",
    "gzip", "bz2", "lzma", "linecache", "tokenize",
    # the network
    "socket", "ssl", "select", "selectors", "http", "urllib", "ftplib", "smtplib",
    "poplib", "imaplib", "telnetlib", "socketserver", "xmlrpc", "webbrowser", "email",
    # introspection and code loading
    "ctypes", "cffi", "importlib", "imp", "pkgutil", "runpy", "builtins", "__builtin__",
    "inspect", "gc", "code", "codeop", "types", "weakref", "atexit", "faulthandler",
    "tracemalloc", "traceback", "dis", "ast",
    # modules that open files, read clocks or the environment, or lead to one that does
    # (`posixpath.os`, `logging.time`, `codecs.open`)
    "codecs", "logging", "posixpath", "ntpath", "genericpath", "timeit", "sched", "zoneinfo", "locale",
    "getpass", "site", "pdb", "bdb", "cProfile", "profile", "trace", "zipimport", "configparser", "netrc",
    "mailbox", "unittest", "pydoc",
    # third-party heavyweights a task program has no business importing
    "numpy.random", "torch", "tensorflow", "requests",
    # the rest of AZR's list: one-way hashes (a task no one can invert is no task) and clocks'
    # calendars, and pebble's worker processes
    "hashlib", "hmac", "bcrypt", "calendar", "pebble",
)
"""Default banned modules. AZR's list (`configs/azr_ppo_trainer.yaml`: logging, random,
multiprocessing, pebble, subprocess, threading, datetime, time, hashlib, hmac, bcrypt, os,
sys, calendar) extended with every other standard-library way to reach
the OS, files, the network, clocks or the interpreter's internals."""

BANNED_CALLS: tuple[str, ...] = (
    "__import__", "exec", "eval", "compile", "open", "input", "breakpoint", "globals",
    "locals", "vars", "getattr", "setattr", "delattr", "exit", "quit", "help", "memoryview",
)
"""Builtins a task program may not call: dynamic imports, code loading, I/O, and the
attribute-by-name functions that defeat a static check."""

BANNED_NAMES: tuple[str, ...] = ("__builtins__", "__import__", "__loader__", "__spec__")
"""Names whose mere use is refused."""

BANNED_ATTRIBUTES: tuple[str, ...] = (
    "__globals__", "__builtins__", "__code__", "__subclasses__", "__bases__", "__mro__",
    "__import__", "__loader__", "__dict__", "__getattribute__", "__reduce__",
    "__reduce_ex__", "gi_frame", "f_globals", "f_locals", "f_back", "tb_frame", "cr_frame",
    "__self__", "__objclass__",
    # operator's getattr by a computed name: attrgetter("__sel" + "f__"); string.Formatter's,
    # by a format field: Formatter().get_field("0.__globals__[__builtins__]", (f,), {})
    "attrgetter", "methodcaller", "get_field",
)
"""Attributes used by sandbox escapes in pure Python (``().__class__.__bases__[0]...``,
``print.__self__``: the builtins module); refused as attributes and as string constants,
and the dunders among them also inside a string (a format field, ``"{0.__globals__}"``)."""

MODULE_ATTRIBUTES: tuple[str, ...] = (
    "os", "_os", "sys", "_sys", "time", "_time", "random", "_random", "datetime", "subprocess", "builtins",
    "io", "_io", "socket", "pathlib", "shutil", "ctypes", "importlib", "locate",
    # every other attribute of an allowed standard-library module that is a banned or private
    # module (`enum.bltns`: builtins, so eval and open; `json.codecs.open`; `queue.threading`;
    # `typing.types`), as tests/sandbox/test_sandbox_checks.py finds them in this Python
    "bltns", "codecs", "threading", "_thread", "inspect", "types", "_types", "weakref", "traceback",
    "linecache", "tokenize", "tempfile", "marshal", "pickle", "posixpath", "locale", "select", "ssl",
    "urllib", "zipfile", "filecmp", "unittest", "pdb", "pydoc", "dis", "ast", "atexit", "__main__",
    "_string", "_sre", "_symtable", "_crypt",
)
"""Names through which an allowed module hands out a banned one (``posixpath.os``,
``from queue import time``, ``from statistics import random``, ``pydoc.locate``,
``enum.bltns``): refused as attributes and as names imported from a module. A program's
own attribute of one of these names (``self.time``) is refused too: a task can name it
otherwise. As strings they are allowed (``d["time"]``)."""


@dataclass
class CheckResult:
    """Outcome of `check_program`: ``ok`` and the list of human-readable problems."""

    ok: bool
    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok


def check_syntax(program: str) -> str | None:
    """None when ``program`` parses, else the SyntaxError message with its line."""
    try:
        ast.parse(program)
    except SyntaxError as e:
        where = f" at line {e.lineno}" if e.lineno else ""
        return f"syntax error{where}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        return f"unparsable program: {type(e).__name__}: {e}"
    return None


def check_size(program: str, max_chars: int = 20_000, max_lines: int = 500) -> str | None:
    """None when the program is within ``max_chars`` characters and ``max_lines`` lines."""
    if len(program) > max_chars:
        return f"program has {len(program)} characters (limit {max_chars})"
    lines = program.count("\n") + 1
    if lines > max_lines:
        return f"program has {lines} lines (limit {max_lines})"
    return None


def _is_banned(name: str, banned: Iterable[str]) -> str | None:
    """The banned entry matching dotted ``name`` (``os`` matches ``os.path``), or None."""
    for b in banned:
        if name == b or name.startswith(b + "."):
            return b
    return None


def _private(name: str) -> str | None:
    """A module private to the interpreter (`_io`, `_frozen_importlib`, `_posixsubprocess`:
    the C halves of banned modules), by its top-level name; `__future__` is not one."""
    top = name.split(".", 1)[0]
    return "private module" if top.startswith("_") and top != "__future__" else None


def _bound_names(tree: ast.AST) -> set[str]:
    """Every name the program binds itself (assignments, parameters, functions, classes,
    imports, loop and comprehension targets): a use of one is not the builtin's."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def find_banned_imports(program: str, banned: Sequence[str] = BANNED_MODULES,
                        banned_calls: Sequence[str] = BANNED_CALLS,
                        banned_names: Sequence[str] = BANNED_NAMES,
                        banned_attributes: Sequence[str] = BANNED_ATTRIBUTES,
                        module_attributes: Sequence[str] = MODULE_ATTRIBUTES) -> list[str]:
    """Every banned import or dynamic-import construct in ``program`` (empty when clean).

    Raises SyntaxError when the program does not parse (call `check_syntax` first)."""
    tree = ast.parse(program)
    problems: list[str] = []
    own = _bound_names(tree)
    banned_tops = {b.split(".")[0] for b in banned}

    def flag(node: ast.AST, msg: str) -> None:
        problems.append(f"line {getattr(node, 'lineno', '?')}: {msg}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                hit = _is_banned(alias.name, banned) or _private(alias.name)
                if hit:
                    flag(node, f"import of banned module {alias.name!r} ({hit})")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: there is no package to import from
                flag(node, "relative import")
                continue
            mod = node.module or ""
            hit = _is_banned(mod, banned) or _private(mod)
            if hit:
                flag(node, f"import from banned module {mod!r} ({hit})")
                continue
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                hit = _is_banned(full, banned)
                if hit:
                    flag(node, f"import of banned module {full!r} ({hit})")
                elif (alias.name in module_attributes or alias.name in banned_tops or alias.name in banned_attributes
                      or (alias.name.startswith("_") and not alias.name.startswith("__"))):
                    # `from queue import time`: a banned module handed out by an allowed one
                    flag(node, f"import of {alias.name!r} from {mod!r}")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else None
            if name in banned_calls:
                flag(node, f"call of {name}()")
        elif isinstance(node, ast.Name):
            if node.id in banned_names:
                flag(node, f"use of {node.id}")
            elif node.id in banned_calls and isinstance(node.ctx, ast.Load) and node.id not in own:
                # the builtin passed around uncalled: `[getattr][0](x, name)`
                flag(node, f"use of {node.id}")
        elif isinstance(node, ast.Attribute):
            if node.attr in banned_attributes or node.attr in module_attributes:
                flag(node, f"access to attribute {node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v in banned_attributes or v in banned_names or v == "__import__":
                flag(node, f"string naming {v}")
            elif "__" in v:  # a format field reaching one: "0.__globals__[__builtins__]"
                inside = next((d for d in (*banned_attributes, *banned_names) if d.startswith("__") and d in v), None)
                if inside:
                    flag(node, f"string containing {inside}")
    return problems


def check_program(program: str, *, banned: Sequence[str] = BANNED_MODULES,
                  max_chars: int = 20_000, max_lines: int = 500,
                  entry: str | None = None) -> CheckResult:
    """All static checks. ``entry``: a function name the program must define at top level
    (AZR's ``f``)."""
    problems = []
    for p in (check_size(program, max_chars, max_lines), check_syntax(program)):
        if p:
            problems.append(p)
    if problems:
        return CheckResult(False, problems)
    problems += find_banned_imports(program, banned)
    if entry is not None:
        tree = ast.parse(program)
        if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == entry
                   for n in tree.body):
            problems.append(f"no top-level function {entry!r}")
    return CheckResult(not problems, problems)


@dataclass
class DeterminismResult:
    """Outcome of `check_determinism`: ``deterministic`` and every run's result."""

    deterministic: bool
    results: list[ExecResult]
    reason: str = ""

    def __bool__(self) -> bool:
        return self.deterministic


def _signature(r: ExecResult) -> tuple:
    return (r.status, tuple((c.status, c.value, c.error_type) for c in r.calls), r.stdout)


def check_determinism(sandbox: Sandbox, program: str, calls: str | Sequence[str],
                      runs: int = 2, limits: Limits | None = None) -> DeterminismResult:
    """Run ``program`` with ``calls`` ``runs`` times, each in its own fresh process (spread
    over the pool's workers), and compare statuses, value reprs, error types and stdout.

    ``deterministic`` is False when any two runs differ, or when a run failed for
    infrastructure reasons (``infra``: nothing can be concluded, and the reason says so)."""
    if runs < 2:
        raise ValueError("check_determinism needs runs >= 2")
    results = sandbox.run_many([(program, calls, limits)] * runs)
    if any(r.infra for r in results):
        return DeterminismResult(False, results, "a run failed for infrastructure reasons")
    first = _signature(results[0])
    for i, r in enumerate(results[1:], start=2):
        if _signature(r) != first:
            return DeterminismResult(False, results, f"run {i} differs from run 1")
    return DeterminismResult(True, results)


__all__ = [
    "BANNED_ATTRIBUTES", "BANNED_CALLS", "BANNED_MODULES", "BANNED_NAMES", "MODULE_ATTRIBUTES", "CheckResult",
    "DeterminismResult", "check_determinism", "check_program", "check_size", "check_syntax",
    "find_banned_imports",
]
