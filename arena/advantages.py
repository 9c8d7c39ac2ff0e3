"""Role-conditioned advantage estimators: pure functions over rewards and keys.

Every model turn of a training batch is a *sample* with a reward (its role's episode
return, SPIRAL's gamma = 1), a *key* naming the baseline it is compared with, and for
GRPO a *group* (the samples that answered the same prompt). Keys are tuples:
`(env_id, role)` for games, `(env_id, role, task_type)` for Absolute Zero.

- `rae`: SPIRAL's role-conditioned advantage estimation, an EMA baseline per key.
- `grpo`: group mean (and optionally std) over the samples of one prompt (a sample alone
  with its prompt: over the batch's lone samples of its role).
- `trr_pp`: AZR's task-relative REINFORCE++, batch normalisation per key.

A sample whose reward is `None` (its reward failed for infrastructure reasons, e.g. the
sandbox broke) is *masked*: it gets no advantage (`None`), takes no part in any mean,
standard deviation or baseline update, and the trainer leaves it out of the loss. It is
never scored as 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

#: Which estimator each env family uses unless the config says otherwise.
DEFAULT_ESTIMATOR: dict[str, str] = {"spiral": "rae", "azr": "trr++", "spice": "grpo"}
ESTIMATORS: tuple[str, ...] = ("rae", "grpo", "trr++")


def default_estimator(env_id: str) -> str:
    """The estimator of an env id's family (`spiral/...` -> `rae`); `grpo` for others."""
    return DEFAULT_ESTIMATOR.get(env_id.split("/", 1)[0], "grpo")


#: What `grpo` divides by unless the config says otherwise: SPICE trains with Dr. GRPO
#: (A = R - mean, no std), others with GRPO's group std.
DEFAULT_GRPO_SCALE: dict[str, str] = {"spice": "none"}


def default_grpo_scale(env_id: str) -> str:
    """The `grpo` scale of an env id's family (`spice/...` -> `none`); `group` for others."""
    return DEFAULT_GRPO_SCALE.get(env_id.split("/", 1)[0], "group")


def rae(
    rewards: Sequence[float | None],
    keys: Sequence[Hashable],
    baselines: dict[Hashable, float],
    alpha: float = 0.95,
) -> list[float | None]:
    """Role-conditioned advantage estimation (SPIRAL), in sample order.

    For each sample, with b the baseline of its key (0 when new)::

        A = R - b                      # the baseline is read before it is updated
        b <- alpha * b + (1 - alpha) * R

    `baselines` is updated in place (it is part of the checkpoint). Pass one sample per
    (episode, role), in episode order, as SPIRAL does; turns of the same role in one
    episode share that advantage.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out: list[float | None] = []
    for reward, key in zip(rewards, keys, strict=True):
        if reward is None:
            out.append(None)
            continue
        b = baselines.get(key, 0.0)
        out.append(float(reward) - b)
        baselines[key] = alpha * b + (1.0 - alpha) * float(reward)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and unbiased std; exactly (v, 0) for equal values: the summed mean of six -0.1s is
    not -0.1, and those samples got advantages of -1e-17, which no zero-advantage filter saw."""
    if all(v == values[0] for v in values):
        return values[0], 0.0
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


#: How `grpo` divides (TRL's `scale_rewards` values).
GRPO_SCALES = ("group", "batch", "none")


def grpo(
    rewards: Sequence[float | None],
    groups: Sequence[Hashable],
    scale: bool | str = "group",
    eps: float = 1e-4,
    batches: Sequence[Hashable] | None = None,
) -> list[float | None]:
    """Group-relative advantages (GRPO): A = (R - mean_g) / (std + eps), per group g.

    `scale` (TRL's `scale_rewards`) picks the std: "group" (True) std_g, the group's;
    "batch" std_b over the batch b the sample belongs to (`batches`, default one batch:
    Lite PPO's group mean with batch std, which stays finite for a group of equal rewards
    inside a varied batch); "none" (False, Dr. GRPO) no division, A = R - mean_g. Means and
    (unbiased, as TRL) stds are over the unmasked samples; a group whose rewards are all
    equal gives 0 to each sample.

    A sample alone in its group (no other unmasked sample answered its prompt) has no group
    to be compared with, and would get 0: it is compared instead with the other lone samples
    of its batch, so g is "the lone samples of b": a per-role baseline for a role whose
    prompts rarely repeat, where per-prompt groups would leave every sample at 0. (Roles
    whose prompts repeat only by chance, SPICE's challenger and verifier, are given one
    group per role by the caller: `ArenaEnv.grpo_pooled_roles`.)
    """
    if isinstance(scale, bool):
        scale = "group" if scale else "none"
    if scale not in GRPO_SCALES:
        raise ValueError(f"unknown grpo scale {scale!r}; one of {', '.join(GRPO_SCALES)}")
    batches = [None] * len(rewards) if batches is None else batches
    sizes: Counter = Counter(g for r, g in zip(rewards, groups, strict=True) if r is not None)
    groups = [("lone samples of", b) if sizes[g] == 1 else ("group", g) for g, b in zip(groups, batches, strict=True)]
    members: dict[Hashable, list[float]] = defaultdict(list)
    batch_members: dict[Hashable, list[float]] = defaultdict(list)
    for reward, group, batch in zip(rewards, groups, batches):
        if reward is not None:
            members[group].append(float(reward))
            batch_members[batch].append(float(reward))
    stats = {g: _mean_std(v) for g, v in members.items()}
    batch_std = {b: _mean_std(v)[1] for b, v in batch_members.items()}
    out: list[float | None] = []
    for reward, group, batch in zip(rewards, groups, batches):
        if reward is None:
            out.append(None)
            continue
        mean, std = stats[group]
        if scale == "none":
            out.append(float(reward) - mean)
        else:
            out.append((float(reward) - mean) / ((std if scale == "group" else batch_std[batch]) + eps))
    return out


def trr_pp(rewards: Sequence[float | None], keys: Sequence[Hashable], eps: float = 1e-8) -> list[float | None]:
    """Task-relative REINFORCE++ (AZR): A = (R - mean_k) / std_k, per key k of the batch.

    AZR's keys are (task type, role): six baselines. Like veRL's `masked_whiten`, the std
    is the unbiased one; a key whose rewards are all equal gives 0. Unlike it, each sample
    counts once, as the paper's formula reads: veRL whitens over response tokens, so AZR's
    code weighs a sample's reward by its length in mean_k and std_k (a long answer pulls
    the baseline towards its reward).
    """
    members: dict[Hashable, list[float]] = defaultdict(list)
    for reward, key in zip(rewards, keys, strict=True):
        if reward is not None:
            members[key].append(float(reward))
    stats = {k: _mean_std(v) for k, v in members.items()}
    out: list[float | None] = []
    for reward, key in zip(rewards, keys):
        if reward is None:
            out.append(None)
            continue
        mean, std = stats[key]
        out.append((float(reward) - mean) / (std + eps) if std > 0 else 0.0)
    return out
