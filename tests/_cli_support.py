"""Running the `arena` CLI in a subprocess, and reading its one-line errors (shared by the
CLI tests)."""

from __future__ import annotations

import os
import subprocess
import sys


def arena_cmd(*args: object, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "arena.cli", *map(str, args)], check=False, capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def arena(capsys, *args: object) -> tuple[int, str, str]:
    """Run the `arena` command in this process; (exit code, stdout, stderr)."""
    from arena.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, text: str) -> None:
    """`err` is one line holding `text`, with no traceback."""
    assert "Traceback" not in err and text in err, err
    assert len(err.strip().splitlines()) == 1, err
