"""Rollout throughput with a model agent: episodes/s at 1, 8 and 64 concurrent episodes,
and where the time goes (generation vs everything else the engine does).

For each env (`--env`, default Kuhn Poker and TicTacToe) and each concurrency
(`--concurrency`, default 1, 8, 64), plays `--episodes` self-play episodes with
`arena.rollout.play` and one `hf` policy in every seat (`make_hf_agent`-style: the tiny
model constrained to legal actions by default, temperature 1). The policy is wrapped so
that the time inside `policy.act` (tokenising the prompts, `generate`, decoding) is
counted as **generation**; the rest of the wall time of `play` is **env + engine**:
env reset/step/observe, building the chat prompts and legal-action lists, and the
episode records. The target is env + engine < 1% of the rollout; its cost per turn (ms)
is shown too, since the share depends on how fast the model is.

Each (env, concurrency) cell is timed after a warm-up `play` of the same shape (not
counted), so the first call's one-off costs (and on CUDA the static-cache compilation per
batch bucket) are excluded. The machine may be shared: compare the ratios (speed-up over
concurrency 1, shares), not the absolute numbers, across machines.

`--model-config qwen2-0.5b` builds a Qwen2-0.5B-shaped model with random weights and the
tiny tokenizer (`arena.agents.tiny.tiny_model_path(config_overrides)`; its vocabulary is
the tiny tokenizer's 4096 tokens, not Qwen2's 151,936) for GPU runs.

    python scripts/bench_rollout.py                       # tiny model, CPU: a few minutes
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
from typing import Any

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


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def bench_cell(policy: Any, env_id: str, concurrency: int, episodes: int, seed: int, device: str) -> dict[str, Any]:
    """Time one (env, concurrency) cell after a warm-up of the same shape."""
    from arena.rollout import play

    play(env_id, [policy], min(episodes, concurrency), seed=10_000_000 + seed, concurrency=concurrency)
    timed = TimedPolicy(policy)
    tokens_before = policy.generated_tokens
    _sync(device)
    t0 = time.perf_counter()
    eps = play(env_id, [timed], episodes, seed=seed, concurrency=concurrency)
    _sync(device)
    wall = time.perf_counter() - t0
    turns = sum(len(e.turns) for e in eps)
    tokens = policy.generated_tokens - tokens_before
    rest = max(wall - timed.seconds, 0.0)
    return {
        "env": env_id, "concurrency": concurrency, "episodes": episodes, "turns": turns,
        "generate_calls": timed.calls, "completion_tokens": tokens, "seconds": wall,
        "episodes_per_s": episodes / wall, "turns_per_s": turns / wall, "tokens_per_s": tokens / wall,
        "generation_seconds": timed.seconds, "env_engine_seconds": rest,
        "generation_share": timed.seconds / wall, "env_engine_share": rest / wall,
        "env_engine_ms_per_turn": 1000 * rest / max(turns, 1),
        "invalid_moves": sum(1 for e in eps for t in e.turns if t.legal is False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a local folder written by save_pretrained")
    parser.add_argument("--model-config", default="tiny", choices=sorted(MODEL_CONFIGS),
                        help="model shape built like tiny (random init); qwen2-0.5b for GPU runs")
    parser.add_argument("--env", action="append", help="env id (repeat); default Kuhn Poker and TicTacToe")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated concurrent episodes")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per (env, concurrency) cell")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-constrain", action="store_true", help="free decoding (default: legal actions only)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="completion cap (free decoding)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's); 1 is much faster for the tiny model on a busy CPU")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_rollout.json", help="JSON file for the results")
    args = parser.parse_args(argv)

    import torch
    from arena.agents.hf import HFPolicy, load_model
    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    envs = args.env or ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"]
    levels = [int(c) for c in args.concurrency.split(",")]
    spec = model_spec(args.model, args.model_config)
    model, tokenizer = load_model(spec, device=device)
    policy = HFPolicy(model, tokenizer, name="model", max_new_tokens=args.max_new_tokens, temperature=1.0,
                      constrain=not args.no_constrain, seed=args.seed)
    results = []
    for env_id in envs:
        for c in levels:
            results.append(bench_cell(policy, env_id, c, args.episodes, args.seed, device))
            r = results[-1]
            print(f"{env_id} x{c}: {r['episodes_per_s']:.2f} episodes/s, env+engine {100 * r['env_engine_share']:.2f}%",
                  file=sys.stderr)

    table = Table(title=f"rollout: {args.model if args.model_config == 'tiny' else args.model_config} on {device} ({torch.get_num_threads()} threads), "
                        f"{'constrained' if not args.no_constrain else 'free'} decoding, {args.episodes} episodes per row")
    for col in ("env", "concurrent", "episodes/s", "x vs 1", "turns/s", "tokens/s", "generation", "env + engine", "env + engine ms/turn"):
        table.add_column(col, justify="left" if col == "env" else "right", no_wrap=True)
    base = {r["env"]: r["episodes_per_s"] for r in results if r["concurrency"] == min(levels)}
    for r in results:
        table.add_row(r["env"], str(r["concurrency"]), f"{r['episodes_per_s']:.2f}",
                      f"{r['episodes_per_s'] / base[r['env']]:.1f}x", f"{r['turns_per_s']:.1f}", f"{r['tokens_per_s']:.0f}",
                      f"{100 * r['generation_share']:.2f}%", f"{100 * r['env_engine_share']:.2f}%",
                      f"{r['env_engine_ms_per_turn']:.3f}")
    Console(width=160).print(table)
    meta = {
        "model": args.model, "model_config": args.model_config, "device": device,
        "constrain": not args.no_constrain, "episodes": args.episodes, "seed": args.seed,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
