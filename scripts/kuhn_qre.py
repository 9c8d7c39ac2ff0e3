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
import itertools
import json
import math

from arena.envs.spiral.kuhn_poker import (
    CARDS,
    INFO_STATES,
    TERMINAL_HISTORIES,
    exploitability,
    hand_payoff,
    info_state,
)


def action_gaps(policy: dict[str, float]) -> dict[str, float]:
    """Q(I, bet or call) - Q(I, check or fold) for the acting seat, per info state I."""
    num = dict.fromkeys(policy, 0.0)
    den = dict.fromkeys(policy, 0.0)
    for deal in itertools.permutations(CARDS, 2):
        def value(h: str, deal: tuple[str, ...] = deal) -> float:
            """Chips the first mover wins from history h on."""
            if h in TERMINAL_HISTORIES:
                return hand_payoff(h, *deal)
            p = policy[info_state(deal[len(h) % 2], h)]
            return p * value(h + "b") + (1 - p) * value(h + "p")

        def walk(h: str, reach0: float, reach1: float, deal: tuple[str, ...] = deal) -> None:
            if h in TERMINAL_HISTORIES:
                return
            actor = len(h) % 2
            state = info_state(deal[actor], h)
            weight = (reach0, reach1)[1 - actor] / 6  # chance times the opponent's reach
            num[state] += weight * (1, -1)[actor] * (value(h + "b") - value(h + "p"))
            den[state] += weight
            p = policy[state]
            if actor == 0:
                walk(h + "b", reach0 * p, reach1)
                walk(h + "p", reach0 * (1 - p), reach1)
            else:
                walk(h + "b", reach0, reach1 * p)
                walk(h + "p", reach0, reach1 * (1 - p))

        walk("", 1.0, 1.0)
    return {s: num[s] / den[s] for s in policy}


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
