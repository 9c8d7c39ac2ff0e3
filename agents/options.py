"""`:KEY=VALUE` options at the end of a model agent's spec: `openai:MODEL@URL:temperature=0.7`,
`hf:PATH:temperature=0:max_tokens=16`, `tiny:constrain=no`, `vllm:PATH:top_p=0.9`.

Options are peeled off the end one at a time, so a model name or path with `:` in it, or a
URL's `:8000/v1`, survives (`:8000/v1` is not KEY=VALUE). Values are converted by the type
each agent declares for the key: `yes`/`no` (also true/false, 1/0, on/off) for booleans,
numbers for ints and floats; anything else is one line naming the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from arena.errors import ArenaError

_OPTION = re.compile(r":([a-z_]+)=([^:]*)$")


def peel_options(spec: str) -> tuple[str, dict[str, str]]:
    """`spec` without its trailing `:KEY=VALUE` options, and the options as written (a key
    given twice: the last one wins)."""
    raw: dict[str, str] = {}
    while match := _OPTION.search(spec):
        raw.setdefault(match.group(1), match.group(2))
        spec = spec[:match.start()]
    return spec, raw


def convert_options(agent: str, raw: Mapping[str, str], types: Mapping[str, type], example: str) -> dict[str, Any]:
    """The options converted by `types` (key -> bool, int, float or str); an unknown key or
    a value of the wrong kind is one line naming the keys or the form, with `example`."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = types.get(key)
        if kind is None:
            raise ArenaError(f"{agent} agent option {key!r}: choose from {', '.join(types)} (e.g. {example})")
        if kind is bool:
            lowered = value.strip().lower()
            if lowered not in ("yes", "true", "1", "on", "no", "false", "0", "off"):
                raise ArenaError(f"{agent} agent option {key}={value!r}: write {key}=yes or {key}=no")
            out[key] = lowered in ("yes", "true", "1", "on")
        elif kind is str:
            out[key] = value
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                word = "an integer" if kind is int else "a number"
                raise ArenaError(f"{agent} agent option {key}={value!r}: {key} must be {word}") from None
    return out
