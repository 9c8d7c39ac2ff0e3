"""Correctness of program execution, on every isolating backend (docker, bubblewrap)."""

from __future__ import annotations

import json
import os
import sys

import pytest
from _sandbox_support import make_sandbox
from arena.sandbox import Limits

ADD = "def f(a, b):\n    return a + b\n"


def test_return_values_repr_and_json(sb):
    r = sb.run(ADD, ["f(1, 2)", "f('a', 'b')", "f([1], [2])", "f((1,), (2,))", "f(0.5, 0.25)"])
    assert r.status == "ok", r
    assert r.values == ["3", "'ab'", "[1, 2]", "(1, 2)", "0.75"]
    assert [c.json for c in r.calls] == ["3", '"ab"', "[1, 2]", "[1, 2]", "0.75"]
    assert r.value == "0.75" and r.json == "0.75"
    assert r.calls[3].json_value() == [1, 2]
    assert r.backend == sb.label and r.duration > 0


def test_non_json_values(sb):
    r = sb.run("def f():\n    return {1, 2}, float('nan')\n", ["f()", "f()[0]", "f()[1]", "None"])
    assert r.status == "ok"
    assert r.calls[0].json is None and r.calls[1].json is None and r.calls[2].json is None
    assert r.calls[1].value == "{1, 2}" and r.calls[2].value == "nan"
    assert r.calls[3].value == "None" and r.calls[3].json == "null"


def test_exceptions_carry_type_and_message(sb):
    r = sb.run(ADD, ["f(1, 2)", "f(1, 'x')", "f(1, 2)"])
    assert r.status == "error" and r.error_type == "TypeError"
    assert [c.status for c in r.calls] == ["ok", "error", "ok"]
    assert "unsupported operand" in r.calls[1].error
    r = sb.run("def f(x):\n    return 1 // x\n", "f(0)")
    assert (r.status, r.error_type) == ("error", "ZeroDivisionError")
    r = sb.run("raise KeyError('k')\ndef f():\n    return 1\n", ["f()", "f()"])
    assert r.status == "error" and r.error_type == "KeyError"
    assert [c.status for c in r.calls] == ["error", "error"]  # never ran: the program failed
    r = sb.run("def f(:\n", "f()")
    assert (r.status, r.error_type) == ("error", "SyntaxError")
    r = sb.run(ADD, "g(1)")
    assert (r.status, r.error_type) == ("error", "NameError")
    r = sb.run("import sys\ndef f():\n    sys.exit(3)\n", "f()")
    assert (r.status, r.error_type) == ("error", "SystemExit")


def test_stdout_and_stderr(sb):
    prog = "import sys\nprint('top')\ndef f(x):\n    print('héllo', x)\n    print('warn', file=sys.stderr)\n    return x\n"
    r = sb.run(prog, ["f(1)", "f(2)"])
    assert r.status == "ok"
    assert r.stdout == "top\nhéllo 1\nhéllo 2\n"
    assert r.stderr == "warn\nwarn\n"


def test_timeout(sb):
    r = sb.run("def f():\n    while True:\n        pass\n", "f()", Limits(timeout=0.5))
    assert r.status == "timeout" and r.calls[0].status == "timeout"
    assert 0.4 < r.duration < 3.0
    # calls done before the deadline keep their results
    prog = "def f(n):\n    while n:\n        pass\n    return 7\n"
    r = sb.run(prog, ["f(0)", "f(1)", "f(0)"], Limits(timeout=0.5))
    assert [c.status for c in r.calls] == ["ok", "timeout", "timeout"] and r.values[0] == "7"


def test_big_ints(sb):
    r = sb.run("def f(n):\n    return 2 ** n\n", ["f(1000)", "f(20000)"])
    assert r.status == "ok"
    assert r.values[0] == str(2 ** 1000)
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:  # beyond 3.11's default 4300-digit limit on int <-> str
        assert r.values[1] == str(2 ** 20000)
        assert json.loads(r.calls[1].json) == 2 ** 20000
    finally:
        sys.set_int_max_str_digits(old)


def test_recursion_limit(sb):
    prog = "def f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\n"
    r = sb.run(prog, ["f(500)", "f(5000)"])
    assert r.calls[0].value == "500"
    assert (r.calls[1].status, r.calls[1].error_type) == ("error", "RecursionError")
    r = sb.run(prog, "f(5000)", Limits(recursion_limit=20000))
    assert r.status == "ok" and r.value == "5000"


def test_unicode(sb):
    prog = "def f(s):\n    return s[::-1] + '✓', len(s)\n"
    r = sb.run(prog, "f('日本語 é 🙂')")
    assert r.status == "ok"
    assert r.value == repr(("🙂 é 語本日✓", 7))
    assert json.loads(r.json) == ["🙂 é 語本日✓", 7]
    r = sb.run("def f():\n    return '\\ud800'\n", "f()")  # lone surrogate survives the trip
    assert r.status == "ok" and r.value == repr("\ud800")
    r = sb.run("print('\\ud800 x')\ndef f():\n    return {'\\udc80': 1}\n", "f()")
    # lone surrogates in text come back as escapes (storable, printable); JSON keeps them
    assert r.status == "ok" and r.stdout == "\\ud800 x\n" and r.value == repr({"\udc80": 1})
    assert json.loads(r.json) == {"\udc80": 1}


def test_classes_and_helpers(sb):
    prog = '''
from dataclasses import dataclass
from collections import Counter

@dataclass
class Point:
    x: int
    y: int
    def norm1(self):
        return abs(self.x) + abs(self.y)

def helper(words):
    return Counter(w.lower() for w in words).most_common(1)[0]

def f(points, words):
    return sorted(Point(*p).norm1() for p in points), helper(words)
'''
    r = sb.run(prog, "f([(1, -2), (0, 0), (3, 3)], ['a', 'B', 'b'])")
    assert r.status == "ok", r
    assert r.value == "([0, 3, 6], ('b', 2))"
    r = sb.run(prog, "Point(1, 2)")
    assert r.value == "Point(x=1, y=2)" and r.json is None


def test_no_calls_runs_the_program(sb):
    r = sb.run("assert sum(range(10)) == 45\nprint('done')")
    assert r.status == "ok" and r.stdout == "done\n" and r.calls == []
    r = sb.run("assert 1 == 2, 'nope'")
    assert (r.status, r.error_type, r.error) == ("error", "AssertionError", "nope")


def test_fresh_process_per_job(sb):
    prog = "import builtins\nbuiltins.SNEAKY = getattr(builtins, 'SNEAKY', 0) + 1\ndef f():\n    return builtins.SNEAKY\n"
    rs = sb.run_many([(prog, "f()")] * 6)
    assert [r.value for r in rs] == ["1"] * 6


def test_run_many_keeps_order(sb):
    jobs = [("def f(x):\n    return x * x\n", f"f({i})") for i in range(200)]
    jobs.append({"program": "def f():\n    return 'dict job'\n", "calls": ["f()"]})
    rs = sb.run_many(jobs)
    assert [r.value for r in rs[:-1]] == [str(i * i) for i in range(200)]
    assert rs[-1].value == "'dict job'"
    assert sb.run_many([]) == []


def test_to_dict_is_json(sb):
    d = sb.run(ADD, "f(1, 2)").to_dict()
    assert json.loads(json.dumps(d))["value"] == "3"
    assert set(d) >= {"status", "calls", "stdout", "stderr", "duration", "error_type", "value", "json"}


def test_hash_seed_is_fixed(sb):
    prog = "def f():\n    return list({'apple', 'banana', 'cherry', 'date', 'elder'})\n"
    rs = sb.run_many([(prog, "f()")] * 4)
    assert len({r.value for r in rs}) == 1


def test_program_semantics_are_plain_python(sb):
    # The runner compiles programs itself (before forking) with dont_inherit: no
    # ``from __future__`` of the runner leaks into them (annotations stay evaluated).
    r = sb.run("def f(x: int) -> str:\n    return str(x)\n", "f.__annotations__")
    assert r.value == "{'x': <class 'int'>, 'return': <class 'str'>}"
    # compile-time warnings still reach the program's stderr
    r = sb.run("def f():\n    return 1 is 1\n", "f()")
    assert r.value == "True" and "SyntaxWarning" in r.stderr
    # the same program on many inputs (compiled once, cached) still runs fresh each time
    prog = "import builtins\nbuiltins.N = getattr(builtins, 'N', 0) + 1\ndef f(x):\n    return (x, builtins.N)\n"
    rs = sb.run_many([(prog, f"f({i})") for i in range(40)])
    assert [r.value for r in rs] == [f"({i}, 1)" for i in range(40)]
    # a program that fails to compile still reports the child's error, line and all
    r = sb.run("def f(:\n    pass\n", "f()")
    assert (r.status, r.error_type) == ("error", "SyntaxError")
    r = sb.run("x = " + "1+" * 100000 + "1\n", None)
    assert (r.status, r.error_type) == ("error", "RecursionError")
    r = sb.run("def f():\n    return 1\n", "f(")
    assert (r.status, r.calls[0].error_type) == ("error", "SyntaxError")


AFFINITY = "import os\ndef f():\n    return sorted(os.sched_getaffinity(0))\n"


def test_workers_are_not_pinned_by_default(sb):
    rs = sb.run_many([(AFFINITY, "f()")] * 8)
    assert all(w.cpu is None for w in sb._workers)
    if (os.cpu_count() or 1) > 1:
        assert all(len(eval(r.value)) > 1 for r in rs), {r.value for r in rs}


@pytest.mark.parametrize("kind", [pytest.param("docker", marks=pytest.mark.docker),
                                  pytest.param("bwrap", marks=pytest.mark.bwrap)])
def test_pinned_workers_are_on_distinct_cores(kind):
    sb = make_sandbox(kind, workers=2, pin_cpus=True)
    try:
        rs = sb.run_many([(AFFINITY, "f()")] * 40)
        seen = {r.value for r in rs}
        assert all(len(eval(v)) == 1 for v in seen), seen  # each worker on one core
        cpus = [w.cpu for w in sb._workers]
        assert None not in cpus
        if len(cpus) <= (os.cpu_count() or 1):
            assert len(set(cpus)) == len(cpus)  # no two workers share a core
    finally:
        sb.close()
