"""Registry of env ids: `register`, `make`, `registry`, `spec`.

Ids look like `spiral/KuhnPoker-v0`. Entry points are `"module:Class"` strings, imported
on first use, or classes. arena's built-in envs register when `arena.envs` is imported;
third-party packages declare an entry point in the group `arena.envs` whose value is a
module (imported: its `register` calls run) or a callable (called with no argument):

    [project.entry-points."arena.envs"]
    my_games = "my_games.envs"

Every env class is checked once when first loaded: it must subclass `ArenaEnv` and its
protocol graph must be valid (`arena.protocol.validate_protocol`).

`registry` is a read-only mapping of id to `EnvSpec` (`"spiral/KuhnPoker-v0" in registry`,
`registry.items()`); calling it, `registry()`, gives a plain sorted dict.
`pprint_registry()` prints the ids by namespace, as Gymnasium's does.

Importing this module is cheap: env classes (and PettingZoo, Gymnasium, networkx) are
imported when an env is first loaded.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arena.errors import ArenaError

if TYPE_CHECKING:
    from arena.protocol import ArenaEnv

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "arena.envs"

#: The shape of an env id: `namespace/Name-vN` (letters, digits, `_`, `.`, `-`; `:` in Name).
ID_PATTERN = re.compile(r"^(?P<namespace>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.:-]+?)-v(?P<version>\d+)$")


@dataclass
class EnvSpec:
    """What `make` needs to build an env.

    Attributes:
        id: the env id, `namespace/Name-vN`.
        entry_point: `"module:Class"` or the class itself.
        kwargs: default constructor kwargs; `make(id, **kw)` overrides them.
        description: one line for `arena envs` (default: the class docstring's first line).
    """

    id: str
    entry_point: str | type
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    origin: str = field(default="", compare=False)  # who registered it: arena's built-ins, a plugin, or ""

    def load(self) -> type[ArenaEnv]:
        """Import and check the env class."""
        from arena.protocol import ArenaEnv, validate_declarations, validate_protocol

        cls = _load_entry_point(self.id, self.entry_point)
        if cls not in _checked:
            if not (inspect.isclass(cls) and issubclass(cls, ArenaEnv)):
                raise ArenaError(f"{self.id}: entry point {self.entry_point!r} is not an arena.ArenaEnv subclass")
            validate_declarations(self.id, cls.roles, cls.edges)
            validate_protocol(self.id, [r.name for r in cls.roles], cls.protocol())
            unknown = sorted(set(cls.grpo_pooled_roles) - {r.name for r in cls.roles})
            if unknown:
                raise ArenaError(f"{self.id}: grpo_pooled_roles names {unknown}, not roles of the env "
                                 f"({', '.join(r.name for r in cls.roles)})")
            missing = [hook for hook in ("_reset", "_observe", "_step") if getattr(cls, hook) is getattr(ArenaEnv, hook)]
            if missing:  # else a NotImplementedError from arena's code at the first reset or move
                raise ArenaError(f"{self.id}: {cls.__name__} does not implement {', '.join(missing)}: every env "
                                 "implements _reset, _observe and _step (README: Writing a new environment)")
            _checked.add(cls)
        return cls

    def summary(self) -> str:
        if self.description:
            return self.description
        doc = inspect.getdoc(self.load()) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


_REGISTRY: dict[str, EnvSpec] = {}
_checked: set[type] = set()
_plugins_loaded = False
_loading: str | None = None  # the built-ins or the plugin whose register calls run now (`_load_plugins`)


def _load_entry_point(env_id: str, entry_point: str | type) -> Any:
    if not isinstance(entry_point, str):
        return entry_point
    module_name, _, attr = entry_point.partition(":")
    if not module_name or not attr:
        raise ArenaError(f"{env_id}: entry point {entry_point!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ArenaError(f"{env_id}: cannot import module {module_name!r} of entry point {entry_point!r}: "
                         f"{exc}{_found_where(module_name, exc)}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ArenaError(f"{env_id}: module {module_name!r} has no attribute {attr!r} (entry point {entry_point!r})") from None


def _found_where(module: str, exc: ImportError) -> str:
    """Where the package of a missing submodule was found, when it was: an installed
    `my_games` hides a `./my_games/coin.py`, and "No module named 'my_games.coin'" alone
    did not say which `my_games` was searched."""
    top = module.split(".")[0]
    if getattr(exc, "name", None) in (None, top) or top == module:
        return ""
    found = sys.modules.get(top)
    where = next(iter(getattr(found, "__path__", None) or [getattr(found, "__file__", None)]), None)
    return f" (the package {top!r} used is {where})" if where else ""


def register(id: str, entry_point: str | type, kwargs: dict[str, Any] | None = None, *,
             description: str | None = None, override: bool = False) -> EnvSpec:
    """Register env `id`, built by `entry_point(**kwargs)`.

    Raises `ArenaError` when `id` is already registered (pass `override=True` to replace it)
    or when `entry_point` is neither a class nor a `"module:Class"` string.
    """
    if not isinstance(id, str) or not ID_PATTERN.match(id):
        raise ArenaError(f"env id {id!r} must look like 'namespace/Name-vN', e.g. 'mine/CoinGuess-v0'")
    if isinstance(entry_point, str) and ":" not in entry_point:
        raise ArenaError(f"{id}: entry point {entry_point!r} must look like 'package.module:ClassName'")
    builtin = sys._getframe(1).f_globals.get("__name__") == "arena.envs"  # arena's own, from any import order
    if not builtin:
        _load_plugins()  # first: a built-in or plugin id registered before they loaded broke every one of them
    origin = "arena's built-in envs" if builtin else _loading or ""
    taken = _REGISTRY.get(id)
    if taken is not None and not override:
        by = f" by {taken.origin}" if taken.origin else ""
        if origin:  # a plugin's clash costs that id only, not the plugin's other envs
            logger.warning("arena: %s registers env id %r, already registered%s; %r stays as it was",
                           origin, id, by, id)
            return taken
        raise ArenaError(f"env id {id!r} is already registered{by}; choose another id, or pass override=True "
                         "to replace it")
    spec_ = EnvSpec(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}), description=description,
                    origin=origin)
    _REGISTRY[id] = spec_
    return spec_


def _load_plugins() -> None:
    """Import arena's built-in envs and every `arena.envs` entry point, once."""
    global _plugins_loaded, _loading
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib import metadata  # ~20 ms: only when envs are first listed or made

    try:
        importlib.import_module("arena.envs")
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            _loading = f"env plugin {ep.name!r} ({ep.value})"
            try:
                loaded = ep.load()
                if callable(loaded) and not inspect.ismodule(loaded):
                    loaded()
            except Exception as exc:  # noqa: BLE001  (a broken plugin must not break arena: warn and go on)
                logger.warning("arena: could not load env plugin %r (%s): %s", ep.name, ep.value, exc)
    finally:
        _loading = None


class Registry(Mapping[str, EnvSpec]):
    """All registered env specs by id (built-ins and plugins included), read-only.

    A mapping (`registry["spiral/KuhnPoker-v0"]`, `in`, `len`, `items()`, sorted by id);
    `registry()` returns a plain dict copy. Register with `arena.register`.
    """

    def __call__(self) -> dict[str, EnvSpec]:
        _load_plugins()
        return dict(sorted(_REGISTRY.items()))

    def __getitem__(self, id: str) -> EnvSpec:
        _load_plugins()
        return _REGISTRY[id]

    def __contains__(self, id: object) -> bool:
        _load_plugins()
        return id in _REGISTRY

    def __iter__(self) -> Iterator[str]:
        _load_plugins()
        return iter(sorted(_REGISTRY))

    def __len__(self) -> int:
        _load_plugins()
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"<arena env registry: {len(self)} envs>"


#: The env registry: a read-only mapping id -> `EnvSpec`; `registry()` gives a dict.
registry = Registry()


def pprint_registry(file: Any = None) -> None:
    """Print the registered env ids, one line per namespace (like Gymnasium's)."""
    by_namespace: dict[str, list[str]] = {}
    for env_id in registry:
        namespace, _, name = env_id.partition("/")
        by_namespace.setdefault(namespace, []).append(name)
    for namespace, names in by_namespace.items():
        print(f"===== {namespace} =====", file=file)
        print("  ".join(names), file=file)


def _import_module_prefix(id: str) -> str:
    """Gymnasium's `module:env_id` form (`my_games.coin:mine/CoinGuess-v0`): import the module,
    which registers its envs, and return the env id after the colon; other ids unchanged.

    The module is looked up on `sys.path`, then in the working folder (as `python -m` and
    uvicorn do: `arena play my_games.coin:mine/CoinGuess-v0` from the folder that holds
    `my_games/`), so an env file needs no package or entry point to be played, trained,
    checked and replayed. Episodes keep the whole id, so they replay the same way.
    """
    module, sep, rest = id.partition(":")
    if not sep or not module or "/" in module:
        return id
    if not rest:
        raise ArenaError(f"{id!r} names a module but no env: give MODULE:NAMESPACE/Name-vN, e.g. {module}:mine/CoinGuess-v0")
    if module not in sys.modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module.split(".")[0] or os.getcwd() in sys.path:
                raise ArenaError(f"{id}: cannot import module {module!r}: {exc}{_found_where(module, exc)}") from None
            sys.path.append(os.getcwd())  # last: an installed package of the same name wins
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as again:
                raise ArenaError(f"{id}: no module {module!r} on the Python path or in {os.getcwd()} ({again}); "
                                 "run from the folder that holds it, or pip install its package") from None
    return rest


def spec(id: str) -> EnvSpec:
    """The spec of `id` (or of `module:id`, importing the module first); an unknown id
    raises `ArenaError` listing close matches."""
    _load_plugins()
    if id in _REGISTRY:
        return _REGISTRY[id]
    bare = _import_module_prefix(id)
    if bare in _REGISTRY:
        return _REGISTRY[bare]
    id = bare
    close = difflib.get_close_matches(id, list(_REGISTRY), n=3, cutoff=0.5)
    if not close:  # also match on the name without namespace and version
        bare = id.rsplit("/", 1)[-1].split("-v")[0].lower()
        close = [k for k in _REGISTRY if bare and bare in k.lower()][:3]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    module, sep, rest = id.partition(":")
    if sep and ("/" in module or module.endswith(".py")):  # `my_games/nim.py:mine/Nim-v0`: a path, not a module
        dotted = module.removesuffix(".py").replace("/", ".").strip(".")
        hint += f"; name the module as Python imports it: {dotted}:{rest}"
    elif not sep:
        hint += "; an env registered in a module of your own is MODULE:ID, e.g. my_games.coin:mine/CoinGuess-v0"
    listed = sum(1 for s in _REGISTRY.values() if s.origin)  # `arena envs` shows built-ins and plugins
    raise ArenaError(f"unknown env id {id!r}{hint} (`arena envs` lists the {listed} built in and installed)")


def check_kwargs(env_id: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise `ArenaError` when `kwargs` do not fit `cls.__init__`: an unknown name (naming
    close matches) or a value of the wrong type for the parameter's annotation (`int`,
    `float`, `bool`, `str`, `Literal[...]`, `X | None`): `rounds=2.5` or `rounds=True` for an
    `int` is refused, never rounded."""
    names, hints = _init_parameters(cls)
    if names is not None:
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ArenaError(f"{env_id}: unknown argument {key!r}{hint} (accepted: {', '.join(names) or 'none'})")
    for key, value in kwargs.items():
        if key in hints:
            problem = _type_problem(value, hints[key])
            if problem:
                raise ArenaError(f"{env_id}: argument {key} must be {problem}, got {value!r}")


@functools.cache
def _init_parameters(cls: type) -> tuple[tuple[str, ...] | None, dict[str, Any]]:
    """`cls.__init__`'s parameter names (None when it takes **kwargs) and resolved type
    hints; once per class (a rollout makes an env per episode slot, every step)."""
    signature = inspect.signature(cls.__init__)
    params = [p for p in list(signature.parameters.values())[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001  (an annotation that does not resolve: no type check)
        hints = {}
    return (None if takes_any else tuple(p.name for p in params)), hints


def _type_problem(value: Any, hint: Any) -> str | None:
    """What `value` should be to fit the annotation `hint`, or None when it fits (or when
    the annotation is not one of the simple kinds checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return None if value in args and type(value) in {type(a) for a in args} else \
            "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args]
        if any(p is None for p in problems):
            return None
        return " or ".join(p for p in problems if p)
    if hint is type(None):
        return None if value is None else "None"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None


def make(id: str, **kwargs: Any) -> ArenaEnv:
    """Build env `id`; `kwargs` override the registered defaults."""
    spec_ = spec(id)
    cls = spec_.load()
    merged = {**spec_.kwargs, **kwargs}
    check_kwargs(id, cls, merged)
    merged = cls.resolve_kwargs(merged)
    try:
        env = cls(**merged)
    except ArenaError as exc:
        if str(exc).startswith(f"{id}:"):
            raise
        raise ArenaError(f"{id}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ArenaError(f"{id}: bad arguments {merged}: {exc}") from exc
    env.spec = spec_
    env.env_id = id
    env.env_kwargs = merged
    return env
