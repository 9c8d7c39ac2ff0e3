"""arena: multi-role self-play reinforcement learning of one language model.

`import arena` is cheap: the env base (PettingZoo, Gymnasium, networkx), the checker, the
rollout engine and the trainer (torch, transformers, TRL) are imported on first use of
`arena.ArenaEnv`, `arena.check_env`, `arena.play`, `arena.train`, ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from arena.errors import ArenaError
from arena.registry import EnvSpec, make, pprint_registry, register, registry, spec

__version__ = "0.1.0"

_LAZY = {
    "ArenaEnv": "arena.protocol",
    "Role": "arena.protocol",
    "TextObs": "arena.protocol",
    "check_env": "arena.checker",
    "play": "arena.rollout",
    "TrainConfig": "arena.config",
    "train": "arena.training",
}

if TYPE_CHECKING:
    from arena.checker import check_env
    from arena.config import TrainConfig
    from arena.protocol import ArenaEnv, Role, TextObs
    from arena.rollout import play
    from arena.training import train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'arena' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the submodules imported so far (not `Any`, `importlib`, ...)."""
    import types

    modules = {name for name, value in globals().items() if isinstance(value, types.ModuleType)
               and getattr(value, "__name__", "").startswith("arena.")}
    return sorted(set(__all__) | modules)


__all__ = [
    "ArenaEnv",
    "ArenaError",
    "EnvSpec",
    "Role",
    "TextObs",
    "TrainConfig",
    "__version__",
    "check_env",
    "make",
    "play",
    "pprint_registry",
    "register",
    "registry",
    "spec",
    "train",
]
