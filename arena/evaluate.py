"""Evaluation of a trained policy: win/draw/loss against fixed opponents, and for Kuhn
Poker the exact exploitability of the model's policy.

Exploitability is exact, not sampled, when the policy samples under the legal-action
constraint from its whole distribution (temperature > 0, no top-p, top-k or min-p):
P(bet or call | info state) is the model's probability of that action's tokens under the
constrained distribution (the one it samples from), computed by one teacher-forced forward
pass per info state; `exploitability` then walks the game tree. A greedy policy
(temperature 0) is tabulated from its one answer per info state, any other by sampling
(`kuhn_policy_table`): scoring those by the temperature-1 distribution reported 0.41 for a
greedy policy whose play is exploitable by 0.33.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arena.episode import Episode
from arena.errors import ArenaError
from arena.metrics import OPPONENTS, OUTCOMES, mean_return_se, summarize_agents
from arena.policy import Policy, Request
from arena.protocol import ArenaEnv
from arena.report import read_jsonl
from arena.rollout import play


def _eval_kwargs(env_id: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """SPIRAL's evaluation scoring (invalid move: -1/+1) for its games."""
    from arena.game import ZeroSumGame
    from arena.registry import spec

    out = dict(kwargs or {})
    if issubclass(spec(env_id).load(), ZeroSumGame):
        out.setdefault("mode", "eval")
    return out


def has_two_seats(env_id: str) -> bool:
    """Whether `arena eval` plays env `env_id` against opponents, from each of its two seats
    (`ArenaEnv.two_seat_game`), rather than the model in every role (`play_alone`)."""
    from arena.registry import spec

    cls = spec(env_id).load()
    return bool(cls.two_seat_game) and len(cls.roles) == 2


def check_episodes(env_ids: list[str], episodes: int, flag: str = "-n") -> None:
    """An even number of episodes per opponent where an env has two seats: each deal is
    played from both (an odd count played its last deal from one seat only)."""
    if any(has_two_seats(env_id) for env_id in env_ids):
        check_deals(episodes, 2, flag)


def check_deals(episodes: int, seats: int, flag: str = "-n") -> None:
    """A whole number of deals, each played from all `seats` seats (`arena eval`, `arena play
    --duplicate`): otherwise the last deal is played from some seats only."""
    if episodes % seats:
        lower = episodes - episodes % seats
        nearest = f"{flag} {lower} or {flag} {lower + seats}" if lower else f"{flag} {lower + seats}"
        raise ArenaError(f"{flag} {episodes}: each deal is played from all {seats} seats; give a multiple of {seats} "
                         f"(e.g. {nearest})")


def play_against(policy: Policy, env_id: str, opponent: str, episodes: int, seed: int = 0,
                 env_kwargs: dict[str, Any] | None = None,
                 on_episode: Callable[[Episode], None] | None = None) -> dict[str, float]:
    """The policy against a scripted opponent, both seats equally often: its win/draw/loss
    and invalid-move rates and mean return over all its seats, and the mean return's
    standard error over the deals (`mean_return_se`; None below two deals).

    Each deal is played from both seats (`play(..., duplicate=True)`): episodes 2k and 2k+1
    share seed `seed + k`, so the cards cancel out of the comparison. With independent
    deals, 64 Kuhn Poker episodes gave the Nash policy against `random` a mean return of
    -0.20 (the expectation is +0.17, 4096 episodes) on one seed."""
    from arena.agents import make_agent

    check_episodes([env_id], episodes)
    opp = make_agent(opponent, seed=seed + 1)
    if opp.name == policy.name:
        raise ArenaError(f"the evaluated policy and the opponent are both named {policy.name!r}")
    eps = play(env_id, [policy, opp], episodes, seed=seed, env_kwargs=_eval_kwargs(env_id, env_kwargs),
               swap_seats=True, duplicate=True, concurrency=max(1, episodes), on_episode=on_episode)
    se = mean_return_se(eps, policy.name)
    return {**summarize_agents(eps)[policy.name], "mean_return_se": se if math.isfinite(se) else None}  # None: strict JSON


def action_logprobs(model, tokenizer, request: Request, temperature: float = 1.0,
                    prompt: list[int] | None = None):
    """log P(action) for each legal action under the constrained distribution (at each
    position only the tokens that continue some legal action, or EOS after a complete one),
    as 0-d tensors that carry gradients when enabled (`scripts/kuhn_fit.py` trains on them).
    `prompt`: the request's prompt ids as the policy encodes them (default: the chat template
    with no further arguments)."""
    import torch

    actions = list(request.legal_actions or [])
    eos = tokenizer.eos_token_id
    seqs = {a: list(tokenizer(a, add_special_tokens=False).input_ids) + [eos] for a in actions}
    if prompt is None:
        prompt = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=True)
        if isinstance(prompt, dict) or hasattr(prompt, "input_ids"):
            prompt = prompt["input_ids"]
    prompt = list(prompt)
    width = max(len(s) for s in seqs.values())
    rows = [prompt + s + [eos] * (width - len(s)) for s in seqs.values()]
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor(rows, device=device)).logits.float() / max(temperature, 1e-6)
    out = {}
    for row, (action, seq) in enumerate(seqs.items()):
        total = logits.new_zeros(())
        for t, tok in enumerate(seq):
            prefix = seq[:t]
            allowed = sorted({s[t] for s in seqs.values() if len(s) > t and s[:t] == prefix})
            step = logits[row, len(prompt) + t - 1]
            total = total + step[tok] - torch.logsumexp(step[allowed], dim=0)
        out[action] = total
    return out


def kuhn_exploitability(policy: Any, env_id: str = "spiral/KuhnPoker-v0", samples: int = 256) -> tuple[float, dict[str, float]]:
    """Exploitability of a policy in one-hand Kuhn Poker, and its strategy table.

    Exact for an `HFPolicy` sampling its whole distribution under the legal-action
    constraint (see the module docstring); a greedy policy by its answer to each info
    state; otherwise by sampling `samples` answers per info state.
    """
    from arena.envs.spiral.kuhn_poker import (
        INFO_STATES,
        exploitability,
        info_state_request,
        kuhn_policy_table,
    )

    model = getattr(policy, "model", None)
    temperature = getattr(policy, "temperature", 1.0)
    whole = (temperature > 0 and getattr(policy, "top_p", 1.0) >= 1.0 and not getattr(policy, "top_k", 0)
             and not getattr(policy, "min_p", 0.0))
    if model is None or not getattr(policy, "constrain", False) or not whole:
        table = kuhn_policy_table(policy, samples=1 if temperature == 0 else samples)  # greedy: one answer says it
        return exploitability(table), table
    import torch  # a model policy: torch is there (the sampled table above needs none)

    was_training = model.training
    model.eval()
    table = {}
    try:
        for state in INFO_STATES:
            request = info_state_request(state, env_id)
            with torch.no_grad():
                logps = {a: float(v) for a, v in
                         action_logprobs(model, policy.tokenizer, request, temperature,
                                         prompt=policy.encode(request)).items()}
            active = "[bet]" if "[bet]" in logps else "[call]"
            table[state] = math.exp(logps[active]) / sum(math.exp(v) for v in logps.values())
    finally:
        model.train(was_training)
    return exploitability(table), table


def play_alone(policy: Policy, env_id: str, episodes: int, seed: int = 0,
               env_kwargs: dict[str, Any] | None = None,
               on_episode: Callable[[Episode], None] | None = None) -> dict[str, dict[str, float]]:
    """The policy in every role of `episodes` episodes (an env of one role, or of three as
    AZR's and SPICE's): per role its win/draw/loss (by the sign of its return where the env
    names no winner) and invalid-move rates, mean return and its standard error over the
    episodes where the role was scored (`mean_return_se`: sd / sqrt(n), None below two)."""
    from arena.metrics import summarize

    eps = play(env_id, [policy], episodes, seed=seed, env_kwargs=_eval_kwargs(env_id, env_kwargs),
               concurrency=max(1, episodes), on_episode=on_episode)
    out = summarize(eps)
    for role, result in out.items():
        se = mean_return_se(eps, policy.name, role)
        result["mean_return_se"] = se if math.isfinite(se) else None  # None: strict JSON
    return out


def evaluate(policy: Policy, env_ids: list[str], episodes: int = 64, seed: int = 10_000,
             env_kwargs: dict[str, dict[str, Any]] | None = None,
             progress: Callable[[str, int], Callable[[Episode], None]] | None = None) -> dict[str, Any]:
    """Everything `arena eval` reports, as a flat dict: for a two-seat game (`has_two_seats`)
    `<Env>/vs_<opponent>/<rate>` (the policy against `random` and `heuristic`, both seats;
    with `mean_return_se`, the mean return's standard error over the deals),
    for any other env `<Env>/self/<role>/<rate>` (the policy in every role, `play_alone`;
    with `episodes`, those where the role was scored, and no rate when there were none),
    and for one-hand Kuhn Poker `<Env>/exploitability`, the strategy table
    (`<Env>/policy_table`) and each info state's self-play action gap (`<Env>/action_gaps`).
    `progress(label, episodes)`, called before each batch of episodes, returns the callback
    each of them is passed to as it ends (`arena eval`'s progress bar)."""
    from arena.registry import spec

    out: dict[str, Any] = {}
    for env_id in env_ids:
        short = env_id.split("/")[-1]
        kwargs = (env_kwargs or {}).get(env_id, {})
        if not has_two_seats(env_id):  # no opponent's seat: the model plays every role
            tick = progress(short, episodes) if progress is not None else None
            for role, result in play_alone(policy, env_id, episodes, seed=seed, env_kwargs=kwargs, on_episode=tick).items():
                out[f"{short}/self/{role}/episodes"] = result["episodes"]  # scored ones (`metrics.unscored_roles`)
                for name in (*OUTCOMES, "mean_return_se") if result["episodes"] else ():  # none: no 0 and no draw
                    out[f"{short}/self/{role}/{name}"] = result[name]
            continue
        for opponent in OPPONENTS:
            if opponent == "heuristic" and spec(env_id).load().heuristic_action is ArenaEnv.heuristic_action:
                continue  # the env has no heuristic policy (a bar for it stayed empty on screen)
            try:
                tick = progress(f"{short} vs {opponent}", episodes) if progress is not None else None
                result = play_against(policy, env_id, opponent, episodes, seed=seed, env_kwargs=kwargs, on_episode=tick)
            except ArenaError as exc:
                if "no heuristic" in str(exc):
                    continue
                raise
            for name in (*OUTCOMES, "mean_return_se"):
                out[f"{short}/vs_{opponent}/{name}"] = result[name]
        if _is_one_hand_kuhn(env_id, kwargs):
            from arena.envs.spiral.kuhn_poker import action_gaps

            value, table = kuhn_exploitability(policy, env_id)
            out[f"{short}/exploitability"] = value
            out[f"{short}/policy_table"] = table
            out[f"{short}/action_gaps"] = action_gaps(table)
    return out


def _is_one_hand_kuhn(env_id: str, kwargs: dict[str, Any]) -> bool:
    from arena.envs.spiral.kuhn_poker import KuhnPoker
    from arena.registry import spec

    s = spec(env_id)
    if not issubclass(s.load(), KuhnPoker):
        return False
    # the standard game `exploitability` walks: one hand, ante 1, scored in chips
    merged = {**s.kwargs, **kwargs}
    return (int(merged.get("rounds", 1)) == 1 and int(merged.get("ante", 1)) == 1
            and merged.get("scoring", "chips") == "chips")


#: The keys of a `RUN/eval.jsonl` record that say when and how it was made; the rest are results.
RECORD_KEYS: tuple[str, ...] = ("step", "minutes", "final", "episodes", "deals", "env", "env_kwargs")
#: How evaluation against fixed opponents deals (`play_against`); records made otherwise are not reused.
DEALS = "duplicate"


def record_results(record: dict[str, Any]) -> dict[str, Any]:
    """The results of an eval.jsonl record (`RECORD_KEYS` left out)."""
    return {k: v for k, v in record.items() if k not in RECORD_KEYS}


def training_evaluator(config, run_dir: Path):
    """The `evaluate(trainer, final=False, reuse=False)` hook of `SelfPlayTrainer`: evaluates
    the policy, appends a line to `RUN/eval.jsonl` (step, minutes, final, the evaluation's
    `episodes` per opponent, its `deals` (`DEALS`), `env` list and `env_kwargs`, results) and returns the results as
    `eval_<name>` metrics for the step's log: the name transformers' integrations (TensorBoard,
    W&B, ...) file under `eval/` (`rewrite_logs`; every other key goes under `train/`);
    metrics.csv names them `eval/<name>` (`arena.callbacks.ArenaCallback`).

    With `reuse` (a session's start), a record of this step made the way this session
    evaluates is taken instead, and None returned (nothing new to log): a resumed run starts
    at the step of its checkpoint, which the last session evaluated before saving it. A
    resume with another --eval-episodes, env list, env kwargs or chat template arguments, or
    a record older than these keys (or made with independent deals), evaluates again."""
    if not config.eval_every:
        return None
    path = Path(run_dir) / "eval.jsonl"
    made = {"episodes": config.eval_episodes, "deals": DEALS, "env": list(config.env),
            "env_kwargs": dict(config.env_kwargs or {})}
    if config.chat_template_kwargs:  # the prompts differ (a record without the key: none were given)
        made["chat_template_kwargs"] = dict(config.chat_template_kwargs)

    def metrics_of(results: dict[str, Any]) -> dict[str, float]:
        return {f"eval_{k}": float(v) for k, v in record_results(results).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def recorded(step: int) -> bool:
        return any(r.get("step") == step and all(r.get(k) == v for k, v in made.items()) for r in read_jsonl(path))

    def run(trainer, final: bool = False, reuse: bool = False) -> dict[str, float] | None:
        step = trainer.state.global_step
        if reuse and recorded(step):
            return None
        # evaluation draws from the policy's own RNG stream: put it back afterwards, so the
        # training rollouts (and a resumed run) do not depend on how often or how much we evaluate
        get_rng, set_rng = getattr(trainer.policy, "get_rng_state", None), getattr(trainer.policy, "set_rng_state", None)
        saved = get_rng() if get_rng is not None else None
        try:
            results = evaluate(trainer.policy, list(config.env), episodes=config.eval_episodes, seed=10_000,
                               env_kwargs=config.env_kwargs)
        finally:
            if saved is not None and set_rng is not None:
                set_rng(saved)
        record = {"step": step, "minutes": round(trainer.minutes(), 4), "final": final, **made, **results}
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return metrics_of(results)

    return run
