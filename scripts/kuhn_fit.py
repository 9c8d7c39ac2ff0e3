"""Can the model represent a Kuhn Poker strategy? Fit it by supervised learning and see.

A capacity check for self-play runs that stall: the model (default the fresh `tiny` one) is
trained by cross-entropy to play a target strategy table (default the Nash equilibrium
`nash_policy(1/3)`) at the twelve info states, on the constrained action probabilities that
`arena eval` reads (`arena.evaluate.action_logprobs`, the prompts a rollout builds:
`info_state_request`), full batch, Adam. It prints the loss, the exact exploitability of the
model's table and the table every `--every` steps, and writes the rows as JSON. If the fit
reaches near 0 and self-play does not, what holds self-play is its dynamics, not the model.

    python scripts/kuhn_fit.py                       # tiny model, Nash target, 300 steps (~3 min)
    python scripts/kuhn_fit.py --model runs/kuhn-selfplay/model --alpha 0
"""

from __future__ import annotations

import argparse
import json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a local folder written by save_pretrained")
    parser.add_argument("--alpha", type=float, default=1 / 3, help="the target: nash_policy(alpha), alpha in [0, 1/3]")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--every", type=int, default=25, help="print every N steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="kuhn_fit.json")
    args = parser.parse_args(argv)

    import torch
    from arena.agents.hf import load_model
    from arena.envs.spiral.kuhn_poker import (
        INFO_STATES,
        exploitability,
        info_state_request,
        nash_policy,
    )

    from arena.errors import ArenaError
    from arena.evaluate import action_logprobs

    if args.steps < 0 or args.every < 1:
        parser.error("--steps must be >= 0 and --every >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        target = nash_policy(args.alpha)
        model, tokenizer = load_model(args.model, device="cpu")
    except ArenaError as exc:
        parser.error(str(exc))
    model.train()
    requests = {s: info_state_request(s) for s in INFO_STATES}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    rows = []
    for step in range(args.steps + 1):
        loss = torch.zeros(())
        table = {}
        for state, request in requests.items():
            logps = action_logprobs(model, tokenizer, request)
            log_z = torch.logsumexp(torch.stack(list(logps.values())), dim=0)
            active = "[bet]" if "[bet]" in logps else "[call]"
            passive = next(a for a in logps if a != active)
            q = target[state]
            loss = loss - (q * (logps[active] - log_z) + (1 - q) * (logps[passive] - log_z)) / len(requests)
            table[state] = float((logps[active] - log_z).detach().exp())
        if step % args.every == 0 or step == args.steps:
            rows.append({"step": step, "loss": float(loss.detach()), "exploitability": exploitability(table), "table": table})
            print(f"step {step:4d}  loss {rows[-1]['loss']:.4f}  exploitability {rows[-1]['exploitability']:.4f}  "
                  + " ".join(f"{s}={p:.2f}" for s, p in table.items()), flush=True)
        if step < args.steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with open(args.out, "w") as f:
        json.dump({"model": args.model, "alpha": args.alpha, "learning_rate": args.learning_rate, "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
