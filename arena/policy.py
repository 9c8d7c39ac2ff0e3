"""The `Policy` protocol: what the rollout engine asks of every agent.

A policy answers a *batch* of pending turns at once (model backends generate them in one
call). Each pending turn is a `Request`; each answer a `Completion`. Scripted agents
(random, heuristic, human) and model-backed agents (hf, vllm, openai) implement the same
protocol, so any of them can sit in any seat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from arena.protocol import ArenaEnv


@dataclass
class Request:
    """One pending turn.

    Attributes:
        env_id: the env id.
        role: the acting role.
        observation: the text the role sees.
        messages: the chat prompt (the role's system prompt and template applied).
        legal_actions: the legal actions when finite, else None (agents may constrain
            decoding to them).
        env: the live env, read-only: scripted agents may call `env.heuristic_action()`;
            model-backed agents never look at it.
    """

    env_id: str
    role: str
    observation: str
    messages: list[dict[str, str]]
    legal_actions: list[str] | None = None
    env: ArenaEnv | None = field(default=None, repr=False)


@dataclass
class Completion:
    """One answer: the text, and for model-made turns the tokens and their log-probs."""

    text: str
    prompt_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Anything with a `name` and `act(requests) -> completions` (same length, same order)."""

    name: str

    def act(self, requests: Sequence[Request]) -> list[Completion]: ...
