"""Agents (imported as `arena.agents`): every one implements `arena.policy.Policy`.

`make_agent(spec)` builds one from a short spec: `random`, `heuristic`, `human`, `scripted`
(`scripted:noisy=0.5:verifier=yes`: the proposer/solver/verifier envs, `selfplay_scripted`),
`openai:MODEL@URL[:constrain=yes:temperature=0.7...]` (a served model, `arena.agents.openai`),
`tiny` and `hf:PATH_OR_ID` (transformers, `arena.agents.hf`), `vllm:tiny|PATH` (an
in-process vLLM engine, `arena.agents.vllm`); those are imported only when used. Model
agents take decoding options after the spec, `hf:PATH:temperature=0:max_tokens=16`
(`arena.agents.options`: constrain, temperature, top_p, top_k, min_p, max_tokens, name).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from arena.errors import ArenaError
from arena.policy import Completion, Policy, Request

from .scripted import HeuristicAgent, HumanAgent, RandomAgent, boxed
from .selfplay_scripted import SelfPlayScripted

AGENTS: dict[str, Callable[..., Policy]] = {
    "random": RandomAgent,
    "heuristic": HeuristicAgent,
    "human": HumanAgent,
    "scripted": SelfPlayScripted,  # azr/* and spice/*: options after colons, scripted:noisy=0.5:verifier=yes
    "openai": lambda seed=None: _lazy("openai", "openai", seed),  # openai:MODEL@URL[:KEY=VALUE]...
    "tiny": lambda seed=None: _lazy("hf", "tiny", seed),  # the tiny model (transformers)
    "hf": lambda seed=None: _lazy("hf", "hf", seed),  # hf:PATH_OR_HUB_ID (transformers)
    "vllm": lambda seed=None: _lazy("vllm", "vllm:tiny", seed),  # vllm:tiny or vllm:PATH (in-process engine)
}
# agents whose spec carries an argument after the first colon; their modules need optional
# packages (openai, vllm) or torch, so they are imported only when used
_WITH_ARGUMENT = {"scripted", "openai", "hf", "vllm", "tiny"}


def _lazy(module: str, spec: str, seed: int | None) -> Policy:
    if module == "openai":
        from .openai import make_openai_agent

        return make_openai_agent(spec, seed=seed)
    if module == "vllm":
        from .vllm import make_vllm_agent

        return make_vllm_agent(spec, seed=seed)
    from .hf import make_hf_agent

    if spec == "hf":
        raise ArenaError("the hf agent needs a model: hf:PATH (a save_pretrained folder) or hf:HUB_ID")
    return make_hf_agent(spec, seed=seed)


def is_agent_spec(spec: str) -> bool:
    """Whether `spec` names an agent (`random`, `openai:...`) rather than a model path."""
    name = spec.strip()
    return name in AGENTS or name.partition(":")[0] in _WITH_ARGUMENT


def make_agent(spec: str, seed: int | None = None, *, chat_template_kwargs: dict | None = None) -> Policy:
    """Build an agent from its spec: `random`, `heuristic`, `human`, `scripted[:...]`,
    `openai:MODEL@URL`, `tiny`, `hf:PATH_OR_ID` or `vllm:tiny|PATH`. `chat_template_kwargs`
    (a training run's) go to a served model (`openai:`, whose own `enable_thinking=` option
    wins); `tiny`, `hf:` and `vllm:` agents prompt as their own run did."""
    name = spec.strip()
    kind = name.partition(":")[0]
    if name.startswith("scripted:"):
        return SelfPlayScripted.from_spec(name, seed=seed)
    if kind == "openai" and ":" in name:
        from .openai import make_openai_agent

        return make_openai_agent(name, seed=seed, chat_template_kwargs=chat_template_kwargs)
    if kind in ("hf", "vllm") and ":" in name:
        return _lazy(kind, name, seed)
    if kind == "tiny" and ":" in name:  # tiny:temperature=0 (options, `arena.agents.options`)
        return _lazy("hf", name, seed)
    if name not in AGENTS:
        close = difflib.get_close_matches(name, list(AGENTS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArenaError(f"unknown agent {spec!r}{hint} (choose from: {', '.join(AGENTS)})")
    factory = AGENTS[name]
    return factory() if name == "human" else factory(seed=seed)


__all__ = ["AGENTS", "Completion", "HeuristicAgent", "HumanAgent", "Policy", "RandomAgent", "Request", "SelfPlayScripted", "boxed", "is_agent_spec", "make_agent"]
