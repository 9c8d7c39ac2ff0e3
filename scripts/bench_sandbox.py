#!/usr/bin/env python3
"""Sandbox benchmark: executions/s and latency of small programs, side by side, one run.

    python3 scripts/bench_sandbox.py [--jobs 4000] [--workers N] [--out bench_sandbox.json]

Modes (all run the same AZR-sized program: a ~10-line function over a short input):

- ``baseline``: unsandboxed fork-per-program. ``workers`` local Python processes (the same
  system interpreter the runner uses) each fork a child per program that execs it, evaluates
  the call and sends the repr back over a pipe. No limits, no isolation: the upper bound.
- ``docker run``: one ``docker run --rm --network none IMAGE python3 -c ...`` per program
  (few samples: it is slow).
- ``docker exec``: one ``docker exec CONTAINER python3 -c ...`` per program into a running
  container.
- ``arena docker``: `Sandbox("docker")`, the pool of long-lived containers.
- ``arena process``: `Sandbox("process")` (bubblewrap when available).

Throughput: jobs/s of one batch of ``--jobs`` jobs (``run_many``; for docker run/exec, a
thread pool of ``workers`` concurrent CLI calls). Latency: p50/p99 of one job at a time
(``Sandbox.run``; one request to one baseline worker; one CLI call). Not a test: it prints a
table and writes JSON. Targets (DESIGN.md): arena docker >= 800/s on 2 cores and >= 0.8x
the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

from rich.console import Console
from rich.table import Table

from arena.sandbox import Sandbox, SandboxConfig
from arena.sandbox._version import DEFAULT_IMAGE
from arena.sandbox.workers import docker_status, system_python

PROGRAM = '''
def f(s):
    counts = {}
    for ch in s:
        if ch.isalnum():
            counts[ch] = counts.get(ch, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out = []
    for ch, n in ranked[:3]:
        out.append(f"{ch}{n}")
    return "-".join(out)
'''


def call(i: int) -> str:
    return f"f('hello world {i} abracadabra')"


BASELINE_WORKER = r'''
import json, os, sys
# warm-up, as the runner does: the first compile() of a process builds the AST types
exec(compile("def f(a):\n    return [a]\n", "<w>", "exec"), {})
json.loads(json.dumps({"v": repr(eval(compile("1", "<w>", "eval")))}))
inp = os.fdopen(0, "rb")
while True:
    line = inp.readline()
    if not line:
        break
    out = []
    for job in json.loads(line):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                g = {"__name__": "__main__"}
                exec(compile(job["program"], "<program>", "exec"), g)
                res = {"status": "ok", "value": repr(eval(compile(job["call"], "<call>", "eval"), g))}
            except BaseException as e:
                res = {"status": "error", "error_type": type(e).__name__}
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        out.append(json.loads(data))
    os.write(1, (json.dumps(out) + "\n").encode())
'''


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def bench_baseline(n_jobs: int, workers: int, n_lat: int) -> dict:
    python = system_python(SandboxConfig())
    procs = [subprocess.Popen([python, "-S", "-s", "-c", BASELINE_WORKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env={"PYTHONHASHSEED": "0"}) for _ in range(workers)]
    # warm-up and sanity
    for p in procs:
        p.stdin.write((json.dumps([{"program": PROGRAM, "call": call(0)}]) + "\n").encode())
        p.stdin.flush()
        assert json.loads(p.stdout.readline())[0]["status"] == "ok"
    lat = []
    for i in range(n_lat):
        t = time.perf_counter()
        procs[0].stdin.write((json.dumps([{"program": PROGRAM, "call": call(i)}]) + "\n").encode())
        procs[0].stdin.flush()
        procs[0].stdout.readline()
        lat.append(time.perf_counter() - t)
    shares = [[{"program": PROGRAM, "call": call(i)} for i in range(k, n_jobs, workers)]
              for k in range(workers)]
    t = time.perf_counter()
    for p, share in zip(procs, shares):
        p.stdin.write((json.dumps(share) + "\n").encode())
        p.stdin.flush()
    ok = 0
    for p in procs:
        ok += sum(r["status"] == "ok" for r in json.loads(p.stdout.readline()))
    dt = time.perf_counter() - t
    for p in procs:
        p.stdin.close()
        p.wait()
    return {"n": n_jobs, "ok": ok, "seconds": dt, "per_s": n_jobs / dt,
            "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3}


def _cli_mode(cmd_for, n: int, workers: int) -> dict:
    def one(i: int) -> tuple[float, bool]:
        t = time.perf_counter()
        p = subprocess.run(cmd_for(i), capture_output=True, text=True)
        return time.perf_counter() - t, p.returncode == 0 and p.stdout.strip() != ""

    lat = [one(i)[0] for i in range(min(n, 5))]  # sequential: latency
    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        res = list(ex.map(one, range(n)))
    dt = time.perf_counter() - t
    return {"n": n, "ok": sum(ok for _, ok in res), "seconds": dt, "per_s": n / dt,
            "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3}


def script(i: int) -> str:
    return PROGRAM + f"\nprint(repr({call(i)}))\n"


def bench_docker_run(n: int, workers: int, image: str) -> dict:
    return _cli_mode(lambda i: ["docker", "run", "--rm", "--network", "none", image,
                                "python3", "-c", script(i)], n, workers)


def bench_docker_exec(n: int, workers: int, image: str) -> dict:
    name = f"arena-bench-exec-{os.getpid()}"
    subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none",
                    "--label", "arena.sandbox=1", image, "sleep", "3600"],
                   check=True, capture_output=True)
    try:
        return _cli_mode(lambda i: ["docker", "exec", name, "python3", "-c", script(i)], n, workers)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def bench_arena(backend: str, n_jobs: int, workers: int, n_lat: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb = Sandbox(backend, SandboxConfig(workers=workers))
    with sb:
        sb.start()
        sb.run_many([(PROGRAM, call(i)) for i in range(4 * workers)])  # warm-up
        lat = []
        for i in range(n_lat):
            t = time.perf_counter()
            r = sb.run(PROGRAM, call(i))
            lat.append(time.perf_counter() - t)
            assert r.ok, r
        jobs = [(PROGRAM, call(i)) for i in range(n_jobs)]
        t = time.perf_counter()
        rs = sb.run_many(jobs)
        dt = time.perf_counter() - t
        label = sb.label
    return {"n": n_jobs, "ok": sum(r.ok for r in rs), "seconds": dt, "per_s": n_jobs / dt,
            "p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3, "backend": label}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=4000, help="jobs per throughput batch")
    ap.add_argument("--workers", type=int, default=SandboxConfig().n_workers,
                    help="workers/containers/concurrency for every mode")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--docker-run-samples", type=int, default=8)
    ap.add_argument("--docker-exec-samples", type=int, default=40)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--out", default="bench_sandbox.json")
    args = ap.parse_args()
    console = Console()
    have_docker, why = docker_status(args.image)
    rows: dict[str, dict] = {}
    console.print(f"[bold]sandbox benchmark[/]: {args.jobs} jobs, {args.workers} workers, "
                  f"{os.cpu_count()} cores")
    rows["baseline (unsandboxed fork per program)"] = bench_baseline(args.jobs, args.workers, args.latency_samples)
    if have_docker:
        rows["docker run per program"] = bench_docker_run(args.docker_run_samples, args.workers, args.image)
        rows["docker exec per program"] = bench_docker_exec(args.docker_exec_samples, args.workers, args.image)
        rows["arena docker (pool)"] = bench_arena("docker", args.jobs, args.workers, args.latency_samples)
    else:
        console.print(f"[yellow]docker modes skipped:[/] {why}")
    rows["arena process"] = bench_arena("process", args.jobs, args.workers, args.latency_samples)
    base = rows["baseline (unsandboxed fork per program)"]["per_s"]
    table = Table(title="executions of a small program")
    for col in ("mode", "exec/s", "vs baseline", "p50 ms", "p99 ms", "ok/n"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for name, r in rows.items():
        r["vs_baseline"] = r["per_s"] / base
        label = name + (f" [{r['backend']}]" if "backend" in r else "")
        table.add_row(label, f"{r['per_s']:.0f}", f"{r['vs_baseline']:.2f}x", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['ok']}/{r['n']}")
    console.print(table)
    out = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                       "python": sys.version.split()[0]},
           "jobs": args.jobs, "workers": args.workers, "program": PROGRAM, "modes": rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
