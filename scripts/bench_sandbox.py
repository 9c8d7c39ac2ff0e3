#!/usr/bin/env python3
"""Sandbox benchmark: executions/s and latency of small programs, side by side, one run.

    python3 scripts/bench_sandbox.py [--jobs 3000] [--rounds 3] [--workload same|distinct|both]
                                     [--workers N] [--out bench_sandbox.json]

Workloads (an AZR-sized program: a ~10-line function over a short input):

- ``same``: one program run on many inputs (AZR's abduction tasks; the solver's rollouts
  for one proposed program). The pool's host compiler compiles it once (cached) and each
  job's process loads the marshalled code (`arena.sandbox.compiler`).
- ``distinct``: every job a new program source (AZR's induction; fresh proposals), so
  nothing is reused from one job to the next (each is compiled once on the host).

Modes:

- ``baseline``: unsandboxed fork-per-program. ``workers`` local Python processes (the same
  system interpreter the runner uses) each fork a child per program that execs it, evaluates
  the call and sends the repr back over a pipe. No limits, no isolation: the upper bound.
- ``docker run``: one ``docker run --rm --network none IMAGE python3 -c ...`` per program
  (few samples: it is slow).
- ``docker exec``: one ``docker exec CONTAINER python3 -c ...`` per program into a running
  container.
- ``arena docker``: `Sandbox("docker")`, the pool of long-lived containers.
- ``arena process``: `Sandbox("process")` (bubblewrap when available).
- with ``--compare-compile``, the same two pools with ``host_compile=False`` too (every
  job compiles its own source, in its freshly forked process): the cost it saves.
- with ``--compare-pin``, the same two pools with ``pin_cpus=True`` too (each worker and
  its jobs on one core).

Throughput: jobs/s of a batch of ``--jobs`` jobs (``run_many``; for docker run/exec, a
thread pool of ``workers`` concurrent CLI calls). The fork-based modes (baseline, arena
docker, arena process) run interleaved for ``--rounds`` rounds and the median round is
reported, so that other load on the machine affects them alike (``vs baseline`` is the
median of the per-round ratios to the baseline of the same round). ``own CPU ms/job`` is
the CPU time of the mode's own processes per job (this process, the workers or the
containers' processes and every job they reaped, the compile helper; not the Docker
engine's daemons), and ``CPU vs baseline`` the baseline's over the mode's: under heavy
load from others the rates swing widely, this ratio much less. ``CPU ms/job`` is the busy
time of the whole machine per job (from /proc/stat; steal excluded), steadier than the rate
on a shared VM, and ``steal ms/job`` the time the hypervisor took the cores away meanwhile
(on a noisy host it, not our code, decides the absolute rate). Latency: p50/p99 of one
job at a time (``Sandbox.run``; one request to one baseline worker; one CLI call). Not a
test: it prints a table and writes JSON. Targets (DESIGN.md): arena docker >= 800/s on 2
cores and >= 0.8x the baseline measured in the same run.
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

from arena.sandbox import Sandbox, SandboxConfig
from arena.sandbox._version import DEFAULT_IMAGE
from arena.sandbox.docker_worker import docker_status
from arena.sandbox.process_worker import system_python
from rich.console import Console
from rich.table import Table

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


WORKLOADS = {
    "same": "one program, many inputs",   # AZR's abduction and its solver rollouts
    "distinct": "a new program per job",   # AZR's induction, freshly proposed programs
}


def program(workload: str, i: int) -> str:
    """The program of job ``i``: always PROGRAM for ``same``; for ``distinct`` a variant
    whose source differs in every job (nothing can be reused between jobs)."""
    if workload == "same":
        return PROGRAM
    return PROGRAM.replace("ranked[:3]", f"ranked[:{3 + i % 3}]") + f"\n# variant {i}\n"


def jobs_for(workload: str, n: int) -> list[tuple[str, str]]:
    return [(program(workload, i), call(i)) for i in range(n)]


def proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def busy_jiffies() -> tuple[int, int]:
    """(busy, steal) clock ticks of the whole machine so far, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    # user nice system idle iowait irq softirq steal ...
    return v[0] + v[1] + v[2] + v[5] + v[6], v[7] if len(v) > 7 else 0


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


BASELINE = "baseline (unsandboxed fork per program)"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


class Baseline:
    """``workers`` unsandboxed fork-per-program worker processes."""

    def __init__(self, workers: int) -> None:
        python = system_python(SandboxConfig())
        self.procs = [subprocess.Popen([python, "-S", "-s", "-c", BASELINE_WORKER],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env={"PYTHONHASHSEED": "0"}) for _ in range(workers)]
        for p in self.procs:  # warm-up and sanity
            self._send(p, [{"program": PROGRAM, "call": call(0)}])
            assert json.loads(p.stdout.readline())[0]["status"] == "ok"

    @staticmethod
    def _send(p, jobs) -> None:
        p.stdin.write((json.dumps(jobs) + "\n").encode())
        p.stdin.flush()

    def latency(self, n: int) -> list[float]:
        lat = []
        for i in range(n):
            t = time.perf_counter()
            self._send(self.procs[0], [{"program": PROGRAM, "call": call(i)}])
            self.procs[0].stdout.readline()
            lat.append(time.perf_counter() - t)
        return lat

    def throughput(self, jobs: list[tuple[str, str]]) -> tuple[float, int]:
        w = len(self.procs)
        t = time.perf_counter()
        for k, p in enumerate(self.procs):
            self._send(p, [{"program": prog, "call": c} for prog, c in jobs[k::w]])
        ok = sum(sum(r["status"] == "ok" for r in json.loads(p.stdout.readline())) for p in self.procs)
        return len(jobs) / (time.perf_counter() - t), ok

    def own_cpu(self) -> float:
        """CPU seconds used so far by this mode's processes (workers and their children)."""
        return sum(proc_cpu(p.pid) for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            p.stdin.close()
            p.wait()


class Arena:
    """A started `Sandbox` pool of the given backend."""

    def __init__(self, backend: str, workers: int, **config) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.sb = Sandbox(backend, SandboxConfig(workers=workers, **config))
        self.sb.start()
        self.sb.run_many([(PROGRAM, call(i)) for i in range(4 * workers)])  # warm-up
        if backend == "docker":
            from arena.sandbox.docker_worker import docker_client

            self.sb_client = docker_client()

    def latency(self, n: int) -> list[float]:
        lat = []
        for i in range(n):
            t = time.perf_counter()
            r = self.sb.run(PROGRAM, call(i))
            lat.append(time.perf_counter() - t)
            assert r.ok, r
        return lat

    def throughput(self, jobs: list[tuple[str, str]]) -> tuple[float, int]:
        t = time.perf_counter()
        rs = self.sb.run_many(jobs)
        return len(jobs) / (time.perf_counter() - t), sum(r.ok for r in rs)

    def own_cpu(self) -> float:
        """CPU seconds used so far by the pool's runners and the jobs they reaped, and its
        compile helper (not the Docker engine's own processes)."""
        pids = []
        for w in list(self.sb._workers):
            if hasattr(w, "proc"):  # bubblewrap (or plain): bwrap and the runner under it
                pids.append(w.proc.pid)
                try:
                    with open(f"/proc/{w.proc.pid}/task/{w.proc.pid}/children") as f:
                        pids += [int(x) for x in f.read().split()]
                except OSError:
                    pass
            else:
                if not hasattr(w, "host_pid"):
                    w.host_pid = self.sb_client.api.inspect_container(w.id)["State"]["Pid"]
                pids.append(w.host_pid)
        helper = self.sb.compiler and self.sb.compiler._proc
        if helper:
            pids.append(helper.pid)
        return sum(proc_cpu(p) for p in pids)

    def close(self) -> None:
        self.sb.close()


def _cli_mode(cmd_for, n: int, workers: int) -> dict:
    def one(i: int) -> tuple[float, bool]:
        t = time.perf_counter()
        p = subprocess.run(cmd_for(i), capture_output=True, text=True, check=False)
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
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2000, help="jobs per throughput batch")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    ap.add_argument("--workers", type=int, default=SandboxConfig().n_workers,
                    help="workers/containers/concurrency for every mode")
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--docker-run-samples", type=int, default=8)
    ap.add_argument("--docker-exec-samples", type=int, default=40)
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--workload", choices=["same", "distinct", "both"], default="both",
                    help="same: one program run on many inputs; distinct: a new program per job")
    ap.add_argument("--compare-compile", action="store_true",
                    help="also run the arena pools with host_compile=False (jobs compile their source)")
    ap.add_argument("--compare-pin", action="store_true",
                    help="also run the arena pools with pin_cpus=True (each worker on one core)")
    ap.add_argument("--out", default="bench_sandbox.json")
    args = ap.parse_args()
    console = Console(width=150)
    have_docker, why = docker_status(args.image)
    cli_rows: dict[str, dict] = {}
    console.print(f"[bold]sandbox benchmark[/]: {args.jobs} jobs x {args.rounds} rounds, "
                  f"{args.workers} workers, {os.cpu_count()} cores")
    if have_docker:
        cli_rows["docker run per program"] = bench_docker_run(args.docker_run_samples, args.workers, args.image)
        cli_rows["docker exec per program"] = bench_docker_exec(args.docker_exec_samples, args.workers, args.image)
    else:
        console.print(f"[yellow]docker modes skipped:[/] {why}")
    # The fork-based modes run interleaved, round after round, so that load from anything
    # else on the machine hits them alike; the median round is reported. Each round runs
    # every workload through every mode.
    modes = {BASELINE: Baseline(args.workers)}
    if have_docker:
        modes["arena docker (pool)"] = Arena("docker", args.workers)
    modes["arena process"] = Arena("process", args.workers)
    if args.compare_compile:
        if have_docker:
            modes["arena docker, job compiles"] = Arena("docker", args.workers, host_compile=False)
        modes["arena process, job compiles"] = Arena("process", args.workers, host_compile=False)
    if args.compare_pin:
        if have_docker:
            modes["arena docker, pinned"] = Arena("docker", args.workers, pin_cpus=True)
        modes["arena process, pinned"] = Arena("process", args.workers, pin_cpus=True)
    workloads = list(WORKLOADS) if args.workload == "both" else [args.workload]
    per_workload: dict[str, dict[str, dict]] = {}
    try:
        rates = {(w, k): [] for w in workloads for k in modes}
        cpu = {(w, k): [] for w in workloads for k in modes}
        steal = {(w, k): [] for w in workloads for k in modes}
        oks = {(w, k): 0 for w in workloads for k in modes}
        own = {(w, k): [] for w in workloads for k in modes}
        for _ in range(args.rounds):
            for w in workloads:
                jobs = jobs_for(w, args.jobs)
                for name, m in modes.items():
                    b0, s0 = busy_jiffies()
                    o0, h0 = m.own_cpu(), time.process_time()
                    rate, ok = m.throughput(jobs)
                    own[w, name].append((m.own_cpu() - o0 + time.process_time() - h0) * 1e3 / len(jobs))
                    b1, s1 = busy_jiffies()
                    rates[w, name].append(rate)
                    tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")
                    cpu[w, name].append((b1 - b0) * tick_ms / len(jobs))
                    steal[w, name].append((s1 - s0) * tick_ms / len(jobs))
                    oks[w, name] += ok
        lat = {name: m.latency(args.latency_samples) for name, m in modes.items()}
        for w in workloads:
            rows = per_workload.setdefault(w, {})
            for name, m in modes.items():
                rows[name] = {"n": args.jobs * args.rounds, "ok": oks[w, name],
                              "per_s": statistics.median(rates[w, name]),
                              "rounds_per_s": rates[w, name],
                              "cpu_ms_per_job": statistics.median(cpu[w, name]),
                              "own_cpu_ms_per_job": statistics.median(own[w, name]),
                              "own_cpu_rounds": own[w, name],
                              "steal_ms_per_job": statistics.median(steal[w, name]),
                              "p50_ms": pct(lat[name], 0.5) * 1e3, "p99_ms": pct(lat[name], 0.99) * 1e3}
                if isinstance(m, Arena):
                    rows[name]["backend"] = m.sb.label
    finally:
        for m in modes.values():
            m.close()
    table = Table(title="executions of a small program (AZR-sized), median of the rounds")
    for col in ("workload", "mode", "exec/s", "vs baseline", "own CPU ms/job", "CPU vs baseline",
                "CPU ms/job", "steal ms/job", "p50 ms", "p99 ms", "ok/n"):
        table.add_column(col, justify="left" if col in ("workload", "mode") else "right")
    for w, rows in per_workload.items():
        base = rows[BASELINE]["rounds_per_s"]
        for name, r in rows.items():
            r["vs_baseline_rounds"] = [x / b for x, b in zip(r["rounds_per_s"], base, strict=True)]
            r["vs_baseline"] = statistics.median(r["vs_baseline_rounds"])
            base_cpu = rows[BASELINE]["own_cpu_rounds"]
            r["cpu_vs_baseline"] = statistics.median(
                [b / x if x else float("nan") for x, b in zip(r["own_cpu_rounds"], base_cpu, strict=True)])
            label = name + (f" [{r['backend']}]" if "backend" in r else "")
            table.add_row(WORKLOADS[w] if name == BASELINE else "", label, f"{r['per_s']:.0f}",
                          f"{r['vs_baseline']:.2f}x", f"{r['own_cpu_ms_per_job']:.2f}",
                          f"{r['cpu_vs_baseline']:.2f}x", f"{r['cpu_ms_per_job']:.2f}",
                          f"{r['steal_ms_per_job']:.2f}",
                          f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['ok']}/{r['n']}")
        table.add_section()
    for name, r in cli_rows.items():
        table.add_row("", name, f"{r['per_s']:.0f}", "", "", "", "", "", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['ok']}/{r['n']}")
    console.print(table)
    console.print("own CPU ms/job: CPU time of the mode's own processes per job (this process, "
                  "its workers or containers' processes and what they reaped, the compile helper; "
                  "not the Docker engine); CPU vs baseline: the baseline's own CPU per job over the "
                  "mode's (what the rate ratio would be on otherwise idle, CPU-bound cores).")
    console.print("CPU ms/job: busy time of the whole machine (both cores, /proc/stat) per job; "
                  "steal ms/job: time the hypervisor gave the cores to someone else.")
    out = {"machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                       "python": sys.version.split()[0], "loadavg": os.getloadavg()},
           "jobs": args.jobs, "rounds": args.rounds, "workers": args.workers,
           "program": PROGRAM, "workloads": {w: {"description": WORKLOADS[w], "modes": rows}
                                             for w, rows in per_workload.items()},
           "per_program": cli_rows}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
