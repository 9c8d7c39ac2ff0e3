"""Checking a torch device name before a model loads.

torch says nothing useful about a device it cannot use until a tensor moves there: `cuda` on
a machine without one ends in `AssertionError: Torch not compiled with CUDA enabled` deep in
`model.to`, and a misspelt name in `RuntimeError: Expected one of cpu, cuda, ...`. The
commands that take `--device` (or read `ARENA_DEVICE`) call `check_device` first, so the
mistake is one line naming the fix.
"""

from __future__ import annotations

from arena.errors import ArenaError


def check_device(name: str, flag: str = "--device") -> str:
    """Return `name` (e.g. `cpu`, `cuda`, `cuda:1`, `mps`) when this machine can use it;
    otherwise raise `ArenaError` saying why, in terms of `flag` (the option, such as
    `--device`, or the environment variable, such as `ARENA_DEVICE`, that gave the name),
    and what to use instead."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ArenaError(f"{_given(flag, repr(name))} is not a torch device: use {_given(flag, 'cpu')} or "
                         f"{_given(flag, 'cuda')} (cuda:N for one GPU)") from None
    if device.type == "cuda":
        _check_cuda(name, flag, device.index)
    elif not _available(device.type):
        raise ArenaError(f"{_given(flag, name)}: no {device.type} device here; use {_given(flag, 'cpu')}")
    return name


def _available(kind: str) -> bool:
    """Whether torch can use devices of `kind` here; True for kinds it cannot tell about
    (cpu, meta): torch's own error then stays the word."""
    import torch

    backend = getattr(torch, kind, None) or getattr(torch.backends, kind, None)
    is_available = getattr(backend, "is_available", None)
    return not callable(is_available) or bool(is_available())


def _check_cuda(name: str, flag: str, index: int | None) -> None:
    import torch

    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "torch finds no GPU"
        raise ArenaError(f"{_given(flag, name)}: no CUDA device here ({why}); use {_given(flag, 'cpu')}")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise ArenaError(f"{_given(flag, name)}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; "
                         f"use one of those or {_given(flag, 'cpu')}")


def _given(flag: str, value: str) -> str:
    """How the user writes `value` for `flag`: `--device cuda`, or `ARENA_DEVICE=cuda`."""
    return f"{flag} {value}" if flag.startswith("-") else f"{flag}={value}"
