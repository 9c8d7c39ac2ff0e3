"""`Turn` and `Episode`: the unit of storage, replay and training.

An episode record is plain JSON (one line of `episodes.jsonl`), readable with `jq` or
pandas without arena. Field by field:

- `schema`: record schema version (`SCHEMA_VERSION`).
- `id`: `<run>-<index>` or any unique string; `env_id`, `env_kwargs`, `seed`, `options`:
  everything `arena.make(env_id, **env_kwargs).reset(seed=seed, options=options)` needs.
- `agents`: role -> agent name that played it.
- `turns`: list of `Turn` records, in order.
- `rewards`: role -> final return (sum of the rewards the env gave the role).
- `outcome`: the env's `outcome` dict (`reason`, `winner`, ...).
- `sandbox_calls`: code executions made during the episode (code envs).
- `metadata`: free-form (run name, step, timing).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from arena.errors import ArenaError

SCHEMA_VERSION = 1


@dataclass
class Turn:
    """One role's move.

    Attributes:
        index: position in the episode (0-based).
        role: the acting role.
        agent: name of the agent that made it.
        observation: the text the role saw.
        completion: the raw text the agent returned (what `env.step` received).
        action: the action parsed from it (None when unparsable).
        legal: whether the env accepted it (None when the env does not say).
        reward: the role's return credited to this turn (gamma = 1: the role's final
            return, as SPIRAL copies it to every turn of the player).
        prompt_ids, token_ids, logprobs: tokens of model-made turns.
        info: extra per-turn data.
    """

    index: int
    role: str
    agent: str
    observation: str
    completion: str
    action: str | None = None
    legal: bool | None = None
    reward: float = 0.0
    prompt_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    """A whole episode; see the module docstring for the fields."""

    env_id: str
    seed: int | None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    rewards: dict[str, float] = field(default_factory=dict)
    outcome: dict[str, Any] = field(default_factory=dict)
    sandbox_calls: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Episode:
        """Rebuild an episode from its JSON record; `ArenaError` on a foreign schema."""
        schema = record.get("schema")
        if schema != SCHEMA_VERSION:
            raise ArenaError(f"episode record has schema {schema!r}; this arena reads schema {SCHEMA_VERSION}")
        data = dict(record)
        data["turns"] = [Turn(**t) for t in data.get("turns", [])]
        try:
            return cls(**data)
        except TypeError as exc:
            raise ArenaError(f"malformed episode record: {exc}") from exc

    def turns_of(self, role: str) -> list[Turn]:
        return [t for t in self.turns if t.role == role]


def _finite(value: Any) -> Any:
    """Replace NaN and infinities with None so the record stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
