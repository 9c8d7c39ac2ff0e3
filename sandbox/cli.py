"""``arena sandbox``: build the image, check the backends, clean up, run a program.

    arena sandbox build [--rebuild] [--dockerfile]
    arena sandbox doctor [--json]
    arena sandbox clean [--all]
    arena sandbox run PROGRAM.py [--call 'f(1, 2)' ...] [--backend auto|docker|process]
                      [--allow-unsafe] [--json]

``run`` exits 0 whenever the sandbox worked, whatever the program did (its status is in
the output); 1 when the sandbox itself failed (``infra``, or the backend is unavailable);
2 on bad input. Errors are one line that names the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import typer
from arena.sandbox._version import DEFAULT_IMAGE
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Isolated code execution: build the image, check backends, clean up, run a program.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h as `arena train -h` takes it
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = PACKAGE_DIR / "build_image.sh"  # package data: present in a wheel install too


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@app.command("build")
def build_cmd(
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild even if the image exists."),
    dockerfile: bool = typer.Option(False, "--dockerfile",
                                    help="Build from the packaged Dockerfile (needs network access to a registry)."),
    image: str = typer.Option(DEFAULT_IMAGE, "--image", help="Image name:tag."),
) -> None:
    """Build the sandbox image (offline with debootstrap, or from the Dockerfile)."""
    if shutil.which("docker") is None:
        raise _fail("the docker client is not installed: apt-get install docker.io", 1)
    env = dict(os.environ, ARENA_SANDBOX_IMAGE=image, ARENA_SANDBOX_REBUILD="1" if rebuild else "0")
    if not dockerfile and BUILD_SCRIPT.exists():
        rc = subprocess.call(["bash", str(BUILD_SCRIPT)], env=env)
        if rc != 0:
            raise _fail("offline image build failed (see above); or try "
                        "'arena sandbox build --dockerfile' where a registry is reachable", 1)
        return
    if not rebuild and subprocess.call(["docker", "image", "inspect", image],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0:
        console.print(f"{image} already present (--rebuild to rebuild)")
        return
    rc = subprocess.call(["docker", "build", "-t", image, "-f", str(PACKAGE_DIR / "Dockerfile"),
                          str(PACKAGE_DIR)])
    if rc != 0:
        raise _fail("docker build failed (see above); without network run "
                    "'arena sandbox build' as root (offline, with debootstrap)", 1)


_SECCOMP_MODE = ("def f():\n    for line in open('/proc/self/status'):\n"
                 "        if line.startswith('Seccomp:'):\n            return line.split()[1]\n")


def _probe(backend: str, **kw) -> tuple[bool, str, float]:
    """Start a one-worker pool of ``backend`` and run a program; (ok, detail, seconds)."""
    from arena.sandbox import Sandbox, SandboxConfig

    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Sandbox(backend, SandboxConfig(workers=1, **kw)) as sb:
                r = sb.run("def f(a):\n    return sorted(a)\n", "f([3, 1, 2])")
                mode = sb.run(_SECCOMP_MODE, "f()").value
                protected = all(w.info.get("protected") for w in sb._workers)
                label = sb.label
        if r.status != "ok" or r.value != "[1, 2, 3]":
            return False, f"{label}: test program gave {r.status}: {r.error}", time.monotonic() - t0
        extras = ["runner non-dumpable" if protected else "runner DUMPABLE (no ctypes)",
                  "seccomp filter on" if mode == "'2'" else "no seccomp filter"]
        return True, f"{label}: test program ran; {', '.join(extras)}", time.monotonic() - t0
    except Exception as e:  # noqa: BLE001 - doctor reports, never raises
        return False, f"{e}", time.monotonic() - t0


@app.command("doctor")
def doctor_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Say which backends work on this machine, and why the others do not."""
    from arena.sandbox import SandboxConfig, resolve_backend
    from arena.sandbox.docker_worker import docker_status
    from arena.sandbox.process_worker import bwrap_status

    rows = []
    d_ok, d_why = docker_status(DEFAULT_IMAGE)
    rows.append(("docker engine + image", d_ok, d_why))
    if d_ok:
        ok, why, dt = _probe("docker")
        rows.append(("docker backend", ok, f"{why} ({dt:.1f}s)"))
    else:
        rows.append(("docker backend", False, d_why))
    b_ok, b_why = bwrap_status()
    rows.append(("bubblewrap", b_ok, b_why))
    if b_ok:
        ok, why, dt = _probe("process", use_bwrap=True)
        rows.append(("process backend (bwrap)", ok, f"{why} ({dt:.1f}s)"))
    ok, why, dt = _probe("process", use_bwrap=False, allow_unsafe=True)
    rows.append(("process backend (plain, no isolation: allow_unsafe only)", ok, f"{why} ({dt:.1f}s)"))
    try:
        auto, use_bwrap, reason = resolve_backend(SandboxConfig())
        auto_label = "docker" if auto == "docker" else ("process (bwrap)" if use_bwrap else "process (plain)")
    except Exception as e:  # noqa: BLE001 - SandboxUnavailable: no isolating backend
        auto_label, reason = "none", str(e)
    if as_json:
        print(json.dumps({"checks": [{"check": c, "ok": o, "detail": w} for c, o, w in rows],
                          "auto": auto_label, "reason": reason}, indent=2))
        return
    table = Table(title="arena sandbox doctor")
    table.add_column("check")
    table.add_column("ok")
    table.add_column("detail", overflow="fold")
    for check, ok, why in rows:
        table.add_row(check, "[green]yes[/]" if ok else "[red]no[/]", why)
    console.print(table)
    console.print(f"backend=auto picks: [bold]{auto_label}[/]")
    if auto_label == "none":
        console.print(reason, highlight=False, markup=False)


@app.command("clean")
def clean_cmd(
    everything: bool = typer.Option(False, "--all", help="Also remove the containers of live pools."),
) -> None:
    """Remove sandbox containers whose owner process is gone (--all: every one)."""
    from arena.sandbox import clean
    from arena.sandbox.workers import WorkerError

    try:
        removed = clean(everything=everything)
    except WorkerError as e:
        raise _fail(str(e), 1) from None
    which = "" if everything else " left by processes that are gone"
    console.print(f"removed {len(removed)} sandbox container(s){which}", highlight=False)


@app.command("run")
def run_cmd(
    program: str = typer.Argument(..., help="Python file to run ('-' reads standard input)."),
    call: list[str] | None = typer.Option(None, "--call", "-c",
                                             help="Expression evaluated after the program, e.g. 'f(1, 2)'. Repeatable."),
    backend: str = typer.Option("auto", "--backend", "-b", help="auto, docker or process."),
    timeout: float = typer.Option(2.0, "--timeout", help="Wall-clock seconds for the program and its calls."),
    memory_mb: int = typer.Option(256, "--memory-mb", help="Address-space limit of the program, MiB."),
    allow_unsafe: bool = typer.Option(
        False, "--allow-unsafe",
        help="Without Docker and bubblewrap, run the program as a plain subprocess: no isolation, trusted code only."),
    as_json: bool = typer.Option(False, "--json", help="Print the ExecResult as JSON."),
) -> None:
    """Run one program the way the envs do and print its ExecResult."""
    from arena.sandbox import Limits, Sandbox, SandboxUnavailable

    if backend not in ("auto", "docker", "process"):
        raise _fail(f"--backend {backend!r}: choose auto, docker or process")
    if program == "-":
        source = sys.stdin.read()
    else:
        path = Path(program)
        if not path.is_file():
            raise _fail(f"{program}: no such file (give a Python file, or '-' for standard input)")
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise _fail(f"{program}: cannot read it as UTF-8 text ({e})") from None
    try:
        limits = Limits(timeout=timeout, memory_mb=memory_mb)
    except ValueError as e:  # said with the flags' names
        raise _fail(str(e).replace("Limits.timeout", "--timeout").replace("Limits.memory_mb", "--memory-mb")) from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sb = Sandbox(backend, workers=1, allow_unsafe=allow_unsafe)
        for w in caught:
            err.print(f"[yellow]warning:[/] {w.message}", highlight=False)
    except SandboxUnavailable as e:
        raise _fail(str(e), 1) from None
    with sb:
        result = sb.run(source, call or [], limits)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        colour = {"ok": "green", "infra": "red"}.get(result.status, "yellow")
        console.print(f"status: [bold {colour}]{result.status}[/]  backend: {result.backend}  "
                      f"duration: {result.duration * 1000:.1f} ms", highlight=False)
        if result.error_type:
            console.print(f"error: {result.error_type}: {result.error}", highlight=False, markup=False)
        for c in result.calls:
            shown = c.value if c.ok else f"{c.status} {c.error_type}: {c.error}"
            console.print(f"{c.call} -> {shown}", highlight=False, markup=False)
        if result.stdout:
            console.print("--- stdout ---", highlight=False)
            console.print(result.stdout, highlight=False, markup=False, end="")
        if result.stderr:
            console.print("--- stderr ---", highlight=False)
            console.print(result.stderr, highlight=False, markup=False, end="")
    if result.infra:
        raise typer.Exit(1)
