"""`arena sandbox run | doctor | clean | build` through typer's test runner."""

from __future__ import annotations

import json

import pytest
from _sandbox_support import require_bwrap, require_docker
from arena.sandbox.cli import app
from typer.testing import CliRunner

runner = CliRunner()
PROGRAM = "def f(a, b):\n    print('adding')\n    return [a, b, a + b]\n"


@pytest.fixture()
def program(tmp_path):
    p = tmp_path / "prog.py"
    p.write_text(PROGRAM)
    return p


def test_run_json_ok(program):
    require_bwrap()
    res = runner.invoke(app, ["run", str(program), "--call", "f(1, 2)", "--backend", "process", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["status"] == "ok" and d["value"] == "[1, 2, 3]" and d["json"] == "[1, 2, 3]"
    assert d["stdout"] == "adding\n" and d["backend"] == "bwrap"


def test_run_refuses_the_plain_backend_unless_allowed(program, monkeypatch):
    import arena.sandbox.pool as pool_module

    monkeypatch.setattr(pool_module, "docker_status", lambda *a, **k: (False, "no engine (test)"))
    monkeypatch.setattr(pool_module, "bwrap_status", lambda: (False, "bwrap not found (test)"))
    res = runner.invoke(app, ["run", str(program), "-c", "f(1, 2)"])
    assert res.exit_code == 1 and res.stdout == ""
    assert "no isolating sandbox backend" in res.output and "--allow-unsafe" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    res = runner.invoke(app, ["run", str(program), "-c", "f(1, 2)", "--allow-unsafe", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["value"] == "[1, 2, 3]" and "allow_unsafe" in res.stderr


def test_run_exits_zero_whatever_the_program_did(program):
    require_bwrap()
    res = runner.invoke(app, ["run", str(program), "-c", "f(1, 'x')", "-b", "process"])
    assert res.exit_code == 0
    assert "status: error" in res.stdout and "TypeError" in res.stdout
    res = runner.invoke(app, ["run", "-", "-b", "process", "--timeout", "0.5", "--json"],
                        input="while True:\n    pass\n")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "timeout"


@pytest.mark.parametrize("args, message", [
    (["run", "/no/such/file.py"], "no such file"),
    (["run", "PROGRAM", "--backend", "vm"], "choose auto, docker or process"),
    (["run", "PROGRAM", "--timeout", "0"], "--timeout must be > 0"),  # the flag's name, not Limits.timeout
    (["run", "PROGRAM", "--memory-mb", "99999999999"], "--memory-mb must be at most 1048576 (1 TiB)"),
])
def test_run_bad_input_is_one_clear_line(program, args, message):
    args = [str(program) if a == "PROGRAM" else a for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_doctor_json():
    res = runner.invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    checks = {c["check"]: c for c in d["checks"]}
    assert "bubblewrap" in checks and "docker engine + image" in checks
    assert d["auto"] in ("docker", "process (bwrap)", "none")  # never plain: allow_unsafe only
    plain = checks["process backend (plain, no isolation: allow_unsafe only)"]
    assert plain["ok"] and "runner non-dumpable" in plain["detail"]
    for name in ("docker backend", "process backend (bwrap)"):
        if checks.get(name, {}).get("ok"):
            assert "runner non-dumpable, seccomp filter on" in checks[name]["detail"]


@pytest.mark.docker
def test_clean_reports():
    require_docker()
    res = runner.invoke(app, ["clean"])
    assert res.exit_code == 0 and "removed" in res.stdout


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("build", "doctor", "clean", "run"):
        assert cmd in res.stdout


@pytest.mark.docker
def test_clean_spares_live_pools_and_all_removes_them():
    require_docker()
    import subprocess
    import sys

    from _sandbox_support import make_sandbox
    from arena.sandbox import DEFAULT_IMAGE, list_containers
    from arena.sandbox.docker_worker import docker_client, owner_labels
    from arena.sandbox.workers import LABEL

    sb = make_sandbox("docker", workers=1)
    try:
        live = {w.name for w in sb._workers}
        # a container whose owner process has exited
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        labels = dict(owner_labels(), **{LABEL: "1", f"{LABEL}.host_pid": dead})
        gone = docker_client().containers.run(
            DEFAULT_IMAGE, ["python3", "-c", "import time; time.sleep(60)"], detach=True,
            labels=labels, network_mode="none").name
        res = runner.invoke(app, ["clean"])
        assert res.exit_code == 0 and "removed 1 " in res.stdout, res.stdout
        names = set(list_containers())
        assert live <= names and gone not in names
        assert sb.healthy()
        res = runner.invoke(app, ["clean", "--all"])
        assert res.exit_code == 0 and not (live & set(list_containers()))
    finally:
        sb.close()


def test_run_prints_lone_surrogates(program):
    require_bwrap()
    res = runner.invoke(app, ["run", "-", "-b", "process"], input="print('hi \\ud800')\n")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert "hi \\ud800" in res.stdout
