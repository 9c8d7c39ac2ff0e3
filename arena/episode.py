"""`Turn` and `Episode`: the unit of storage, replay and training.

An episode record is plain JSON (one line of `episodes.jsonl`), readable with `jq` or
pandas without arena. Field by field:

- `schema`: record schema version (`SCHEMA_VERSION`; schemas 1 and 2 both load).
- `id`: `<run>-<index>` or any unique string; `env_id`, `env_kwargs`, `seed`, `options`:
  everything `arena.make(env_id, **env_kwargs).reset(seed=seed, options=options)` needs
  (`arena.replay.replay_env(episode)` builds it so, less the arguments through which the
  env writes, such as AZR's run buffer).
- `agents`: role -> agent name that played it.
- `turns`: list of `Turn` records, in order (`prompt_ids`, `token_ids`, `logprobs` only
  on turns that have them).
- `rewards`: role -> final return (sum of the rewards the env gave the role).
- `outcome`: the env's `outcome` dict (`reason`, `winner`, ...).
- `sandbox_calls`: code executions made during the episode (code envs).
- `metadata`: free-form; `index` is the episode's index in its run (what
  `arena replay --episode N` selects), the trainer adds its step.

Numbers that are not finite (NaN, infinities) are written as `null`; a `null` reward reads
back as NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from arena.errors import ArenaError

SCHEMA_VERSION = 2
#: Record schemas this arena reads. Schema 1 (arena <= 0.1) stored every turn field, None
#: included; schema 2 leaves out the token fields of turns that have none. Both load.
READABLE_SCHEMAS = (1, 2)
#: Turn fields a schema-2 record leaves out when they are None (jq reads a missing key as null).
OPTIONAL_TURN_FIELDS = ("prompt_ids", "token_ids", "logprobs")


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
        """The full JSON record: every field, NaN and infinities as None (strict JSON)."""
        return _finite(self.record(compact=False))

    def record(self, *, compact: bool = True) -> dict[str, Any]:
        """The JSON record as the store writes it, built field by field (`dataclasses.asdict`
        deep-copies and was most of the store's cost). `compact` leaves out the token fields
        of turns that have none. Values are not copied and non-finite floats are kept: the
        writer encodes at once and cleans only a record that needs it."""
        turns = []
        for t in self.turns:
            turn = t.__dict__.copy()  # the fields in record order (info last), a third faster than by name
            if len(turn) != _N_TURN_FIELDS:  # attributes set on the instance: only the fields
                turn = {name: turn[name] for name in _TURN_FIELD_NAMES}
            if compact:
                for name in OPTIONAL_TURN_FIELDS:
                    if turn[name] is None:
                        del turn[name]
            turns.append(turn)
        return {"env_id": self.env_id, "seed": self.seed, "env_kwargs": self.env_kwargs, "options": self.options,
                "agents": self.agents, "turns": turns, "rewards": self.rewards, "outcome": self.outcome,
                "sandbox_calls": self.sandbox_calls, "metadata": self.metadata, "id": self.id,
                "schema": SCHEMA_VERSION}

    @classmethod
    def from_dict(cls, record: Any) -> Episode:
        """Rebuild an episode from its JSON record (schema 1 or 2).

        Raises `ArenaError` with one line naming the bad field for anything that is not an
        arena episode record. A `null` reward (arena writes non-finite numbers as null) reads
        back as NaN.
        """
        if not isinstance(record, dict):
            raise ArenaError(f"not an episode record: a JSON {_json_kind(record)}, not an object")
        schema = record.get("schema")
        if "schema" not in record:
            raise ArenaError("not an arena episode record: it has no `schema` field")
        if schema not in READABLE_SCHEMAS:
            raise ArenaError(f"episode record has schema {schema!r}; this arena reads schemas "
                             f"{', '.join(map(str, READABLE_SCHEMAS))}: use the arena version that wrote it")
        unknown = sorted(set(record) - _EPISODE_FIELDS)
        if unknown:
            raise ArenaError(f"episode record has unknown field(s) {', '.join(map(repr, unknown))}")
        missing = [name for name in _EPISODE_REQUIRED if name not in record]
        if missing:  # Episode() itself would say it in a TypeError
            raise ArenaError(f"episode record has no {', '.join(map(repr, missing))} field{'s' * (len(missing) > 1)}: "
                             "every record needs its env_id and seed (null when the reset had none)")
        _expect(record, "env_id", str, required=True)
        seed = record.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ArenaError(f"episode field 'seed' must be an integer or null, got {_json_kind(seed)} {seed!r}")
        for name in ("env_kwargs", "options", "agents", "rewards", "outcome", "metadata"):
            _expect(record, name, dict)
        _expect(record, "sandbox_calls", list)
        _expect(record, "id", str)
        turns = record.get("turns", [])
        if not isinstance(turns, list):
            raise ArenaError(f"episode field 'turns' must be a list of turn objects, got {_json_kind(turns)}")
        data = {k: v for k, v in record.items() if k not in ("turns", "rewards", "schema")}
        data["rewards"] = {str(role): _number(value, f"rewards.{role}")
                           for role, value in (record.get("rewards") or {}).items()}
        data["turns"] = [_turn(t, i) for i, t in enumerate(turns)]
        return cls(**data, schema=SCHEMA_VERSION)

    def turns_of(self, role: str) -> list[Turn]:
        return [t for t in self.turns if t.role == role]


_TURN_FIELD_NAMES = tuple(f.name for f in fields(Turn))
_N_TURN_FIELDS = len(_TURN_FIELD_NAMES)
_EPISODE_FIELDS = {"env_id", "seed", "env_kwargs", "options", "agents", "turns", "rewards", "outcome",
                   "sandbox_calls", "metadata", "id", "schema"}
_EPISODE_REQUIRED = ("env_id", "seed")  # the fields `Episode` has no default for
_TURN_TYPES: dict[str, tuple[type, ...]] = {
    "index": (int,), "role": (str,), "agent": (str,), "observation": (str,), "completion": (str,),
    "action": (str, type(None)), "legal": (bool, type(None)), "prompt_ids": (list, type(None)),
    "token_ids": (list, type(None)), "logprobs": (list, type(None)), "info": (dict,),
}
_TURN_REQUIRED = ("index", "role", "agent", "observation", "completion")


def _json_kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _expect(record: dict[str, Any], name: str, kind: type, *, required: bool = False) -> None:
    if name not in record:
        if required:
            raise ArenaError(f"episode record has no {name!r} field")
        return
    if not isinstance(record[name], kind):
        raise ArenaError(f"episode field {name!r} must be a JSON {_json_kind(kind())}, "
                         f"got {_json_kind(record[name])} {_clip(record[name])}")


def _clip(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any, where: str) -> float:
    """A reward: a JSON number, or null (a non-finite value arena wrote) read as NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArenaError(f"episode field {where!r} must be a number or null, got {_json_kind(value)} {_clip(value)}")
    return float(value)


def _turn(record: Any, position: int) -> Turn:
    where = f"turns[{position}]"
    if not isinstance(record, dict):
        raise ArenaError(f"episode field {where!r} must be a turn object, got {_json_kind(record)} {_clip(record)}")
    unknown = sorted(set(record) - set(_TURN_TYPES) - {"reward"})
    if unknown:
        raise ArenaError(f"episode field {where!r} has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"a turn has {', '.join(list(_TURN_TYPES) + ['reward'])}")
    for name in _TURN_REQUIRED:
        if name not in record:
            raise ArenaError(f"episode field {where!r} has no {name!r}")
    for name, kinds in _TURN_TYPES.items():
        value = record.get(name)
        if name in record and (not isinstance(value, kinds) or (name == "index" and isinstance(value, bool))):
            allowed = " or ".join(_json_kind(k()) if k is not type(None) else "null" for k in kinds)
            raise ArenaError(f"episode field '{where}.{name}' must be {allowed}, got {_json_kind(value)} {_clip(value)}")
    data = dict(record)
    data["reward"] = _number(record.get("reward", 0.0), f"{where}.reward")
    return Turn(**data)


def _finite(value: Any) -> Any:
    """Replace NaN and infinities with None so the record stays strict JSON; numpy scalars
    and arrays (keys too: `np.int64(3)`) become the Python values they hold first."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes, int, float)):
        value = tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _finite(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
