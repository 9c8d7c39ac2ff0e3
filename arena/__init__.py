"""arena: multi-role self-play reinforcement learning of one language model."""

from arena.checker import check_env
from arena.errors import ArenaError
from arena.protocol import ArenaEnv, Role, TextObs
from arena.registry import EnvSpec, make, register, registry, spec

__version__ = "0.1.0"

__all__ = ["check_env", "ArenaEnv", "ArenaError", "EnvSpec", "Role", "TextObs", "__version__", "make", "register", "registry", "spec"]
