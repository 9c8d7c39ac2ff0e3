"""Loading a model agent: `--model`, `--opponent`, `hf:` and `vllm:` specs to weights.

`load_model(spec)` takes `tiny` (the embedded model, built locally), a training run (its
final model, else its newest checkpoint's), a folder written by `save_pretrained` (a LoRA
run's adapter folder loads onto its base model, merged), or a Hub id, and loads it through
`from_pretrained`. Without network a Hub id is one line naming `tiny` or a local folder as
the flag in use writes them, in seconds (a connection check first, not the Hub client's
minute of retries). `agent_decoding` is how a loaded model decodes by default: as its
training run did, or constrained for the tiny model only; `decoding_options` reads a spec's
own (`hf:PATH:temperature=0`), which win.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arena.errors import ArenaError
from arena.run_info import has_model, is_training_run, newest_model, run_decoding, run_of

from .options import convert_options, peel_options


def resolve_model(spec: str) -> str:
    """`tiny` -> the cached tiny model folder; a training run (`arena train --out RUN`) -> its
    final model, else its newest checkpoint's; a local folder -> itself; else a Hub id."""
    if spec in ("tiny", "hf:tiny"):
        from .tiny import tiny_model_path

        return str(tiny_model_path())
    path = spec.removeprefix("hf:")
    if is_training_run(Path(path).expanduser()):
        return str(newest_model(Path(path).expanduser()))
    return path


#: Weights below this many bytes load without transformers' "Loading weights" bar.
QUIET_LOAD_BYTES = 100 << 20


@contextlib.contextmanager
def _load_bar(folder: Path) -> Iterator[None]:
    """transformers' "Loading weights" bar for a model worth waiting for, not for a local one
    of under `QUIET_LOAD_BYTES` (the tiny model loads in a blink: its bar opened the output
    of every command that plays or trains it)."""
    from transformers.utils import logging as hf_logging

    small = folder.is_dir() and sum(f.stat().st_size for f in folder.glob("*.safetensors")) < QUIET_LOAD_BYTES
    shown = hf_logging.is_progress_bar_enabled()
    if small and shown:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if small and shown:
            hf_logging.enable_progress_bar()


def is_inline_template(value: str) -> bool:
    """Whether a `--chat-template` value is a Jinja template itself (`{{ ... }}`, `{% ... %}`)."""
    return "{{" in value or "{%" in value


def read_chat_template(value: str, flag: str = "--chat-template") -> str:
    """The template `--chat-template` names: `chatml` (the tiny model's ChatML, which suits any
    tokenizer: `arena.agents.tiny.CHAT_TEMPLATE`), a Jinja file's text, or the template
    itself (`is_inline_template`: a YAML config may hold it)."""
    if value == "chatml":
        from .tiny import CHAT_TEMPLATE

        return CHAT_TEMPLATE
    if is_inline_template(value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ArenaError(f"{flag} takes chatml, a Jinja file or a template; no such file: {value}")
    text = path.read_text()
    if not text.strip():
        raise ArenaError(f"{flag} {value}: the file is empty; give a Jinja chat template, or chatml")
    return text


def _looks_like_path(spec: str) -> bool:
    """A folder the user meant (`/x`, `./x`, `~/x`, `runs/a/model`), not a Hub id `org/name`."""
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or spec.endswith("/") or "\\" in spec


def load_model(spec: str, *, dtype: Any = None, device: str | None = None, flag: str = "--model",
               chat_template: str | None = None, generation_only: bool = False):
    """Load `(model, tokenizer)` through `from_pretrained`.

    `spec` is `tiny`, a training run (its newest model), a local folder, or a Hub id. A Hub
    id that cannot be fetched (no network here) is a one-line `ArenaError` naming `tiny` or a
    local path as `flag` takes them (`--model tiny`; `hf:PATH` for the agent, flag "hf:";
    `arena eval tiny`). `chat_template` (`read_chat_template`: `chatml`, a Jinja file or a template) is
    set on the tokenizer in place of its own: a base model without one then loads, and the
    trainer saves it with the model. Nothing is written to the model's folder.

    `generation_only`: the model only generates (`arena eval`, an `hf:` agent, a fixed
    opponent). On a CUDA device the `hf` agent generates in bf16 (the static-cache path), so
    the weights are cast to bf16 tensor by tensor on their way there, after loading (and an
    adapter's merge) in `dtype` as for training: the agent then lends them to its generation
    module, and one bf16 set sits in GPU memory instead of fp32 weights beside a bf16 copy
    (a third of the memory; the same tokens and log-probs, the cast being the copy's own).
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    local = Path(path).expanduser()
    adapter = local.is_dir() and (local / "adapter_config.json").exists() and not (local / "config.json").exists()
    if local.exists() and not adapter and not (local / "config.json").exists():
        raise ArenaError(f"{path} has no config.json: give a folder written by save_pretrained or `arena train`, "
                         f"a Hub id, or {_named(flag, 'tiny')}")
    if not local.exists():
        if _looks_like_path(path):
            takes = (f"{flag} takes tiny, a folder written by save_pretrained or `arena train`, or a Hub id ORG/NAME"
                     if not flag.endswith(":") else f"give {_named(flag, 'tiny')}, {flag}FOLDER written by "
                     f"save_pretrained or `arena train`, or {flag}ORG/NAME for a Hub id")
            raise ArenaError(f"no such model folder: {path} ({takes})")
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(path)
        except HFValidationError:
            raise ArenaError(f"{path!r} is neither a folder here nor a Hub id (ORG/NAME of letters, digits, "
                             "'-', '_', '.'): give tiny, a folder written by save_pretrained, or a Hub id") from None
        _check_hub_reachable(path, flag=flag)
    # trust_remote_code=False, always: a model whose config maps to code in its own repository
    # (`auto_map`) is refused, never run (transformers' default, None, asks on a terminal)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else path, trust_remote_code=False)
        with _load_bar(local):
            if adapter:  # a LoRA run's model/: the adapter on its base model, merged
                model = _load_adapter(local, dtype or torch.float32)
            else:
                model = AutoModelForCausalLM.from_pretrained(str(local) if local.exists() else path,
                                                             dtype=dtype or torch.float32, trust_remote_code=False)
    except (OSError, ValueError, SafetensorError) as exc:  # ValueError: huggingface_hub's HFValidationError
        # of a bad repo id; SafetensorError: a weights file cut short
        if "trust_remote_code" in str(exc):
            raise ArenaError(f"{spec!r} needs code from its own repository to load (`auto_map` in its config), and "
                             "arena runs no model's code: use a model of an architecture transformers has (Qwen, "
                             "Llama, ...)") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fix = _damaged_fix(local) if local.exists() else _offline_fix(flag)  # a folder here needs no network
        raise ArenaError(f"cannot load model {spec!r} ({first[:160]}): {fix}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        tokenizer.chat_template = read_chat_template(chat_template)
    if tokenizer.chat_template is None:
        if flag in ("--model", "--opponent", "arena eval"):  # the commands with a --chat-template flag
            fix = "give it one with --chat-template chatml (ChatML suits any tokenizer) or --chat-template FILE.jinja"
        else:
            where = f"{local}/tokenizer_config.json" if local.exists() else "the tokenizer_config.json of a local copy"
            fix = (f"give a base model one as `chat_template` in {where} (ChatML, arena.agents.tiny.CHAT_TEMPLATE, "
                   "suits any tokenizer), or train it with `arena train --chat-template chatml`")
        raise ArenaError(f"the tokenizer of {spec!r} has no chat template (arena prompts are chat messages): use a "
                         f"chat model, or {fix}")
    if device and generation_only and str(device).startswith("cuda"):
        from arena.weights import bf16_parameters

        bf16_parameters(model.to(device))  # the rotary frequencies stay fp32, as a bf16 load keeps them
    elif device:
        model.to(device)
    return model, tokenizer


def _named(flag: str, value: str) -> str:
    """How the user writes `value` for `flag`: `--model tiny`, `hf:PATH` (the agent), `tiny`."""
    if flag in ("hf:", "vllm:"):  # agent specs
        return ("tiny" if flag == "hf:" else "vllm:tiny") if value == "tiny" else f"{flag}{value}"
    return f"{flag} {value}"


def _damaged_fix(local: Path) -> str:
    return (f"a file in {local} is damaged or unreadable (an empty or cut-short model.safetensors?): save or train "
            "the model again, or restore the folder from a copy")


def _offline_fix(flag: str) -> str:
    scripted = " (or a scripted agent: --opponent random, --opponent heuristic)" if flag == "--opponent" else ""
    return (f"without network use {_named(flag, 'tiny')} or {_named(flag, 'PATH')} to a local folder written by "
            f"save_pretrained or `arena train`{scripted}")


def _check_hub_reachable(spec: str, timeout: float = 3.0, flag: str = "--model") -> None:
    """Fail in seconds, not after the Hub client's minute of retries, when the Hub cannot be
    reached (a model already in the local Hub cache, or `HF_HUB_OFFLINE=1`, still loads)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError as exc:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return  # cached: from_pretrained finds it offline
        raise ArenaError(f"cannot load model {spec!r}: the Hub ({url.hostname}) is unreachable ({exc.strerror or exc}); "
                         f"{_offline_fix(flag)}") from None


def _load_adapter(folder: Path, dtype: Any):
    """A PEFT adapter folder as a plain model: its base (`base_model_name_or_path`) with the
    adapter merged in (`merge_and_unload`), so generation runs at full speed."""
    try:
        from peft import PeftModel
    except ImportError:
        raise ArenaError(f"{folder} holds a LoRA adapter: loading it needs peft (pip install peft)") from None
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(adapter_base(folder), dtype=dtype, trust_remote_code=False)
    model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    model.arena_adapter = str(folder)  # its `name_or_path` is the base's folder: the vllm agent must not load that
    return model


def adapter_base(folder: Path) -> str:
    """The base model of the adapter in `folder`: its `base_model_name_or_path`, a Hub id or
    the absolute folder it was trained on. A run trained on `--model tiny` names the tiny
    model's cache folder on the machine that trained it; on another machine (or with another
    cache dir) the same tiny model, the same recipe's fingerprint in its folder name, is
    built here instead. Another folder that is not here is one line naming it."""
    import json

    from .tiny import _fingerprint, tiny_model_path

    try:
        base = str(json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArenaError(f"{folder}/adapter_config.json does not name the adapter's base model "
                         f"(base_model_name_or_path): {exc}; save the adapter again with peft") from None
    where = Path(base).expanduser()
    if not where.is_absolute() or where.exists():
        return base
    if where.name == f"tiny-{_fingerprint()}":
        return str(tiny_model_path())
    tiny = " (a tiny model of another arena version: train it again here)" if where.name.startswith("tiny-") else ""
    raise ArenaError(f"{folder} is a LoRA adapter on the base model {base}, which is not on this machine{tiny}: "
                     f"copy that model there, or set base_model_name_or_path in {folder / 'adapter_config.json'} "
                     "to where it is")


#: `:KEY=VALUE` options of the `tiny`, `hf:` and `vllm:` specs (`arena.agents.options`).
DECODING_OPTIONS: dict[str, type] = {"constrain": bool, "temperature": float, "top_p": float, "top_k": int,
                                     "min_p": float, "max_tokens": int, "name": str, "enable_thinking": bool}


def decoding_options(spec: str, agent: str) -> tuple[str, dict[str, Any]]:
    """`hf:PATH:temperature=0:max_tokens=16` -> (`hf:PATH`, the policy's keyword arguments:
    `constrain`, `temperature`, `top_p`, `top_k`, `min_p`, `max_new_tokens`, `name`, and
    `enable_thinking=no` as `chat_template_kwargs`). They override what `agent_decoding` would
    give (a run's own decoding; `agent_kwargs`)."""
    target, raw = peel_options(spec.strip())
    example = f"{agent}{'' if agent == 'tiny' else ':PATH'}:temperature=0:constrain=yes"
    options = convert_options(agent, raw, DECODING_OPTIONS, example)
    if "max_tokens" in options:
        options["max_new_tokens"] = options.pop("max_tokens")  # checked by the policy, as the others
    if "enable_thinking" in options:  # the chat template's switch (Qwen3's and others')
        options["chat_template_kwargs"] = {"enable_thinking": options.pop("enable_thinking")}
    return target, options


def agent_kwargs(target: str, options: dict[str, Any]) -> dict[str, Any]:
    """A model agent's policy arguments: its spec's `options` (`decoding_options`) over its
    default decoding (`agent_decoding`: a run's own), the chat template's arguments merged."""
    decoding = agent_decoding(target)
    merged = {**decoding, **options}
    if "chat_template_kwargs" in options:
        merged["chat_template_kwargs"] = {**(decoding.get("chat_template_kwargs") or {}),
                                          **options["chat_template_kwargs"]}
    return merged


def agent_decoding(target: str) -> dict[str, Any]:
    """A model agent's default decoding: a training run's (`run_decoding`) when `target` is
    a run or a model folder inside one, else the constraint for the tiny model only."""
    path = Path(target).expanduser()
    run = path if is_training_run(path) else run_of(path) if target != "tiny" and has_model(path) else None
    return run_decoding(run) if run is not None else {"constrain": target == "tiny"}
