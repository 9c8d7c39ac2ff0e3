"""`TrainConfig` from words: `arena train`'s flags and YAML config files (`parse_args`,
`load_yaml`), and the flags' help (`fields_help`). The fields themselves, their types and
checks are `arena.config`'s.

    arena train --env spiral/KuhnPoker-v0 --steps 100 --out runs/kuhn
    arena train --config kuhn.yaml --learning-rate 3e-4     # flags override the file
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from pathlib import Path
from typing import Any

from arena.config import TrainConfig, _base_type, _coerce, _field_types, _flag
from arena.errors import ArenaError
from arena.trl_names import TRL_NAMES, TRL_WITHOUT


def fields_help() -> list[tuple[str, str, str]]:
    """(flag, default, help) of every field, for `arena train --help`."""
    return [(f"--{_flag(f.name)}", repr(_default(f)), f.metadata["help"]) for f in dataclasses.fields(TrainConfig)]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default



def _key(raw: str, where: str) -> str:
    names = list(_field_types())
    key = raw.lstrip("-").replace("-", "_")
    if key in TRL_NAMES:
        ours = TRL_NAMES[key]
        shown = f"--{raw.lstrip('-')}" if where == "flag" else repr(raw)
        value = {"backend": "vllm", "lora_r": "R (a LoRA rank, e.g. 16)"}.get(ours)
        if where == "flag":
            name = f"--{_flag(ours)}" + (f" {value}" if value else "")
        else:
            name = f"'{ours}: {value}'" if value else repr(ours)
        raise ArenaError(f"unknown {where} {shown}: that is TRL's name; arena's is {name} (see `arena train --help`)")
    shown = f"--{raw.lstrip('-')}" if where == "flag" else repr(raw)
    if key in TRL_WITHOUT:
        raise ArenaError(f"unknown {where} {shown}: TRL's setting has no counterpart here: {TRL_WITHOUT[key]} "
                         "(see `arena train --help`)")
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = ""
        if close:
            hint = f"; did you mean {f'--{_flag(close[0])}' if where == 'flag' else repr(close[0])}?"
        elif key == "kw" and "env_kwargs" in names:  # `arena play` and `arena eval`'s flag
            hint = ("; training takes env arguments per env as --env-kwargs JSON, e.g. "
                    "--env-kwargs '{\"spiral/KuhnPoker-v1\": {\"rounds\": 3}}'")
        raise ArenaError(f"unknown {where} {shown}{hint} (see `arena train --help`)")
    return key


class _DuplicateKey(Exception):
    pass


@functools.cache
def _yaml_problem(exc: Exception) -> str:
    """PyYAML's error as one line with its place: `line 2, column 4: expected ',' or ']', but
    got ':' (while parsing a flow sequence)` (its first line alone named no line)."""
    mark, problem, context = (getattr(exc, name, None) for name in ("problem_mark", "problem", "context"))
    if mark is None or not problem:
        return str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


def _unique_keys_loader() -> type:
    """PyYAML's SafeLoader, refusing a key given twice in one mapping (PyYAML keeps the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                _refuse_duplicates(self, node)
            return super().construct_mapping(node, deep=deep)

    return Loader


def _refuse_duplicates(loader: Any, node: Any) -> None:
    import yaml

    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` merges are meant to be overridden
        key, line = loader.construct_object(key_node), key_node.start_mark.line + 1
        if key in first:
            raise _DuplicateKey(f"line {line}: key {key!r} is already set on line {first[key]}; keep one")
        first[key] = line


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The fields of a YAML config file; unknown keys are a one-line error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ArenaError(f"config file {path} not found")
    try:
        data = yaml.load(path.read_text(), Loader=_unique_keys_loader()) or {}
    except _DuplicateKey as exc:
        raise ArenaError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ArenaError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ArenaError(f"{path}: a config file is a mapping of field: value, got {type(data).__name__}")
    out, raws = {}, {}
    for raw, value in data.items():
        key = _key(str(raw), f"key in {path}:")
        if key in raws:  # foo-bar and foo_bar: one field, and one would silently win
            raise ArenaError(f"{path}: keys {raws[key]!r} and {raw!r} set the same field; keep one")
        raws[key] = raw
        out[key] = _coerce_in(path, raw, key, value)
    return out


def _coerce_in(path: Path, raw: Any, key: str, value: Any) -> Any:
    """`value` as field `key`'s type; an error said with the file and key it came from, not
    the flag it did not come from."""
    try:
        return _coerce(key, _field_types()[key], value)
    except ArenaError as exc:
        message = str(exc).removeprefix(f"--{_flag(key)}: ").removeprefix(f"--{_flag(key)} ")
        raise ArenaError(f"{path}: {raw}: {message}") from None


# Fields added after runs were saved, with the value that reproduces what those runs did: a
# run resumed from a config.yaml without them keeps its own schedule (its entropy bonus then
# decayed from half-way to a tenth) and its own loss forward (TRL's, under gradient
# checkpointing: the shared prefix rounds differently), never the new defaults.
RUN_FIELDS_ADDED: dict[str, Any] = {"entropy_hold": 0.5, "grpo_scale": "group", "gradient_checkpointing": True,
                                    "share_prefix": False, "entropy_decay": "linear"}


def run_config(run: str | Path) -> dict[str, Any] | None:
    """The settings a run to resume trained with: its config.yaml, else (that file lost) the
    config its run.json recorded; None for a folder with neither. Resumed with `--config
    FILE`, or from a file's `resume:` key, a run once started over from every default."""
    path = Path(run) / "config.yaml"
    if path.is_file():
        return load_yaml(path)
    try:
        recorded = json.loads((Path(run) / "run.json").read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(recorded, dict):
        return None
    return {key: _coerce_in(Path(run) / "run.json", f"config.{key}", key, value)
            for key, value in recorded.items() if key in _field_types()}


def _run_command(run: Path) -> str | None:
    """The command its run.json says wrote `run` (`train`, `play`), None when unreadable."""
    from arena.run_info import read_run_info

    try:
        command = read_run_info(run).get("command")
    except ArenaError:
        return None
    return command if isinstance(command, str) else None


def parse_args(args: list[str]) -> TrainConfig:
    """Build a `TrainConfig` from command-line words: with `--resume RUN` (a flag, or a key
    of the file) the run's own settings first (`run_config`), then `--config FILE`, then flags.

    `--flag VALUE` or `--flag=VALUE`; booleans also as `--flag` / `--no-flag`; list fields
    repeat (`--env A --env B`) or take a comma-separated value.
    """
    types_ = _field_types()
    values: dict[str, Any] = {}
    config_file = None
    flags: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--"):
            switch = flags[-1][0] if flags and i > 0 and args[i - 1].startswith("--") and "=" not in args[i - 1] else None
            if switch is not None and _base_type(types_[switch])[0] is bool:
                flag = _flag(switch)
                raise ArenaError(f"--{flag} is a switch and takes no value: --{flag} or --no-{flag} "
                                 f"(or --{flag}=true / --{flag}=false), not {word!r}")
            raise ArenaError(f"unexpected argument {word!r}; every train setting is a --flag (see `arena train --help`)")
        name, eq, inline = word[2:].partition("=")
        if name == "config":
            if not eq:
                i += 1
                if i >= len(args):
                    raise ArenaError("--config needs a file")
                inline = args[i]
            config_file = inline
            i += 1
            continue
        negated = name.startswith("no-") and name[3:].replace("-", "_") in types_
        key = _key(name[3:] if negated else name, "flag")
        base, _ = _base_type(types_[key])
        # --no-grpo-scale is "none"; a bare --grpo-scale "group", as when the field was a bool
        bare = key == "grpo_scale" and (negated or i + 1 >= len(args) or args[i + 1].startswith("--"))
        if (base is bool or bare) and not eq:
            flags.append((key, "false" if negated else "true"))
            i += 1
            continue
        if not eq:
            i += 1
            if i >= len(args) or (args[i].startswith("--") and len(args[i]) > 2):
                raise ArenaError(f"--{name} needs a value")
            inline = args[i]
        flags.append((key, inline))
        i += 1
    given_file = load_yaml(config_file) if config_file is not None else {}
    resume = dict(flags).get("resume") or given_file.get("resume")
    base = run_config(resume) if resume else None
    if resume and base is None and config_file is None:
        command = _run_command(Path(resume))
        if command not in (None, "train"):
            raise ArenaError(f"{resume} holds a run of `arena {command}`, not a training run: nothing to resume "
                             "(train a new run with --out)")
    if resume and base is None and config_file is None and (Path(resume) / "checkpoints").is_dir():
        # else the run went on with every default (128 episodes a step where it had trained on 8),
        # and config.yaml was written again with them
        raise ArenaError(f"{resume} has no config.yaml and no readable run.json: the run's settings are lost; give "
                         "them with --config FILE (a copy of its config.yaml) to resume it")
    before_entropy_schedule = False
    if base is not None:  # a resumed run goes on with its own settings, changed by the file and flags given
        before_entropy_schedule = "entropy_hold" not in base
        values.update({**RUN_FIELDS_ADDED, **base})
    values.update(given_file)
    lists: dict[str, list[Any]] = {}
    for key, raw in flags:
        base, _ = _base_type(types_[key])
        if typing.get_origin(base) is list:
            parts = [p for p in str(raw).split(",") if p.strip()]
            lists.setdefault(key, []).extend(_coerce(key, types_[key], [p.strip() for p in parts]))
        else:
            values[key] = _coerce(key, types_[key], raw)
    values.update(lists)
    given = dict(flags)
    if resume and "out" in given and Path(given["out"]).resolve() != Path(resume).resolve():
        raise ArenaError(f"--out {given['out']} with --resume {resume}: a resumed run stays in its own folder; "
                         "drop --out (to continue it elsewhere, copy the folder and resume the copy)")
    config = TrainConfig(**values)
    if before_entropy_schedule and config.entropy_coef_final is None:
        config.entropy_coef_final = config.resolved_entropy_coef() / 10  # the default then
    return config
