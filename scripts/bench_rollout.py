"""Rollout throughput with a model agent: episodes/s at 1, 8 and 64 concurrent episodes,
and where the time goes (generation vs everything else the engine does).

For each env (`--env`, default Kuhn Poker and TicTacToe) and each concurrency
(`--concurrency`, default 1, 8, 64), plays `--episodes` self-play episodes with
`arena.rollout.play` and one `hf` policy in every seat (`make_hf_agent`-style: the tiny
model constrained to legal actions by default, temperature 1). The policy is wrapped so
that the time inside `policy.act` (tokenising the prompts, `generate`, decoding) is
counted as **generation**; the rest of the wall time of `play` is **env + engine**:
env reset/step/observe, building the chat prompts and legal-action lists, and the
episode records. Within it, **env stepping** is the time inside the env's own `reset`,
`step`, `observe` and `legal_actions` (`EnvTimer`), the rest the engine's bookkeeping. The
issue's target is env stepping < 1% of the rollout; env + engine is the stricter figure.
Both are shown per turn (ms) too, since a share depends on how fast the model is.

**Backends**, one row function each (`BACKENDS`; `--backends`, default `hf,vllm,ray:1,ray:2`;
a backend whose package is missing is skipped with a word): `hf` is the policy in this
process, as above; `hf-plain` the same policy with `share_prefix=False` (each row's whole
prompt prefilled: what sharing the context saves, with the dynamic cache on CPU and the static
one on CUDA; not in the default list); `vllm` the same cells with an in-process vLLM engine on the same weights
(`arena.agents.vllm`; vLLM is installed in `scripts/test_vllm.sh`'s venv: run the
benchmark with `.venv-vllm/bin/python` for all rows side by side); `ray:N` plays the same episodes through
`arena.ray_rollout.RayRollout` on N Ray actors (a local Ray instance, `--ray-address`),
each with its own tiny-model copy and one torch thread, exactly as one `arena train
--ray-address` step: the weights broadcast, the contiguous shares, the episodes shipped
back in index order. Ray rows run at the highest `--concurrency` (episodes in flight over
all actors; `--ray-concurrency` to change it); their generation share is not measured
(it happens in the actors), their wall time includes the broadcast and the transfer. A
new backend is one function `row(env_id, concurrency) -> dict` with the common keys
(`ROW_KEYS`), registered in `BACKENDS`.

Each (backend, env, concurrency) cell is timed after a warm-up of the same shape (not
counted), so the first call's one-off costs (and on CUDA the static-cache compilation per
batch bucket) are excluded; `hf` and `vllm` cells are timed `--repeats` times (default 3),
and the row is the median run, with the env-stepping share's range over the runs beside
it. The machine may be shared: compare the ratios (speed-up over concurrency 1, shares),
not the absolute numbers, across machines.

`--model-config qwen2-0.5b` builds a Qwen2-0.5B-shaped model with random weights and the
tiny tokenizer (`arena.agents.tiny.tiny_model_path(config_overrides)`; its vocabulary is
the tiny tokenizer's 4096 tokens, not Qwen2's 151,936) for GPU runs.

    python scripts/bench_rollout.py                       # tiny model, CPU: a few minutes
    python scripts/bench_rollout.py --backends hf          # without Ray
    python scripts/bench_rollout.py --model-config qwen2-0.5b --device cuda --episodes 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

# Qwen2-0.5B's shape (its config.json), for GPU benchmarks; vocabulary from the tiny tokenizer.
MODEL_CONFIGS: dict[str, dict[str, Any] | None] = {
    "tiny": None,
    "qwen2-0.5b": {
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
    },
}


def model_spec(model: str, model_config: str) -> str:
    """The `--model` to load: `tiny`, a path, or the folder of a `--model-config` shape."""
    if model_config == "tiny":
        return model
    if model != "tiny":
        sys.exit("give either --model PATH or --model-config NAME, not both")
    from arena.agents.tiny import tiny_model_path

    return str(tiny_model_path(MODEL_CONFIGS[model_config]))


class TimedPolicy:
    """Wraps a policy and adds up the wall time spent in its `act`."""

    def __init__(self, policy: Any):
        self.policy = policy
        self.name = policy.name
        self.seconds = 0.0
        self.calls = 0

    def act(self, requests: Sequence[Any]) -> list[Any]:
        t0 = time.perf_counter()
        try:
            return self.policy.act(requests)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


class EnvTimer:
    """Adds up the wall time spent inside the env's own methods (`reset`, `step`, `observe`,
    `legal_actions`) while in use: env stepping proper, apart from the engine's bookkeeping
    (requests, episode records, scheduling). Patches the env class for the duration of a
    `with` block; a call made from inside another timed call is counted once."""

    METHODS = ("reset", "step", "observe", "legal_actions")

    def __init__(self, env_id: str):
        from arena.registry import make

        self.cls = type(make(env_id))
        self.seconds = 0.0
        self._depth = 0
        self._saved: dict[str, Any] = {}

    def _wrap(self, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self._depth -= 1

        return timed

    def __enter__(self) -> Self:
        for name in self.METHODS:
            self._saved[name] = self.cls.__dict__.get(name)
            setattr(self.cls, name, self._wrap(getattr(self.cls, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, own in self._saved.items():
            if own is None:
                delattr(self.cls, name)  # the method was inherited: the base's comes back
            else:
                setattr(self.cls, name, own)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


ROW_KEYS = ("backend", "env", "concurrency", "episodes", "turns", "completion_tokens", "seconds",
            "episodes_per_s", "turns_per_s", "tokens_per_s")


def _row(backend: str, env_id: str, concurrency: int, episodes: list[Any], tokens: int, wall: float) -> dict[str, Any]:
    """The keys every backend's row has (`ROW_KEYS`)."""
    turns = sum(len(e.turns) for e in episodes)
    return {
        "backend": backend, "env": env_id, "concurrency": concurrency, "episodes": len(episodes), "turns": turns,
        "completion_tokens": tokens, "seconds": wall, "episodes_per_s": len(episodes) / wall,
        "turns_per_s": turns / wall, "tokens_per_s": tokens / wall,
        "invalid_moves": sum(1 for e in episodes for t in e.turns if t.legal is False),
    }


def bench_cell(policy: Any, env_id: str, concurrency: int, episodes: int, seed: int, device: str,
               backend: str = "hf", repeats: int = 1) -> dict[str, Any]:
    """The `hf` (or `vllm`) row: one (env, concurrency) cell in this process, after a warm-up
    of the same shape, with the time inside `policy.act` (generation) apart from the rest.

    With `repeats` > 1 the cell is timed that many times and the row is the repetition of
    median wall time, with the range of the env-stepping share over all of them
    (`env_share_min`, `env_share_max`): on a shared machine one timing can be off by 2x."""
    from arena.rollout import play

    play(env_id, [policy], min(episodes, concurrency), seed=10_000_000 + seed, concurrency=concurrency)
    runs = sorted((_timed_cell(policy, env_id, concurrency, episodes, seed, device, backend)
                   for _ in range(max(1, repeats))), key=lambda r: r["seconds"])
    row = dict(runs[len(runs) // 2])
    row.update(repeats=len(runs), env_share_min=min(r["env_share"] for r in runs),
               env_share_max=max(r["env_share"] for r in runs))
    return row


def _timed_cell(policy: Any, env_id: str, concurrency: int, episodes: int, seed: int, device: str,
                backend: str) -> dict[str, Any]:
    """One timed play of a cell (`bench_cell`)."""
    from arena.rollout import play

    timed = TimedPolicy(policy)
    tokens_before = policy.generated_tokens
    _sync(device)
    with EnvTimer(env_id) as env_timer:
        t0 = time.perf_counter()
        eps = play(env_id, [timed], episodes, seed=seed, concurrency=concurrency)
        _sync(device)
        wall = time.perf_counter() - t0
    row = _row(backend, env_id, concurrency, eps, policy.generated_tokens - tokens_before, wall)
    rest = max(wall - timed.seconds, 0.0)
    turns = max(row["turns"], 1)
    row.update({
        "generate_calls": timed.calls, "generation_seconds": timed.seconds, "env_engine_seconds": rest,
        "env_seconds": env_timer.seconds, "generation_share": timed.seconds / wall, "env_engine_share": rest / wall,
        "env_share": env_timer.seconds / wall, "env_engine_ms_per_turn": 1000 * rest / turns,
        "env_ms_per_turn": 1000 * env_timer.seconds / turns,
    })
    return row


class _Discard:
    """An episode writer that keeps nothing (the benchmark stores no run)."""

    def write(self, episodes: Any) -> int:
        return len(list(episodes))


class RayRows:
    """The `ray:N` rows: one training step's rollout (`RayRollout`) on N actors, the model's
    current weights broadcast first; the actors are started once and reused for every cell."""

    def __init__(self, workers: int, model: Any, spec: str, args: argparse.Namespace):
        from arena.config import TrainConfig

        self.workers, self.model, self.args = workers, model, args
        self.base = TrainConfig(model=spec, ray_address=args.ray_address, ray_workers=workers, seed=args.seed,
                                constrain=not args.no_constrain, max_new_tokens=args.max_new_tokens, temperature=1.0)
        self.rollout = None

    def __call__(self, env_id: str, concurrency: int) -> dict[str, Any]:
        import dataclasses
        import types

        from arena.ray_rollout import RayRollout

        config = dataclasses.replace(self.base, env=[env_id], concurrency=concurrency,
                                     episodes_per_step=self.args.episodes)
        if self.rollout is None:
            self.rollout = RayRollout(config)
        self.rollout.config = config  # what to play; the actors take the env and sizes from each call
        trainer = types.SimpleNamespace(model=self.model, writer=_Discard(), run_dir=Path("bench"))
        self.rollout(trainer, 10_000_000, {})  # warm-up
        t0 = time.perf_counter()
        eps = self.rollout(trainer, 0, {})
        wall = time.perf_counter() - t0
        tokens = sum(len(t.token_ids or []) for e in eps for t in e.turns)
        return _row(f"ray:{self.workers}", env_id, min(concurrency, self.args.episodes), eps, tokens, wall)

    def close(self) -> None:
        if self.rollout is not None:
            self.rollout.close()


def hf_policy(args: argparse.Namespace, model: Any, tokenizer: Any, **kwargs: Any) -> Any:
    """The `hf` policy the rows time: sampling at temperature 1, the flags' constraint, seed
    and cache; `kwargs` override (`share_prefix=False` for `hf-plain`)."""
    from arena.agents.hf import HFPolicy

    return HFPolicy(model, tokenizer, name="model", max_new_tokens=args.max_new_tokens, temperature=1.0,
                    constrain=not args.no_constrain, seed=args.seed, static_cache=args.static_cache or None, **kwargs)


def _hf_rows(ctx: Any, name: str) -> Any:
    return lambda env_id, c: bench_cell(ctx.policy, env_id, c, ctx.args.episodes, ctx.args.seed, ctx.device,
                                        repeats=ctx.args.repeats)


def _hf_plain_rows(ctx: Any, name: str) -> Any:
    """The `hf-plain` rows: the `hf` policy on the same weights with `share_prefix=False`
    (every row's whole prompt prefilled, as plain `generate` does): what sharing the
    context saves, on CPU (dynamic cache) and on CUDA (static cache) alike."""
    policy = hf_policy(ctx.args, ctx.model, ctx.tokenizer, share_prefix=False)
    return lambda env_id, c: bench_cell(policy, env_id, c, ctx.args.episodes, ctx.args.seed, ctx.device,
                                        "hf-plain", repeats=ctx.args.repeats)


def _vllm_rows(ctx: Any, name: str) -> Any:
    """The `vllm` rows: the same cells with an in-process vLLM engine (`arena.agents.vllm`)
    serving the same weights, the legal-action trie as its logits processor."""
    from arena.agents.vllm import VLLMPolicy

    policy = VLLMPolicy(ctx.model, ctx.tokenizer, name="model", max_new_tokens=ctx.args.max_new_tokens,
                        temperature=1.0, constrain=not ctx.args.no_constrain, seed=ctx.args.seed)
    return lambda env_id, c: bench_cell(policy, env_id, c, ctx.args.episodes, ctx.args.seed, ctx.device, "vllm",
                                        repeats=ctx.args.repeats)


def _ray_rows(ctx: Any, name: str) -> Any:
    workers = name.partition(":")[2] or "1"
    if not workers.isdigit() or int(workers) < 1:
        sys.exit(f"--backends {name}: write ray:N with N >= 1 workers")
    return RayRows(int(workers), ctx.model, ctx.spec, ctx.args)


#: backend name (before any `:`) -> factory(ctx, full name) of its row function `row(env_id, concurrency)`
BACKENDS: dict[str, Any] = {"hf": _hf_rows, "hf-plain": _hf_plain_rows, "vllm": _vllm_rows, "ray": _ray_rows}


def make_rows(names: list[str], ctx: Any) -> dict[str, Any]:
    """The row function of each requested backend; Ray rows are left out (with a word)
    when Ray is not installed."""
    rows = {}
    for name in names:
        kind = name.partition(":")[0]
        if kind not in BACKENDS:
            sys.exit(f"unknown backend {name!r}; choose from: hf, hf-plain, vllm, ray:N")
        needs = {"ray": ("ray", "selfplay-arena[ray]"), "vllm": ("vllm", "bash scripts/test_vllm.sh's venv")}.get(kind)
        if needs:
            try:
                __import__(needs[0])
            except ImportError:
                print(f"skipping {name}: {needs[0]} is not installed ({needs[1]})", file=sys.stderr)
                continue
        rows[name] = BACKENDS[kind](ctx, name)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a local folder written by save_pretrained")
    parser.add_argument("--model-config", default="tiny", choices=sorted(MODEL_CONFIGS),
                        help="model shape built like tiny (random init); qwen2-0.5b for GPU runs")
    parser.add_argument("--env", action="append", help="env id (repeat); default Kuhn Poker and TicTacToe")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated concurrent episodes")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per (env, concurrency) cell")
    parser.add_argument("--backends", default="hf,vllm,ray:1,ray:2",
                        help="comma-separated backends: hf (this process), hf-plain (hf without prompt sharing), "
                             "vllm (an in-process vLLM engine), ray:N (N Ray actors)")
    parser.add_argument("--ray-address", default="local", help="Ray for the ray:N rows: local, auto or HOST:PORT")
    parser.add_argument("--ray-concurrency", type=int, default=None,
                        help="episodes in flight over all actors in the ray:N rows (default: the highest --concurrency)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-constrain", action="store_true", help="free decoding (default: legal actions only)")
    parser.add_argument("--static-cache", action="store_true",
                        help="generate from a bf16 copy with the static cache on any device (default: on CUDA only)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="completion cap (free decoding)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 is much faster for the tiny model on a busy CPU")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings per hf/vllm cell; the row is the median one, with the env-stepping share's range")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_rollout.json", help="JSON file for the results")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    import types

    import torch
    from arena.agents.hf import load_model

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    envs = args.env or ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"]
    levels = [int(c) for c in args.concurrency.split(",")]
    spec = model_spec(args.model, args.model_config)
    model, tokenizer = load_model(spec, device=device)
    policy = hf_policy(args, model, tokenizer)
    ctx = types.SimpleNamespace(policy=policy, model=model, tokenizer=tokenizer, spec=spec, args=args, device=device)
    rows = make_rows([b.strip() for b in args.backends.split(",") if b.strip()], ctx)
    started_ray = False
    if any(name.startswith("ray") for name in rows):
        from arena.ray_rollout import connect

        started_ray = connect(args.ray_address)  # one Ray for every ray:N row
    results = []
    try:
        for name, row in rows.items():  # one backend at a time: its actors are gone before the next starts
            try:
                for env_id in envs:
                    for c in levels if not name.startswith("ray") else [args.ray_concurrency or max(levels)]:
                        results.append(row(env_id, c))
                        r = results[-1]
                        print(f"{name} {env_id} x{c}: {r['episodes_per_s']:.2f} episodes/s", file=sys.stderr)
                        with open(args.out, "w") as f:  # each row as it comes: a run cut by a time limit keeps them
                            json.dump({"partial": True, "results": results}, f, indent=2)
            finally:
                if hasattr(row, "close"):
                    row.close()
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    results.sort(key=lambda r: envs.index(r["env"]))  # stable: backends in order within an env
    print_table(results, args, device, torch.get_num_threads())
    meta = {
        "model": args.model, "model_config": args.model_config, "device": device, "backends": list(rows),
        "constrain": not args.no_constrain, "episodes": args.episodes, "seed": args.seed,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def print_table(results: list[dict[str, Any]], args: argparse.Namespace, device: str, threads: int) -> None:
    """One row per (env, backend, concurrency); speed-ups against the hf row at the lowest
    concurrency of the same env (the first row of the env without hf)."""
    from rich.console import Console
    from rich.table import Table

    model = args.model if args.model_config == "tiny" else args.model_config
    static = ", static cache (bf16)" if args.static_cache or device.startswith("cuda") else ""
    table = Table(title=f"rollout: {model}, hf on {device} ({threads} threads{static}), ray:N on N CPU actors (1 thread each), "
                        f"{'constrained' if not args.no_constrain else 'free'} decoding, {args.episodes} episodes per row")
    for col in ("backend", "env", "concurrent", "episodes/s", "x vs first", "turns/s", "tokens/s", "generation",
                "env + engine", "env + engine ms/turn", "env stepping", "env ms/turn"):
        table.add_column(col, justify="left" if col in ("backend", "env") else "right", no_wrap=True)
    base: dict[str, float] = {}
    for r in results:
        base.setdefault(r["env"], r["episodes_per_s"])

    def pct(key: str) -> str:
        return f"{100 * r[key]:.2f}%" if key in r else "-"

    for r in results:
        table.add_row(r["backend"], r["env"], str(r["concurrency"]), f"{r['episodes_per_s']:.2f}",
                      f"{r['episodes_per_s'] / base[r['env']]:.1f}x", f"{r['turns_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                      pct("generation_share"), pct("env_engine_share"),
                      f"{r['env_engine_ms_per_turn']:.3f}" if "env_engine_ms_per_turn" in r else "-",
                      pct("env_share") + (f" ({100 * r['env_share_min']:.2f}-{100 * r['env_share_max']:.2f})"
                                          if r.get("repeats", 1) > 1 else ""),
                      f"{r['env_ms_per_turn']:.3f}" if "env_ms_per_turn" in r else "-")
    Console(width=210).print(table)


if __name__ == "__main__":
    raise SystemExit(main())
