"""Optimistic AdamW: Adam with a look-ahead step against the cycling of two-player games.

In a zero-sum game, gradient play (each seat following its own gradient, as self-play's
policy gradient does for both seats of one model) rotates around the equilibrium instead
of converging to it: on the bilinear game min_x max_y x*y, simultaneous gradient steps
spiral outwards. Optimism (Daskalakis, Ilyas, Syrgkanis, Zeng 2018, "Training GANs with
Optimism") corrects each step with the change since the previous one, an approximation of
the extragradient's look-ahead, and converges in the last iterate on such games.

`OptimisticAdamW` is their Optimistic Adam with AdamW's decoupled weight decay:

    m_t = beta1 m_{t-1} + (1 - beta1) g_t,    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    u_t = (m_t / (1 - beta1^t)) / (sqrt(v_t / (1 - beta2^t)) + eps)
    theta_{t+1} = theta_t (1 - lr_t wd) - lr_t (2 u_t - u_{t-1})

with u_0 := u_1 (the first step is a plain AdamW step). `arena train --optimizer
optimistic-adamw` trains with it; the default stays AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class OptimisticAdamW(torch.optim.Optimizer):
    """Optimistic Adam (module docstring) with decoupled weight decay.

    Args:
        params: parameters or parameter groups, as for `torch.optim.AdamW`.
        lr, betas, eps, weight_decay: AdamW's meanings and defaults.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps} and {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("OptimisticAdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["prev_update"] = None
                state["step"] += 1
                t = int(state["step"].item())
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2 ** t)).sqrt_().add_(eps)
                update = (exp_avg / (1 - beta1 ** t)).div_(denom)
                prev = state.get("prev_update")  # absent in the state of a run resumed from AdamW's
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(update, alpha=-2 * lr)
                p.add_(update if prev is None else prev, alpha=lr)
                state["prev_update"] = update
        return loss
