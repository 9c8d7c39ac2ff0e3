"""Static checks (syntax, banned imports, size) and the determinism check."""

from __future__ import annotations

import pytest
from arena.sandbox.checks import (
    BANNED_MODULES,
    MODULE_ATTRIBUTES,
    check_determinism,
    check_program,
    check_size,
    check_syntax,
    find_banned_imports,
)

CLEAN = '''
from collections import Counter
import math, itertools as it
from functools import lru_cache

def f(xs):
    c = Counter(xs)
    return max(c.values()) + math.gcd(12, 8) + len(list(it.permutations(xs[:2])))
'''


def test_clean_program_passes():
    assert find_banned_imports(CLEAN) == []
    res = check_program(CLEAN, entry="f")
    assert res.ok and bool(res) and res.problems == []


@pytest.mark.parametrize("program, needle", [
    ("import os", "'os'"),
    ("import os.path", "'os.path'"),
    ("import os.path as p", "'os.path'"),
    ("from os import system", "'os'"),
    ("from os.path import join", "'os.path'"),
    ("import sys, math", "'sys'"),
    ("import random", "'random'"),
    ("from random import randint", "'random'"),
    ("import time", "'time'"),
    ("from datetime import datetime", "'datetime'"),
    ("import subprocess", "'subprocess'"),
    ("import threading", "'threading'"),
    ("import multiprocessing.pool", "'multiprocessing.pool'"),
    ("import importlib", "'importlib'"),
    ("from importlib import import_module", "'importlib'"),
    ("import builtins", "'builtins'"),
    ("from builtins import open", "'builtins'"),
    ("import socket", "'socket'"),
    ("import ctypes.util", "'ctypes.util'"),
    ("import pathlib", "'pathlib'"),
    ("from numpy.random import rand", "'numpy.random'"),
    ("import numpy.random", "'numpy.random'"),
    ("def f():\n    import shutil\n    return 1", "'shutil'"),
    ("__import__('os')", "__import__"),
    ("x = __builtins__", "__builtins__"),
    ("eval('1')", "eval()"),
    ("exec('import os')", "exec()"),
    ("getattr(f, '__globals__')", "getattr()"),
    ("().__class__.__bases__[0].__subclasses__()", "__subclasses__"),
    ("def f():\n    return f.__globals__", "__globals__"),
    ("open('/etc/passwd')", "open()"),
    ("from . import x", "relative import"),
    # routes to a clock or a file through what is allowed: found by a red-team review, where
    # a task reading /proc/uptime in 200 ms buckets passed validation and turned its
    # solvers' results into a coin toss (learnability ~0.5 for no task at all)
    ("def f(x):\n    return print.__self__.open('/proc/uptime').read()", "__self__"),
    ("import _io", "private module"),
    ("from _frozen_importlib import _imp", "private module"),
    ("import codecs", "'codecs'"),
    ("import logging", "'logging'"),
    ("import posixpath", "'posixpath'"),
    ("import calendar\ndef f(x):\n    return calendar.datetime.date.today()", "attribute datetime"),
    # a second review's routes: a banned module imported by name from an allowed one, the
    # builtin getattr passed around uncalled, operator's getattr by a computed name
    ("from queue import time as clock", "import of 'time' from 'queue'"),
    ("from statistics import random as rnd", "import of 'random' from 'statistics'"),
    ("from shlex import os as o", "import of 'os' from 'shlex'"),
    ("from argparse import _os as o", "import of '_os' from 'argparse'"),
    ("from pydoc import locate", "'pydoc'"),
    ("g = [getattr][0]", "use of getattr"),
    ("import operator\nf = operator.attrgetter('__sel' + 'f__')", "attribute attrgetter"),
    # a third review's: string.Formatter's get_field hands back the object a format field names
    ("import string\ndef f(x):\n    return string.Formatter().get_field('0.__globals__[__builtins__]', (f,), {})",
     "string containing __globals__"),
    ("import string\ndef f(x):\n    return string.Formatter().get_field('0.' + '_' * 2 + 'globals' + '_' * 2, (f,), {})",
     "attribute get_field"),
    ("def f(x):\n    return '{0.__init__.__globals__}'.format(f)", "string containing __globals__"),
])
def test_banned_constructs_are_found(program, needle):
    problems = find_banned_imports(program)
    assert problems, program
    assert any(needle in p for p in problems), problems
    assert not check_program(program).ok


ROUTES = """
import importlib, json, sys, types, warnings
from arena.sandbox.checks import BANNED_MODULES, _is_banned, _private
warnings.simplefilter("ignore")
# modules whose import does something (a browser, a window, printing) or that are not on this OS
skip = {"this", "antigravity", "idlelib", "turtle", "turtledemo", "tkinter", "__hello__", "__phello__", "ensurepip",
        "venv", "lib2to3", "msilib", "winreg", "winsound", "msvcrt", "nt"}
routes = {}
for name in sorted(sys.stdlib_module_names - skip):
    if _is_banned(name, BANNED_MODULES) or _private(name):
        continue
    try:
        module = importlib.import_module(name)
    except Exception:
        continue
    for attr, value in vars(module).items():
        target = getattr(value, "__name__", "") if isinstance(value, types.ModuleType) else ""
        if target and (_is_banned(target, BANNED_MODULES) or _private(target) or target == "builtins"):
            routes.setdefault(attr, f"{name}.{attr}: {target}")
print(json.dumps(routes))
"""


def test_every_route_from_an_allowed_module_to_a_banned_one_is_refused():
    """Each attribute of an allowed standard-library module that is a banned (or private)
    module is a name the checks refuse: `enum.bltns` (builtins: eval, open), `json.codecs`
    and `queue.threading` passed them (a red-team review; with a random source, a coin-toss
    task). Imported in a child process: some of these modules change the process."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ROUTES], capture_output=True, text=True, timeout=240, check=True)
    routes = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(routes) > 10 and "bltns" in routes  # the walk found them
    missing = {attr: where for attr, where in routes.items() if attr not in MODULE_ATTRIBUTES}
    assert not missing, f"add to MODULE_ATTRIBUTES: {missing}"
    for attr, where in routes.items():
        module = where.split(".", 1)[0]
        assert find_banned_imports(f"import {module}\ndef f(x):\n    return {module}.{attr}"), where
        assert find_banned_imports(f"from {module} import {attr}\ndef f(x):\n    return x"), where


def test_dotted_names_do_not_overmatch():
    # a banned 'numpy.random' does not ban numpy; 'os' does not ban 'osmosis'
    assert find_banned_imports("import numpy\nimport numpy.linalg") == []
    assert find_banned_imports("import osmosis", banned=("os",)) == []
    assert find_banned_imports("from os import path", banned=("os.path",))
    assert find_banned_imports("from os import getcwd", banned=("os.path",)) == []
    assert find_banned_imports("import os", banned=()) == []


# AZR's `configs/azr_ppo_trainer.yaml` (its dotted entries by their top module), then more
AZR_BANNED = ("logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime", "time",
              "hashlib", "hmac", "bcrypt", "os", "sys", "calendar")


@pytest.mark.parametrize("module", [*AZR_BANNED, "socket", "shutil", "signal", "ctypes", "importlib", "pathlib", "io"])
def test_default_list_covers_azr(module):
    assert module in BANNED_MODULES
    assert find_banned_imports(f"import {module}\ndef f(x):\n    return x") == [f"line 1: import of banned module '{module}' ({module})"]


def test_syntax_and_size():
    assert check_syntax("def f(:\n") .startswith("syntax error at line 1")
    assert "null bytes" in check_syntax("x = '\0'")
    assert check_syntax("a" + "(" * 10000 + ")" * 10000) is not None
    assert check_size("x = 1\n" * 10, max_lines=5).startswith("program has 11 lines")
    assert check_size("x" * 100, max_chars=10).startswith("program has 100 characters")
    res = check_program("def f(:\n")
    assert not res.ok and "syntax" in res.problems[0]
    assert "no top-level function 'f'" in check_program("def g():\n    pass", entry="f").problems[0]


@pytest.mark.bwrap
def test_determinism(bwrap_sandbox):
    sb = bwrap_sandbox
    ok = check_determinism(sb, "def f(x):\n    return sorted(set(x))\n", ["f('hello')", "f([3, 1])"])
    assert ok.deterministic and bool(ok) and len(ok.results) == 2
    bad = check_determinism(sb, "import os\ndef f():\n    return os.urandom(8).hex()\n", "f()", runs=3)
    assert not bad.deterministic and "differs" in bad.reason
    # set order of strings is stable across workers (fixed hash seed)
    prog = "def f():\n    return list({'a', 'bb', 'ccc', 'dddd', 'eeeee', 'ffffff'})\n"
    assert check_determinism(sb, prog, "f()", runs=4).deterministic
    with pytest.raises(ValueError):
        check_determinism(sb, prog, "f()", runs=1)


def test_names_a_task_may_use_are_not_refused():
    """Module names as strings, and a program's own names shadowing a refused builtin."""
    program = ("def f(d, input):\n    vars = {'time': 1, 'os': 2, 'io': 3}\n"
               "    return d.get('time'), d['random'], input, vars\n")
    assert find_banned_imports(program) == []
