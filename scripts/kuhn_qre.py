"""Kuhn Poker's entropy-regularised equilibrium (the logit QRE) per temperature, and its
exploitability: what a self-play run with entropy bonus `tau` (`--entropy-coef`) settles
towards when it settles, and so how far the bonus has to come down for a target
exploitability.

Under the legal-action constraint the trainer's objective per decision is
E[A] + tau * H(pi), so its fixed point is the agent QRE: at every info state I,
pi(bet | I) = sigmoid((Q(I, bet) - Q(I, pass)) / tau), with Q the expected return of the
acting seat given I (chance and the opponent's reach weighted, the seat's own reach
cancels). Found by damped fixed-point iteration (pi <- (1 - d) pi + d * softmax_br(pi))
from the uniform policy; exploitability is exact (`arena.envs.spiral.kuhn_poker`). Below
tau = 0.05 the iteration converges slowly: raise `--iterations`.

    python scripts/kuhn_qre.py [--tau 0.5,0.2,0.1,0.05] [--iterations 3000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math

from arena.envs.spiral.kuhn_poker import INFO_STATES, action_gaps, exploitability


def qre(tau: float, iterations: int = 3000, damping: float = 0.03) -> dict[str, float]:
    """The logit QRE at temperature tau: pi(I) = sigmoid(gap(I) / tau), by damped iteration."""
    policy = dict.fromkeys(INFO_STATES, 0.5)
    for _ in range(iterations):
        gaps = action_gaps(policy)
        target = {s: 1 / (1 + math.exp(-max(-50.0, min(50.0, g / tau)))) for s, g in gaps.items()}
        policy = {s: (1 - damping) * policy[s] + damping * target[s] for s in policy}
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tau", default="1.0,0.5,0.2,0.1,0.05", help="comma-separated temperatures")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    rows = []
    for tau in (float(t) for t in args.tau.split(",")):
        policy = qre(tau, args.iterations)
        rows.append({"tau": tau, "exploitability": exploitability(policy), "policy": policy})
    print(f"{'tau':>6}  {'exploitability':>14}  " + " ".join(f"{s:>5}" for s in INFO_STATES))
    for r in rows:
        print(f"{r['tau']:>6}  {r['exploitability']:>14.4f}  " + " ".join(f"{r['policy'][s]:>5.2f}" for s in INFO_STATES))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
