"""Memory of the `hf` backend's bf16 generation copy: making it, and one sync (LoRA).

On CUDA the `hf` agent generates from a bf16 module beside the trained model
(`arena.weights.bf16_copy`), refreshed after every optimizer step (`fill` from
`merged_weights`). This script measures, for each `--dtype` of the trained weights with and
without LoRA, how much memory that costs, arena's way against the plain way in the same
run:

- **copy, plain**: `copy.deepcopy(model)` (a PEFT model merged with `merge_and_unload`),
  then `.to(torch.bfloat16)`: what arena did before, the obvious code.
- **copy, arena**: `bf16_copy(model)`: bf16 weights lent as views, the rest cast tensor by
  tensor into the copy.
- **sync, plain**: every merged weight (`W + B A` of each adapted layer, and the deltas)
  computed into a dict at once, then copied in: what arena did before.
- **sync, arena**: `fill(copy, merged_weights(model), views)`: one merged weight at a time.

Measured per cell in a fresh process: on CPU the rise of the resident set above its value
just before (sampled every 0.5 ms; glibc told to give large blocks back at once, and the
model's pages touched first, so the figure is live memory), on CUDA `max_memory_allocated`
above the allocation before. "kept" is what stays allocated after. The model is
`--model-config` (default qwen2-0.5b: Qwen2-0.5B's shape with the tiny tokenizer's 3k
vocabulary, random init, 0.36 B parameters) or `--model`.

    python scripts/bench_memory.py --out bench_memory.json
    python scripts/bench_memory.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).parent))
from bench_rollout import MODEL_CONFIGS, model_spec

CELLS = [(dtype, lora, what, how) for dtype in ("float32", "bfloat16") for lora in (False, True)
         for what in ("copy", "sync") for how in ("plain", "arena") if lora or what == "copy"]


def plain_merged(model: Any) -> dict[str, Any]:
    """Every merged weight at once: the deltas, then `W + delta` for each (arena's code
    before `MergedWeights`)."""
    import torch

    from arena.weights import MergedWeights

    lazy = MergedWeights(model.get_base_model())
    with torch.no_grad():
        deltas = {key: sum(m.get_delta_weight(a) for m, adapters in lazy._adapters[key] for a in adapters)
                  for key in lazy._adapters}
        return {key: lazy._base[key] + deltas[key] if key in deltas else lazy._base[key] for key in lazy}


class Peak:
    """The peak of memory in use above the level at `start` (RSS sampled on CPU; the CUDA
    allocator's own counter on a GPU)."""

    def __init__(self, device: str):
        self.device = device

    def now(self) -> int:
        if self.device == "cuda":
            import torch

            return torch.cuda.memory_allocated()
        import psutil

        return psutil.Process().memory_info().rss

    def __enter__(self) -> Self:
        self.base = self.now()
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            self.top, self.stop = self.base, False
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop:
            self.top = max(self.top, self.now())
            time.sleep(0.0005)

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            import torch

            self.top = torch.cuda.max_memory_allocated()
        else:
            self.stop = True
            self.thread.join()
            self.top = max(self.top, self.now())
        self.kept = self.now() - self.base
        self.rise = self.top - self.base


def cell(spec: str, dtype: str, lora: bool, what: str, how: str, device: str) -> dict[str, Any]:
    """One measurement, in this process (run by `main` in a fresh one)."""
    import gc

    import torch
    from arena.agents.hf import load_model

    from arena.weights import bf16_copy, fill, merged_weights

    model, _ = load_model(spec, device=device, dtype=getattr(torch, dtype))
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear", task_type="CAUSAL_LM"))
        for module in model.modules():
            if hasattr(module, "lora_B"):
                torch.nn.init.normal_(module.lora_B["default"].weight, std=1e-3)
    for p in model.parameters():  # resident before measuring (weights load memory-mapped)
        p.detach().sum()
    gen, views = bf16_copy(model) if what == "sync" else (None, {})
    gc.collect()
    with Peak(device) as peak:
        if what == "copy" and how == "plain":
            plain = copy.deepcopy(model)
            gen = (plain.merge_and_unload() if lora else plain).to(torch.bfloat16)
        elif what == "copy":
            gen, views = bf16_copy(model)
        elif how == "plain":
            weights = plain_merged(model)
            with torch.no_grad():
                for key, value in gen.state_dict().items():
                    value.copy_(weights[key])
            del weights
        else:
            fill(gen, merged_weights(model), views)
        gc.collect()
    params = sum(p.numel() for p in model.parameters())
    return {"dtype": dtype, "lora": lora, "what": what, "how": how, "device": device, "parameters": params,
            "peak_rise_mb": round(peak.rise / 2**20, 1), "kept_mb": round(peak.kept / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny or a model folder (or use --model-config)")
    parser.add_argument("--model-config", default="qwen2-0.5b", choices=sorted(MODEL_CONFIGS),
                        help="model shape built like tiny (random init)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="bench_memory.json", help="JSON results")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: one cell, in a fresh process
    args = parser.parse_args(argv)
    spec = model_spec(args.model, args.model_config if args.model == "tiny" else "tiny")
    if args.cell:
        dtype, lora, what, how = args.cell.split(",")
        print(json.dumps(cell(spec, dtype, lora == "lora", what, how, args.device)))
        return 0
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")  # large blocks go back to the OS when freed
    rows = []
    for dtype, lora, what, how in CELLS:
        name = f"{dtype},{'lora' if lora else 'full'},{what},{how}"
        proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--model-config", args.model_config,
                               "--device", args.device, "--cell", name], check=False, capture_output=True, text=True,
                              env=env)
        if proc.returncode:
            sys.exit(f"cell {name} failed:\n{proc.stderr[-2000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['peak_rise_mb']} MB", file=sys.stderr)
    label = args.model if args.model != "tiny" else args.model_config
    print(f"\n{label} ({rows[0]['parameters'] / 1e9:.2f} B parameters), {args.device}: memory above the trained model's")
    print("| weights | LoRA | step | plain: peak MB | plain: kept MB | arena: peak MB | arena: kept MB |")
    print("|---|---|---|---|---|---|---|")
    for dtype, lora, what, how in CELLS:
        if how != "plain":
            continue
        plain, ours = (next(r for r in rows if (r["dtype"], r["lora"], r["what"], r["how"]) == (dtype, lora, what, h))
                       for h in ("plain", "arena"))
        print(f"| {dtype} | {'r=16' if lora else 'no'} | {what} | {plain['peak_rise_mb']:.0f} | {plain['kept_mb']:.0f} "
              f"| {ours['peak_rise_mb']:.0f} | {ours['kept_mb']:.0f} |")
    Path(args.out).write_text(json.dumps({"model": spec, "device": args.device, "results": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
