"""`arena.optim.OptimisticAdamW` against hand-computed steps and on the game it is for."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="the optimizer is a torch optimizer: pip install torch")

from arena.optim import OptimisticAdamW


def test_two_steps_by_hand():
    """beta1 0.5, beta2 0.9, eps 0, lr 0.1, gradients 0.5 then -1 on a parameter at 1.0.

    Step 1: m = 0.25, m_hat = 0.5; v = 0.025, v_hat = 0.25; u_1 = 0.5 / 0.5 = 1;
    theta = 1 - 0.1 * (2 * 1 - 1) = 0.9 (u_0 := u_1: a plain Adam step).
    Step 2: m = 0.125 - 0.5 = -0.375, m_hat = -0.375 / 0.75 = -0.5; v = 0.0225 + 0.1 = 0.1225,
    v_hat = 0.1225 / 0.19; u_2 = -0.5 / sqrt(0.1225 / 0.19);
    theta = 0.9 - 0.1 * (2 u_2 - 1).
    """
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = OptimisticAdamW([p], lr=0.1, betas=(0.5, 0.9), eps=0.0)
    p.grad = torch.tensor([0.5], dtype=torch.float64)
    opt.step()
    assert p.item() == pytest.approx(0.9, abs=1e-12)
    p.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()
    u2 = -0.5 / math.sqrt(0.1225 / 0.19)
    assert p.item() == pytest.approx(0.9 - 0.1 * (2 * u2 - 1), abs=1e-12)


def test_first_step_is_adamw_with_decoupled_weight_decay():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5))
    b = torch.nn.Parameter(a.detach().clone())
    grad = torch.randn(5)
    ours = OptimisticAdamW([a], lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    a.grad, b.grad = grad.clone(), grad.clone()
    ours.step()
    ref.step()
    torch.testing.assert_close(a, b)


def _bilinear(optimizer_cls, steps: int = 2000) -> float:
    """min_x max_y x*y from (1, 1), both players stepping at once; the distance from the
    equilibrium (0, 0) at the end."""
    x = torch.nn.Parameter(torch.tensor(1.0))
    y = torch.nn.Parameter(torch.tensor(1.0))
    ox = optimizer_cls([x], lr=0.05, betas=(0.0, 0.999))
    oy = optimizer_cls([y], lr=0.05, betas=(0.0, 0.999))
    for _ in range(steps):
        x.grad, y.grad = y.detach().clone(), -x.detach().clone()  # x descends x*y, y ascends it
        ox.step()
        oy.step()
    return math.hypot(x.item(), y.item())


def test_converges_on_the_bilinear_game_where_adamw_circles_out():
    assert _bilinear(torch.optim.AdamW) > 1.0  # gradient play spirals away from (0, 0)
    assert _bilinear(OptimisticAdamW) < 1e-6


def test_bad_arguments_are_value_errors():
    p = torch.nn.Parameter(torch.zeros(1))
    for kwargs in ({"lr": -1.0}, {"betas": (1.0, 0.9)}, {"weight_decay": -0.1}):
        with pytest.raises(ValueError):
            OptimisticAdamW([p], **kwargs)
