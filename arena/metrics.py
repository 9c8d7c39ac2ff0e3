"""Per-role summaries of played episodes: win/draw/loss and invalid-move rates."""

from __future__ import annotations

import functools
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from arena.episode import Episode

_PLURAL = {"win": "wins", "draw": "draws", "loss": "losses"}
#: The rates of a role's (or agent's) summary, in table order.
RATES: tuple[str, ...] = ("win_rate", "draw_rate", "loss_rate", "invalid_move_rate")
#: The rates and the mean return: what evaluation and the training metrics report per role.
OUTCOMES: tuple[str, ...] = (*RATES, "mean_return")
#: The fixed opponents `arena eval` and `--eval-every` play the model against (both seats).
OPPONENTS: tuple[str, ...] = ("random", "heuristic")


def result(episode: Episode, role: str) -> str:
    """"win", "draw" or "loss" of `role`: by the outcome's `winner` when the env names one
    (None is a draw, as in the SPIRAL games), else by the sign of the role's return (for
    envs without winners, e.g. one role scored against the rules)."""
    outcome = episode.outcome or {}
    if "winner" in outcome:
        winner = outcome["winner"]
        return "draw" if winner is None else "win" if winner == role else "loss"
    reward = episode.rewards.get(role, 0.0)
    if not math.isfinite(reward) or reward == 0:
        return "draw"
    return "win" if reward > 0 else "loss"


def unscored_roles(episode: Episode) -> set[str]:
    """The roles whose return in `episode` is no score, which the summaries leave out (as
    the loss and the advantage estimators do): those every turn of which was masked as infra
    (the sandbox failed, not the model), and in an env that credits each turn (AZR, SPICE)
    those that took no turn (the solver after an invalid proposal: a 0 and a draw before).
    A game's seat that never moved keeps its result (it won by the other's invalid move)."""
    infra: set[str] = set()
    scored: set[str] = set()
    for turn in episode.turns:
        (infra if turn.info.get("infra") else scored).add(turn.role)
    out = infra - scored
    if _credits_each_turn(episode.env_id):
        out |= set(episode.rewards) - infra - scored
    return out


@functools.cache
def _credits_each_turn(env_id: str) -> bool:
    from arena.registry import spec

    try:
        return bool(getattr(spec(env_id).load(), "credits_each_turn", False))
    except Exception:  # noqa: BLE001  (an env id not registered in this process: its roles as recorded)
        return False


def summarize(episodes: Iterable[Episode]) -> dict[str, dict[str, Any]]:
    """Per role: episodes, agent(s), win/draw/loss rates, invalid-move rate, mean return,
    mean completion length (characters).

    A role's result is `result(episode, role)`: by the outcome's `winner` when the env
    names one (None: a draw), else by the sign of the role's return. Its invalid-move rate
    is the fraction of its turns the env refused. A role's episode where it was not
    scored is left out (`unscored_roles`), as are infra turns.
    """
    acc: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "episodes": 0, "wins": 0, "draws": 0, "losses": 0, "turns": 0, "invalid": 0,
        "return": 0.0, "chars": 0, "agents": set()})
    for ep in episodes:
        unscored = unscored_roles(ep)
        for role in ep.rewards:
            a = acc[role]
            a["agents"].add(ep.agents.get(role, "?"))
            if role in unscored:  # the role is there, with no episode counted
                continue
            a["episodes"] += 1
            a["return"] += ep.rewards[role]
            a[_PLURAL[result(ep, role)]] += 1
        for turn in ep.turns:
            if turn.info.get("infra"):
                continue
            a = acc[turn.role]
            a["turns"] += 1
            a["chars"] += len(turn.completion)
            if turn.legal is False:
                a["invalid"] += 1
    out = {}
    for role, a in sorted(acc.items()):
        n = max(a["episodes"], 1)
        out[role] = {
            "agents": ",".join(sorted(a["agents"])),
            "episodes": a["episodes"],
            "win_rate": a["wins"] / n,
            "draw_rate": a["draws"] / n,
            "loss_rate": a["losses"] / n,
            "invalid_move_rate": a["invalid"] / max(a["turns"], 1),
            "mean_return": a["return"] / n,
            "mean_completion_chars": a["chars"] / max(a["turns"], 1),
        }
    return out


def summarize_agents(episodes: Iterable[Episode]) -> dict[str, dict[str, Any]]:
    """Per agent name, over every seat it played: episodes, win/draw/loss rates, invalid-move
    rate (over its turns) and mean return. Self-play episodes (one agent in every seat)
    count once per seat; infra as in `summarize`."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: {"episodes": 0, "wins": 0, "draws": 0, "losses": 0,
                                                             "turns": 0, "invalid": 0, "return": 0.0})
    for ep in episodes:
        unscored = unscored_roles(ep)
        for role, reward in ep.rewards.items():
            a = acc[ep.agents.get(role, "?")]
            if role in unscored:
                continue
            a["episodes"] += 1
            a["return"] += reward
            a[_PLURAL[result(ep, role)]] += 1
        for turn in ep.turns:
            if turn.info.get("infra"):
                continue
            a = acc[turn.agent]
            a["turns"] += 1
            a["invalid"] += turn.legal is False
    return {
        name: {
            "episodes": int(a["episodes"]),
            "win_rate": a["wins"] / max(a["episodes"], 1),
            "draw_rate": a["draws"] / max(a["episodes"], 1),
            "loss_rate": a["losses"] / max(a["episodes"], 1),
            "invalid_move_rate": a["invalid"] / max(a["turns"], 1),
            "mean_return": a["return"] / max(a["episodes"], 1),
        }
        for name, a in sorted(acc.items())
    }


def mean_return_se(episodes: Iterable[Episode], agent: str, role: str | None = None) -> float:
    """The standard error of `agent`'s mean return (in `role` only, when given), with the
    episodes that share a seed (one deal played from each seat, `play(..., duplicate=True)`)
    as one sample: `g_k` is the agent's mean return over the episodes of seed k, and the
    error `sd(g) / sqrt(K)` over the K seeds (nan below two). With a seed per episode it is
    the usual `sd / sqrt(n)`. Infra as in `summarize`."""
    by_seed: dict[Any, list[float]] = defaultdict(list)
    for ep in episodes:
        unscored = unscored_roles(ep)
        for r, reward in ep.rewards.items():
            if ep.agents.get(r) == agent and r not in unscored and role in (None, r):
                by_seed[ep.seed].append(reward)
    groups = [sum(v) / len(v) for v in by_seed.values()]
    return statistics.stdev(groups) / math.sqrt(len(groups)) if len(groups) > 1 else math.nan


def role_metrics(episodes: Sequence[Episode], samples: Sequence[Any], *, model: str | None = None,
                 baselines: Mapping[str, float] | None = None) -> dict[str, float]:
    """A training batch's metrics per env and role, named `<env>/<role>/<metric>` (`<env>`
    without its namespace, e.g. `KuhnPoker-v0/player_0/win_rate`):

    - each of `OUTCOMES` over the episodes (`summarize`); with `model` given (a run against
      fixed opponents) only over the episodes where `model` plays the role, and none for a
      role it never played;
    - over the role's samples (`arena.samples.Sample`): `advantage_mean` (samples without
      an advantage, such as infra failures, left out), `completion_tokens` (mean per
      turn), `truncated_rate` (the share cut at the token limit: TRL's `clipped_ratio`),
      and `rae_baseline` when `baselines` has the role's key (`rae_baseline/<task type>`
      for each task type of a role whose samples have one, AZR's).
    """
    out: dict[str, float] = {}
    by_env: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        by_env[ep.env_id].append(ep)
    for env_id, eps in by_env.items():
        short = env_id.split("/")[-1]
        for role, summary in summarize(eps).items():
            if model is not None:
                mine = [e for e in eps if e.agents.get(role) == model]
                if not mine:
                    continue
                summary = summarize(mine)[role]
            if not summary["episodes"]:  # scored in none (`unscored_roles`): no outcome to log
                continue
            for name in OUTCOMES:
                out[f"{short}/{role}/{name}"] = summary[name]
        for role in {s.role for s in samples if s.env_id == env_id}:
            mine = [s for s in samples if s.env_id == env_id and s.role == role]
            adv = [s.advantage for s in mine if s.advantage is not None]
            out[f"{short}/{role}/advantage_mean"] = sum(adv) / max(len(adv), 1)
            out[f"{short}/{role}/completion_tokens"] = sum(len(s.completion_ids) for s in mine) / len(mine)
            out[f"{short}/{role}/truncated_rate"] = sum(s.truncated for s in mine) / len(mine)
            for key in sorted({s.key for s in mine}) if baselines is not None else ():
                name = "rae_baseline" if len(key) == 2 else f"rae_baseline/{key[2]}"  # (env, role[, task type])
                if "|".join(key) in baselines:
                    out[f"{short}/{role}/{name}"] = baselines["|".join(key)]
    return out
