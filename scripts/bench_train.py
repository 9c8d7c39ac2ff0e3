"""Training throughput: completion tokens per second of one training step, arena's
`SelfPlayTrainer` against plain TRL `GRPOTrainer`, same model, batch and lengths, one run.

What is compared, exactly:

- **Both**: the same model (two copies loaded from the same folder: `--model tiny`, a
  path, or `--model-config qwen2-0.5b`, a Qwen2-0.5B-shaped random-init model with the
  tiny tokenizer), TRL 1.16's loss (`loss_type` dapo, epsilon 0.2, beta 0, one iteration),
  AdamW at the same learning rate, one optimizer step per training step, no gradient
  accumulation, gradient checkpointing as `--gradient-checkpointing` says (default on:
  TRL's default; arena turns it off on CPU), sampling at temperature 1, top-p 1, no top-k,
  at most `--length` (L) completion tokens, **free decoding** on both sides (no legal-action constraint, so both
  generate the same kind of text until EOS or L tokens; with random weights EOS is rare,
  so nearly every completion is L tokens). A step is: generate the batch, score it, one
  forward and backward pass over prompts + completions, the optimizer step.
- **plain TRL**: `GRPOTrainer` with a dataset of `--prompts` (P) Kuhn Poker chat prompts
  (SPIRAL's prompt, both seats), `num_generations` G, a batch of P * G completions per step,
  `max_completion_length` L, and a constant reward function (the reward's cost is nil; the
  advantages are 0, which changes no cost of the step). Generation is TRL's own
  (`model.generate`, TRL's default generation path; on CUDA with bf16 autocast).
- **arena**: `SelfPlayTrainer` with P * G Kuhn Poker self-play episodes per step, all in
  flight at once (`concurrency` = P * G), `max_new_tokens` L, RAE advantages. With free
  decoding an untrained model's first move is invalid and ends the episode, so each
  episode is one model turn and a step trains P * G completions, as TRL's. Generation is
  `HFPolicy` (plain `generate` on CPU; on CUDA a bf16 copy with the static, compiled cache).
  The episodes are written to a run folder in a temporary directory, as in training.

Measured per step (a callback at the start and end of each optimizer step): wall seconds;
completion tokens actually trained (the sum of the batch's completion mask, so tokens/s
is honest when a completion stops early at EOS); and the part of the step spent in
`_generate_and_score_completions` (generation and scoring: for arena the whole rollout).
Process CPU seconds per step are recorded too (less disturbed by other load on a shared
machine; with `--threads 1` they are the work done). Each trainer runs `--rounds` times
(a fresh trainer and model each time), alternating which goes first; the first
`--warmup` steps of each run are excluded; the table shows the median over all timed
steps, and the ratio arena / TRL of completion tokens per second (wall and CPU).
The machine may be shared: the ratio is what to compare.

    python scripts/bench_train.py                                  # tiny model, CPU
    python scripts/bench_train.py --model-config qwen2-0.5b --device cuda --prompts 64 --generations 8 --length 128
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rollout import MODEL_CONFIGS, model_spec

ENV_ID = "spiral/KuhnPoker-v0"


def kuhn_prompts(n: int) -> list[list[dict[str, str]]]:
    """`n` chat prompts of Kuhn Poker first moves, seeds 0, 1, ...: the first mover's
    (player_0 in the one-hand game), whose prompt depends on its card alone, so three
    distinct prompts however many are asked for, as in arena's self-play batch."""
    from arena.registry import make

    env = make(ENV_ID)
    out: list[list[dict[str, str]]] = []
    seed = 0
    while len(out) < n:
        env.reset(seed=seed)
        role = env.agent_selection
        out.append(env.prompt(role))
        seed += 1
    return out


def _constant_reward(completions: list, **kwargs: Any) -> list[float]:
    return [0.0] * len(completions)


def instrumented(cls: type) -> type:
    """A subclass of a GRPOTrainer class that records, per step, the seconds and the
    completion tokens of `_generate_and_score_completions`."""

    class Instrumented(cls):
        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            _sync()
            self.bench_gen.append(time.perf_counter() - t0)
            self.bench_tokens.append(int(out["completion_mask"].sum()))
            self.bench_rows.append(int((out["completion_mask"].sum(1) > 0).sum()))
            return out

    Instrumented.__name__ = f"Instrumented{cls.__name__}"
    return Instrumented


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def step_timer(trainer: Any):
    """A callback that records the wall seconds of every optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            trainer.bench_steps.append(time.perf_counter() - self.t0)
            trainer.bench_cpu.append(time.process_time() - self.c0)

    return StepTimer()


def _attach(trainer: Any) -> Any:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # quiet: the table says it all
    trainer.remove_callback(ProgressCallback)
    trainer.bench_gen, trainer.bench_tokens, trainer.bench_rows, trainer.bench_steps, trainer.bench_cpu = [], [], [], [], []
    trainer.add_callback(step_timer(trainer))
    return trainer


def run_trl(spec: str, args: argparse.Namespace, device: str, out_dir: Path) -> Any:
    import torch
    from arena.agents.hf import load_model
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tokenizer = load_model(spec, device=device)
    steps = args.warmup + args.steps
    use_cuda = device.startswith("cuda")
    config = GRPOConfig(
        output_dir=str(out_dir / "trl"), max_steps=steps, per_device_train_batch_size=args.prompts * args.generations,
        gradient_accumulation_steps=1, num_generations=args.generations, max_completion_length=args.length,
        temperature=1.0, top_p=1.0, top_k=0, learning_rate=args.learning_rate, loss_type="dapo", epsilon=0.2, beta=0.0,
        num_iterations=1, logging_steps=1, save_strategy="no", report_to=[], seed=args.seed, use_cpu=not use_cuda,
        bf16=use_cuda and torch.cuda.is_bf16_supported(), disable_tqdm=True, lr_scheduler_type="constant",
        gradient_checkpointing=args.gradient_checkpointing == "on",
    )
    dataset = Dataset.from_dict({"prompt": kuhn_prompts(args.prompts * steps)})
    trainer = instrumented(GRPOTrainer)(model=model, reward_funcs=[_constant_reward], args=config,
                                        train_dataset=dataset, processing_class=tokenizer)
    _attach(trainer).train()
    return trainer


def run_arena_unshared(spec: str, args: argparse.Namespace, device: str, out_dir: Path) -> Any:
    """arena with its generation's prompt sharing off (`HFPolicy(share_prefix=False)`):
    every completion prefills its own prompt, as TRL's do, so the generation ratio
    (`generate_ratio_arena_unshared_over_trl`) is the generation path's alone (on CUDA the
    static, compiled cache); the loss still runs each shared prefix once (`arena.prefix`)."""
    return run_arena(spec, args, device, out_dir, share_prefix=False)


def run_arena(spec: str, args: argparse.Namespace, device: str, out_dir: Path, share_prefix: bool = True) -> Any:
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer

    batch = args.prompts * args.generations
    config = TrainConfig(
        env=[ENV_ID], episodes_per_step=batch, concurrency=batch, model=spec, max_new_tokens=args.length,
        temperature=1.0, top_p=1.0, constrain=False, steps=args.warmup + args.steps, learning_rate=args.learning_rate,
        loss_type="dapo", epsilon=0.2, beta=0.0, num_iterations=1, gradient_accumulation_steps=1,
        out=str(out_dir / "arena"), seed=args.seed, save_every=10**9, eval_every=0, device=device,
        gradient_checkpointing=args.gradient_checkpointing == "on",
        sampling_correction={"default": None, "on": True, "off": False}[args.sampling_correction],
    )
    model, tokenizer = load_model(spec, device=device)
    policy = HFPolicy(model, tokenizer, name="model", max_new_tokens=args.length, temperature=1.0, top_p=1.0,
                      constrain=False, seed=args.seed, share_prefix=share_prefix)
    run_dir = out_dir / "arena"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = instrumented(SelfPlayTrainer)(config, model, tokenizer, policy, run_dir)
    trainer.args.disable_tqdm = True
    try:
        _attach(trainer).train()
    finally:
        trainer.writer.close()
    # the sampler's mismatch with the trained model (arena/correction.py), where corrected
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    trainer.bench_sampling = {k: [float(r[k]) for r in rows if r.get(k)] for k in (rows[0] if rows else {})
                              if k.startswith("sampling/")}
    return trainer


def timed(trainer: Any, warmup: int) -> dict[str, list]:
    """The per-step records of one trainer run, warm-up steps dropped."""
    return {"steps": trainer.bench_steps[warmup:], "cpu": trainer.bench_cpu[warmup:], "gen": trainer.bench_gen[warmup:],
            "tokens": trainer.bench_tokens[warmup:], "rows": trainer.bench_rows[warmup:],
            "sampling": getattr(trainer, "bench_sampling", {})}


def summary(name: str, runs: list[dict[str, list]]) -> dict[str, Any]:
    """Medians over the timed steps of every round of one trainer."""
    steps = [x for r in runs for x in r["steps"]]
    cpu = [x for r in runs for x in r["cpu"]]
    gen = [x for r in runs for x in r["gen"]]
    tokens = [x for r in runs for x in r["tokens"]]
    rows = [x for r in runs for x in r["rows"]]
    return {
        "trainer": name, "timed_steps": len(steps), "step_seconds_median": statistics.median(steps),
        "generate_score_seconds_median": statistics.median(gen),
        "generate_score_share": statistics.median(g / s for g, s in zip(gen, steps)),
        "completions_per_step": statistics.median(rows), "completion_tokens_per_step": statistics.median(tokens),
        "mean_completion_length": sum(tokens) / max(sum(rows), 1),
        "tokens_per_s_median": statistics.median(t / s for t, s in zip(tokens, steps)),
        "tokens_per_s_total": sum(tokens) / sum(steps),
        "step_cpu_seconds_median": statistics.median(cpu),
        "tokens_per_cpu_s_median": statistics.median(t / c for t, c in zip(tokens, cpu)),
        "rounds": runs,
    }


def write_json(path: str, meta: dict[str, Any], runs: dict[str, list[dict[str, list]]], *,
               complete: bool) -> tuple[dict[str, Any], float | None, float | None]:
    """Write the summaries so far to `path` (after every run, `complete` false until the
    last); returns them with the arena/TRL ratios (None until both have run)."""
    results = {name: summary(name, r) for name, r in runs.items() if r}
    ratio = cpu_ratio = None
    if "arena" in results and "trl" in results:
        ratio = results["arena"]["tokens_per_s_median"] / results["trl"]["tokens_per_s_median"]
        cpu_ratio = results["arena"]["tokens_per_cpu_s_median"] / results["trl"]["tokens_per_cpu_s_median"]
    extra = {}
    if "arena-unshared" in results and "trl" in results:  # the ratio without prompt sharing
        extra["ratio_arena_unshared_over_trl"] = (results["arena-unshared"]["tokens_per_s_median"]
                                                  / results["trl"]["tokens_per_s_median"])
        extra["generate_ratio_arena_unshared_over_trl"] = (results["trl"]["generate_score_seconds_median"]
                                                           / results["arena-unshared"]["generate_score_seconds_median"])
    if "arena" in results and "trl" in results:  # generation and scoring alone, the same tokens
        extra["generate_ratio_arena_over_trl"] = (results["trl"]["generate_score_seconds_median"]
                                                  / results["arena"]["generate_score_seconds_median"])
    with open(path, "w") as f:
        json.dump({"meta": meta, "complete": complete, "ratio_arena_over_trl": ratio,
                   "cpu_ratio_arena_over_trl": cpu_ratio, **extra, "results": results}, f, indent=2)
    return results, ratio, cpu_ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a local folder written by save_pretrained")
    parser.add_argument("--model-config", default="tiny", choices=sorted(MODEL_CONFIGS),
                        help="model shape built like tiny (random init); qwen2-0.5b for GPU runs")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (TRL); arena plays prompts*generations episodes")
    parser.add_argument("--generations", type=int, default=8, help="completions per prompt (TRL num_generations)")
    parser.add_argument("--length", type=int, default=32, help="completion length L (max new tokens, both sides)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps per trainer")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--order", default="trl,arena",
                        help="the trainers, in the order they run in odd rounds (reversed in even ones): trl, arena, "
                             "and arena-unshared (arena generating without prompt sharing, to tell it from the "
                             "generation path)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each trainer, alternating which goes first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gradient-checkpointing", default="on", choices=["on", "off"],
                        help="the same on both sides (TRL's default: on; arena's CPU default: off)")
    parser.add_argument("--sampling-correction", default="default", choices=["default", "on", "off"],
                        help="arena's correction for its sampler (default: on for the CUDA bf16 generation copy, "
                             "off on CPU; arena/correction.py); TRL's run has none without vLLM")
    parser.add_argument("--out", default="bench_train.json", help="JSON file for the results")
    args = parser.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    spec = model_spec(args.model, args.model_config)
    trainers = {"trl": run_trl, "arena": run_arena, "arena-unshared": run_arena_unshared}
    order = [name.strip() for name in args.order.split(",") if name.strip()]
    unknown = [name for name in order if name not in trainers]
    if unknown or "trl" not in order:
        parser.error(f"--order takes trl and any of arena, arena-unshared, comma-separated; got {args.order!r}")
    runs: dict[str, list[dict[str, list]]] = {name: [] for name in order}
    meta = {
        "model": args.model, "model_config": args.model_config, "device": device, "prompts": args.prompts,
        "generations": args.generations, "length": args.length, "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
        "order": args.order, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }
    for round_ in range(args.rounds):
        for name in order if round_ % 2 == 0 else order[::-1]:  # alternate who goes first
            with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
                print(f"round {round_ + 1}/{args.rounds}: {name} ...", file=sys.stderr)
                trainer = trainers[name](spec, args, device, Path(tmp))
                runs[name].append(timed(trainer, args.warmup))
                del trainer
            write_json(args.out, meta, runs, complete=False)  # a run cut by a time limit keeps what it measured
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    results, ratio, cpu_ratio = write_json(args.out, meta, runs, complete=True)

    label = args.model if args.model_config == "tiny" else args.model_config
    table = Table(title=f"one training step: {label} on {device} ({torch.get_num_threads()} threads), "
                        f"{args.prompts}x{args.generations} completions of <= {args.length} tokens, "
                        f"median of {args.rounds}x{args.steps} steps, each run after {args.warmup} warm-up")
    for col in ("trainer", "step s", "generate+score", "completions", "tokens/step", "tokens/s", "vs TRL",
                "CPU s", "tokens/CPU s", "vs TRL (CPU)"):
        table.add_column(col, justify="left" if col == "trainer" else "right", no_wrap=True)
    labels = {"trl": "plain TRL GRPOTrainer", "arena": "arena SelfPlayTrainer",
              "arena-unshared": "arena, generation unshared"}
    for name in [n for n in labels if n in results]:
        r = results[name]
        table.add_row(labels[name],
                      f"{r['step_seconds_median']:.2f}", f"{100 * r['generate_score_share']:.0f}%",
                      f"{r['completions_per_step']}", f"{r['completion_tokens_per_step']}",
                      f"{r['tokens_per_s_median']:.0f}", f"{r['tokens_per_s_median'] / results['trl']['tokens_per_s_median']:.2f}x",
                      f"{r['step_cpu_seconds_median']:.2f}", f"{r['tokens_per_cpu_s_median']:.0f}",
                      f"{r['tokens_per_cpu_s_median'] / results['trl']['tokens_per_cpu_s_median']:.2f}x")
    Console(width=160).print(table)
    gaps = [x for r in runs["arena"] for x in r["sampling"].get("sampling/sampling_logp_difference/mean", [])]
    if gaps:
        lows = [x for r in runs["arena"] for x in r["sampling"]["sampling/importance_sampling_ratio/min"]]
        highs = [x for r in runs["arena"] for x in r["sampling"]["sampling/importance_sampling_ratio/max"]]
        print(f"arena corrected for its sampler: mean |log-prob gap| {statistics.median(gaps):.2e} per token "
              f"(median over steps), weights {min(lows):.4f}..{max(highs):.4f}", file=sys.stderr)
    said = f"{ratio:.2f}x wall, {cpu_ratio:.2f}x CPU" if ratio is not None else "arena not run"
    print(f"arena / TRL completion tokens/s: {said}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
