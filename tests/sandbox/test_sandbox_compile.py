"""Programs compiled on the host (`arena.sandbox.compiler`): the job gets marshalled code
when the worker's interpreter matches, identical sources compile once, and no result
depends on where the code was compiled (warnings, syntax errors, odd sources, a broken
helper, an interpreter with another bytecode magic)."""

from __future__ import annotations

import pytest
from _sandbox_support import make_sandbox
from arena.sandbox import Limits, SandboxConfig
from arena.sandbox.compiler import MAX_SOURCE, HostCompiler
from arena.sandbox.process_worker import system_python
from arena.sandbox.runner import decode_job, encode_job

JOBS = [
    ("def f(a):\n    return sorted(a)\n", ["f([3, 1, 2])", "f(None)", "f(", "1 is 1"]),
    ("x = 1\nprint(x is 1)\ndef f():\n    return '\\d', __name__\n", ["f()"]),  # compile warnings
    ("def f(:\n", ["f()"]),
    ("print('hi \\ud800')\ndef f():\n    return '\\udfff'\n", ["f()"]),
    ("import sys\ndef f():\n    return sys._getframe().f_code.co_filename, f.__code__.co_filename\n", ["f()"]),
    ("from __future__ import annotations\ndef f(a: Undefined) -> int:\n    return f.__annotations__\n", ["f(1)"]),
    ("assert (1, 'always true')\ndef f():\n    return 1\n", ["f()"]),
    ("def f():\n    return 1\n" + "# pad\n" * (MAX_SOURCE // 6 + 1), ["f()"]),  # too long for the host
    ("raise ValueError('at exec')\n", ["1"]),
    ("\x00", ["1"]),
    ("x = " + "1+" * 400 + "1\n", ["x"], Limits(timeout=1.5, recursion_limit=100)),  # compiles at 1000, not at 100
    ("x = " + "1+" * 400 + "1\n", ["x"]),
]


def summary(r):
    return (r.status, r.error_type, r.error, r.stdout, r.stderr,
            [(c.status, c.value, c.json, c.error_type, c.error) for c in r.calls])


@pytest.fixture(scope="module", params=[
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("bwrap", marks=pytest.mark.bwrap),
])
def pools(request):
    on = make_sandbox(request.param, workers=1)
    off = make_sandbox(request.param, workers=1, host_compile=False)
    yield on, off
    on.close()
    off.close()


def test_results_do_not_depend_on_where_the_code_compiled(pools):
    on, off = pools
    assert on.compiler is not None and off.compiler is None
    got_on, got_off = on.run_many(JOBS), off.run_many(JOBS)
    for job, a, b in zip(JOBS, got_on, got_off, strict=True):
        assert summary(a) == summary(b), job
    assert got_on[0].calls[0].value == "[1, 2, 3]"
    assert "SyntaxWarning" in got_on[1].stderr
    assert got_on[4].value == "('<program>', '<program>')"
    assert on.compiler.stats["compiled"] > 0 and on.compiler.stats["in_job"] > 0


def test_identical_programs_compile_once_and_jobs_get_code(pools):
    on, _ = pools
    prog = "def f(a):\n    return a * 3  # compile-once\n"
    sent = []
    w = on._acquire()
    original = w._send
    w._send = lambda data: (sent.append(data), original(data))[1]
    on._release(w, True)
    before = dict(on.compiler.stats)
    rs = on.run_many([(prog, f"f({i + 1000})") for i in range(40)])
    w._send = original
    assert [r.value for r in rs] == [str(3 * (i + 1000)) for i in range(40)]
    assert on.compiler.stats["compiled"] - before["compiled"] == 1 + 40  # one program, 40 calls
    assert on.compiler.stats["cache_hits"] == before["cache_hits"]
    assert on.run(prog, "f(-1)").value == "-3"  # the program again: from the cache
    assert on.compiler.stats["cache_hits"] - before["cache_hits"] == 1
    heads = [line for data in sent for line in data.split(b"\n") if line.startswith(b"1.5 ")]
    assert heads and all(tok.startswith(b"m") for h in heads for tok in h.split()[-2:]), heads[:2]


def test_another_bytecode_magic_gets_source(pools):
    on, _ = pools
    w = on._acquire()
    real = w.info["magic"]
    w.info["magic"] = "00000000"  # as a Docker image whose Python differs from the host's
    sent = []
    original = w._send
    w._send = lambda data: (sent.append(data), original(data))[1]
    on._release(w, True)
    try:
        r = on.run("def f(a):\n    return a - 1\n", "f(43)")
    finally:
        w.info["magic"], w._send = real, original
    assert r.value == "42"
    head = next(line for line in sent[0].split(b"\n") if line.startswith(b"1.5 "))
    assert all(tok.startswith(b"s") for tok in head.split()[-2:]), head


@pytest.mark.bwrap
def test_a_broken_helper_means_compiling_in_the_job():
    sb = make_sandbox("bwrap", workers=1)
    try:
        sb.compiler.python = "/bin/false"  # the helper exits at once
        sb.compiler._stop()
        for i in range(5):
            assert sb.run("def f(a):\n    return a + 1\n", f"f({i})").value == str(i + 1)
        assert not sb.compiler.usable and sb.compiler.stats["compiled"] == 0
    finally:
        sb.close()


def test_helper_killed_mid_life_is_restarted():
    c = HostCompiler(system_python(SandboxConfig()))
    try:
        assert c.codes([("eval", "1 + 1")])[0] is not None
        c._proc.kill()
        c._proc.wait()
        assert c.codes([("eval", "2 + 2")])[0] is not None
        assert c.usable
        assert c.codes([("eval", "1 +"), ("exec", "x = 1 is 1"), ("eval", "'\ud800'")]) == [None, None, None]
    finally:
        c.close()


def test_frames_round_trip():
    import marshal

    code = marshal.dumps(compile("f(1)", "<call>", "eval"))
    frame = encode_job("def f(a):\n    return a\n", ["f(1)", "f('\ud800')"],
                       Limits(timeout=1.5).to_wire(), [None, code, None])
    job, lim = decode_job(frame)
    assert job == {"program": "def f(a):\n    return a\n", "calls": [code, "f('\ud800')"]}
    assert lim["timeout"] == 1.5
    with pytest.raises(ValueError):
        decode_job(frame.replace(b" m", b" x", 1))
