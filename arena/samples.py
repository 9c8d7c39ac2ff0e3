"""From played episodes to training samples with role-conditioned advantages.

A *sample* is one model turn: its prompt and completion tokens, the log-probs it was
sampled with, and its reward (the role's episode return, gamma = 1, as SPIRAL). Each env
picks an estimator (`arena.advantages`); the key of a sample's baseline is
`(env_id, role)`, plus the task type where the turn names one (Absolute Zero), so every
role of every env is compared only with itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arena.advantages import default_estimator, default_grpo_scale, grpo, rae, trr_pp
from arena.episode import Episode


@dataclass
class Sample:
    """One model turn, ready for the loss."""

    env_id: str
    role: str
    episode: int  # position of its episode in the batch
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float] | None
    reward: float | None  # None: infra failure, masked
    task_type: str | None = None
    allowed: list[list[int]] | None = None  # per completion token, the legal next tokens (constrained decoding)
    truncated: bool = False  # cut at max_new_tokens before EOS (the turn's info["finish_reason"] == "length")
    advantage: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.env_id, self.role) if self.task_type is None else (self.env_id, self.role, self.task_type)


def collect(episodes: Sequence[Episode], trainable: str) -> list[Sample]:
    """The turns played by the agent named `trainable` that carry tokens, in episode order.

    A turn whose `info` says `infra` (its reward failed for infrastructure reasons) gets
    reward None and is masked out of every statistic and of the loss.
    """
    out = []
    for i, ep in enumerate(episodes):
        for turn in ep.turns:
            if turn.agent != trainable or not turn.token_ids or turn.prompt_ids is None:
                continue
            infra = bool(turn.info.get("infra"))
            out.append(Sample(
                env_id=ep.env_id, role=turn.role, episode=i, prompt_ids=list(turn.prompt_ids),
                completion_ids=list(turn.token_ids), logprobs=turn.logprobs,
                reward=None if infra or turn.reward is None else float(turn.reward),
                task_type=turn.info.get("task_type"), allowed=turn.info.get("allowed_token_ids"),
                truncated=turn.info.get("finish_reason") == "length",
            ))
    return out


def assign_advantages(samples: list[Sample], estimators: dict[str, str], baselines: dict[str, float],
                      rae_alpha: float = 0.95, grpo_scale: bool | str = "auto") -> None:
    """Set `sample.advantage` for every sample, env by env, with that env's estimator.

    - `rae`: one baseline update per (episode, role), in episode order (SPIRAL applies the
      EMA once per trajectory); every turn of that role in the episode gets its advantage.
      Turns with rewards of their own (per-turn credit) are updated one by one (`_rae_units`).
      `baselines` (keyed by `"env_id|role"`, JSON-friendly) is updated in place.
    - `grpo`: groups are samples of the same env, role and prompt tokens (a sample alone
      with its prompt joins the batch's other lone samples of its role), or of the same env
      and role for the env's `grpo_pooled_roles` (prompts that repeat only by chance);
      `grpo_scale`
      divides by the group's std ("group"), by the std of the step's samples of the same
      env and role ("batch"), or not ("none": Dr. GRPO); "auto": the env family's
      (`default_grpo_scale`: none for SPICE, as its paper, group elsewhere).
    - `trr++`: per (env, role, task type) over the batch.
    """
    by_env: dict[str, list[Sample]] = {}
    for s in samples:
        by_env.setdefault(s.env_id, []).append(s)
    for env_id, group in by_env.items():
        name = estimators.get(env_id) or default_estimator(env_id)
        if name == "rae":
            units = _rae_units(group)
            adv = rae([u[0].reward for u in units], ["|".join(u[0].key) for u in units], baselines, alpha=rae_alpha)
            for unit, a in zip(units, adv):
                for s in unit:
                    s.advantage = a if s.reward is not None else None
        elif name == "grpo":
            scale = default_grpo_scale(env_id) if grpo_scale == "auto" else grpo_scale
            from arena.registry import spec

            pooled = spec(env_id).load().grpo_pooled_roles
            adv = grpo([s.reward for s in group],
                       [s.key if s.role in pooled else (s.key, tuple(s.prompt_ids)) for s in group], scale=scale,
                       batches=[s.key for s in group])
            for s, a in zip(group, adv):
                s.advantage = a
        elif name == "trr++":
            adv = trr_pp([s.reward for s in group], [s.key for s in group])
            for s, a in zip(group, adv):
                s.advantage = a
        else:
            raise ValueError(f"unknown estimator {name!r}")


def _rae_units(samples: list[Sample]) -> list[list[Sample]]:
    """The samples that share one RAE baseline update, in episode order: a role's turns in
    one episode, which share its return (a game's seat: SPIRAL updates once per
    trajectory); each turn alone in an env that credits each turn its own reward
    (`ArenaEnv.credits_each_turn`: AZR's and SPICE's n solver attempts, one of them masked as
    infra without the others), whether or not the attempts' rewards happen to be equal."""
    from arena.registry import spec

    per_episode: dict[tuple[int, tuple], list[Sample]] = {}
    for s in samples:
        per_episode.setdefault((s.episode, s.key), []).append(s)
    units: list[list[Sample]] = []
    each: dict[str, bool] = {}
    for turns in per_episode.values():
        env_id = turns[0].env_id
        if env_id not in each:
            each[env_id] = bool(spec(env_id).load().credits_each_turn)
        if each[env_id]:
            units.extend([s] for s in turns)
        else:
            units.append(turns)
    return units


#: Why a sample leaves the loss (`keep_for_loss`), in the order the reasons are checked.
DROP_REASONS: tuple[str, ...] = ("infra", "truncated", "zero_advantage")


def keep_for_loss(samples: list[Sample], filter_zero_advantage: bool,
                  mask_truncated: bool = False) -> tuple[list[Sample], Counter]:
    """The samples that enter the loss, and why the others were left out (counted, each
    sample under the first reason that applies, `DROP_REASONS`).

    With `mask_truncated` (TRL's `mask_truncated_completions`, DAPO's overlong filtering) a
    completion cut at the token limit leaves the loss; its return still counted in the
    advantages' baselines and groups, since the episode was played with it.
    """
    kept, dropped = [], Counter()
    for s in samples:
        if s.advantage is None:
            dropped["infra"] += 1
        elif mask_truncated and s.truncated:
            dropped["truncated"] += 1
        elif filter_zero_advantage and s.advantage == 0.0:
            dropped["zero_advantage"] += 1
        else:
            kept.append(s)
    return kept, dropped
