"""Absolute Zero (AZR) environments: `azr/Deduction-v0`, `azr/Abduction-v0`,
`azr/Induction-v0`, `azr/Mixed-v0`. The manual is `arena.envs.absolute_zero.env`'s docstring.

Public helpers: `validate_proposal` (a proposal's validity, reason and gold outputs), the
checks and reward formulas (`check_deduction`, `check_abduction`, `check_induction`,
`solver_reward`, `learnability`, `verifier_reward`), the task buffers (`TaskStore`,
`Task`), and `summarize_azr` (solve rates, learnability, verifier accuracy, rejections).
"""

from arena.envs.absolute_zero.buffers import Task, TaskStore, seed_tasks, shared_store
from arena.envs.absolute_zero.env import AbsoluteZero
from arena.envs.absolute_zero.summary import summarize_azr
from arena.envs.absolute_zero.tasks import (
    TASK_TYPES,
    Check,
    Validation,
    check_abduction,
    check_deduction,
    check_induction,
    learnability,
    parse_input,
    parse_verdict,
    sandbox_pool,
    solver_reward,
    validate_proposal,
    verifier_reward,
)

__all__ = [
    "TASK_TYPES", "AbsoluteZero", "Check", "Task", "TaskStore", "Validation", "check_abduction", "check_deduction",
    "check_induction", "learnability", "parse_input", "parse_verdict", "sandbox_pool", "seed_tasks", "shared_store",
    "solver_reward", "summarize_azr", "validate_proposal", "verifier_reward",
]
