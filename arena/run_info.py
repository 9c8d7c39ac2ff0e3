"""A run folder's description and checkpoints: `run.json` and `checkpoints/checkpoint-N`.

`RUN_DIR/run.json` describes a run: the latest call's arguments at top level, `calls`
(one entry per `arena play` / train call: its arguments, mode, first episode index, requested
and completed episodes, status), `status` (`running`, `complete`, `interrupted`, `failed`)
and `episodes_completed` (records in the episodes file). It is replaced atomically on every
change. A training run's checkpoints hold arena's own state (`STATE_FILE`) beside TRL's;
`last_checkpoint` finds the newest complete one; `refuse_existing_run` keeps a new
run out of a folder that holds one. The episodes, and `open_run` that prepares
a folder for writing them, are `arena.store`, which re-exports these names.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from arena.episode import _finite
from arena.errors import ArenaError
from arena.records import count_lines

RUN_FILE = "run.json"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "arena_state.json"
"""arena's part of a training checkpoint (`SelfPlayTrainer.arena_state`): RAE baselines,
rollouts and episodes played, RNG state, elapsed time. A checkpoint without it is incomplete."""
ENV_STATE_DIR = "env-state"
"""Where envs keep state that lasts a run (`ArenaEnv.run_kwargs`: AZR's task buffer), as
append-only files; a checkpoint records their sizes, a resumed run cuts them back."""
TRAINING_FILES = ("model", "model.tmp", RUN_FILE, "metrics.csv", "eval.jsonl", CHECKPOINTS_DIR, "tensorboard", "plots",
                  ENV_STATE_DIR)
"""What a training run writes in its folder (`arena.training`), besides config.yaml and
episodes.jsonl: a new run refuses a folder holding any of them (but an empty folder), which
it would replace (model/ was deleted whole), overwrite (run.json) or append to (metrics.csv,
eval.jsonl)."""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def write_run_info(run_dir: str | os.PathLike[str], info: dict[str, Any]) -> None:
    """Replace run.json atomically (write a temporary file, then rename)."""
    path = Path(run_dir) / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.{os.getpid()}.tmp")
    text = json.dumps(_finite(info), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise ArenaError(f"cannot write {path}: {exc.strerror or exc}") from None


def update_run_info(run_dir: str | os.PathLike[str], *, call: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into run.json's top level and `call` into its latest `calls` entry,
    atomically; returns the new contents."""
    info = read_run_info(run_dir)
    info.update(fields)
    if call:
        calls = list(info.get("calls") or [{}])
        calls[-1] = {**calls[-1], **call}
        info["calls"] = calls
    write_run_info(run_dir, info)
    return info


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """run.json as a dict ({} when the run has none)."""
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        return {}
    # the fix named is never --overwrite, which deletes the run's episodes with it
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ArenaError(f"{path} is not a readable run description ({reason}): repair it, or move it aside and run "
                         "again") from None
    if not isinstance(info, dict):
        raise ArenaError(f"{path} is not a run description (a JSON {type(info).__name__}): repair it, or move it "
                         "aside and run again")
    return info


def checkpoint_step(ckpt: str | Path) -> int | None:
    """The step of a `checkpoint-N` folder, or None for another name."""
    tail = Path(ckpt).name.rsplit("-", 1)[-1]
    return int(tail) if Path(ckpt).name.startswith("checkpoint-") and tail.isdigit() else None


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoints of a training run that hold arena's state (a kill during a save
    leaves one without it, which is skipped), oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    done = [p for p in root.glob("checkpoint-*") if checkpoint_step(p) is not None and (p / STATE_FILE).exists()]
    return sorted(done, key=checkpoint_step)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a training run (`complete_checkpoints`)."""
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def resume_checkpoint(run_dir: str | Path, steps: int) -> Path:
    """The checkpoint `arena train --resume RUN --steps N` continues from; one line naming
    the fix when there is none, or nothing left to train."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArenaError(f"--resume {run_dir}: no such run folder")
    ckpt = last_checkpoint(run_dir)
    if ckpt is None:
        raise ArenaError(f"--resume {run_dir}: no complete checkpoint in {run_dir / CHECKPOINTS_DIR}; start a new run instead")
    done = checkpoint_step(ckpt)
    if done >= steps:  # TRL would train one step past the end
        raise ArenaError(f"--resume {run_dir}: its last checkpoint is step {done} and --steps is {steps}, "
                         f"so there is nothing to train; give --steps N with N > {done} to train further")
    return ckpt


# -- the model of a run -------------------------------------------------------------------
def has_model(folder: str | Path) -> bool:
    """A full model (config.json) or a LoRA adapter (adapter_config.json, loaded onto its base)."""
    folder = Path(folder)
    return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()


def is_training_run(folder: str | Path) -> bool:
    """A folder written by `arena train` (it has the run's config.yaml)."""
    return (Path(folder) / "config.yaml").is_file()


def run_of(path: str | Path) -> Path | None:
    """The training run a model folder belongs to (RUN/model, RUN/checkpoints/checkpoint-N), or None."""
    path = Path(path)
    for parent in (path.parent, path.parent.parent):
        if is_training_run(parent):
            return parent
    return None


def newest_model(run: str | Path) -> Path:
    """A training run's final model (RUN/model), else the model of its newest complete
    checkpoint (`complete_checkpoints`: one being saved, or whose save a kill cut, has its
    config.json before its weights are whole, and once loaded half a safetensors file).
    The final model is the newest only once run.json says the run is complete: one trained
    further holds the earlier session's while it trains, or after it stopped."""
    run = Path(run)
    final = run / "model"
    try:
        status = read_run_info(run).get("status")
    except ArenaError:
        status = None
    ckpts = [p for p in complete_checkpoints(run) if has_model(p)]
    # a finished run trained further and stopped (or still training) keeps the earlier final
    # model: its newest checkpoint is newer (`arena eval RUN` evaluated step 10 of 48)
    if has_model(final) and (status in ("complete", None) or not ckpts):
        return final
    if not ckpts:
        if status in ("interrupted", "failed"):  # `arena train --out RUN` refuses it: never suggest that
            raise ArenaError(f"{run} holds no model: the run was {status} before its first checkpoint; train a new "
                             "run with another --out")
        raise ArenaError(f"{run} holds no model yet (no {final}, no complete checkpoint with a model): wait for its "
                         "first checkpoint (--save-every)")
    return ckpts[-1]


def run_decoding(run: str | Path) -> dict[str, Any]:
    """How a training run's model decoded while it trained, the default wherever the run's
    model plays again (`arena eval RUN`, the agent `hf:RUN`): `constrain` (the run's setting,
    else as `TrainConfig.resolved_constrain` decided it: on for the tiny model or a model
    from a run that had it on), `temperature`, `top_p`, `top_k`, `min_p`, `max_new_tokens` and
    `chat_template_kwargs`."""
    from arena.config import TrainConfig
    from arena.flags import load_yaml

    cfg = load_yaml(Path(run) / "config.yaml")
    fields = {k: cfg[k] for k in ("model", "constrain") if k in cfg}
    return {
        "constrain": TrainConfig(**fields).resolved_constrain(),
        "temperature": float(cfg.get("temperature", 1.0)),
        "top_p": float(cfg.get("top_p", 1.0)),
        "top_k": int(cfg.get("top_k", 0)),
        "min_p": float(cfg.get("min_p", 0.0)),
        "max_new_tokens": int(cfg.get("max_new_tokens", 64)),
        "chat_template_kwargs": dict(cfg.get("chat_template_kwargs") or {}),
    }


def file_in_the_way(folder: Path) -> Path | None:
    """The file standing at `folder` or at the nearest existing folder above it (None when
    `folder` is one, or can be made one)."""
    nearest = next((p for p in (folder, *folder.parents) if p.exists()), None)
    return nearest if nearest is not None and not nearest.is_dir() else None


def check_run_folder(run_dir: Path) -> None:
    """`run_dir` is a folder, or can be made one: no file stands at it or above it."""
    path = file_in_the_way(run_dir)
    if path is not None:
        what = "a run folder" if path == run_dir else "a folder"
        raise ArenaError(f"{path} is a file, not {what}: choose another --out")


def no_checkpoint(run_dir: Path) -> str:
    """The end of the line for a run with no checkpoint to resume from: how it came to have
    none, and a fix that loses nothing without saying so (its episodes, if it wrote any)."""
    try:
        info = read_run_info(run_dir)
    except ArenaError:
        info = {}
    step, every = info.get("step"), (info.get("config") or {}).get("save_every")
    # it had saved one: every save_every steps, and at the end of a run that finished
    saved = isinstance(step, int) and step > 0 and (
        info.get("status") == "complete" or (isinstance(every, int) and 0 < every <= step))
    why = "whose checkpoints are gone" if saved else "that stopped before its first checkpoint"
    try:
        episodes = count_lines(run_dir / "episodes.jsonl")
    except OSError:
        episodes = 0
    keep = f" (removing it deletes its {episodes} episodes)" if episodes else ""
    return f"{why}, so there is nothing to resume: train with another --out, or remove {run_dir} first{keep}"


def _holds_something(path: Path) -> bool:
    """A file, or a folder with anything in it (transformers' `Trainer` makes an empty
    checkpoints/ when it is built: a start that failed after it left one)."""
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def run_around(path: Path) -> Path | None:
    """The training run folder (one holding config.yaml and run.json) that `path` lies
    inside, if any: its resume replaces its model/ whole, and writes its other folders."""
    for parent in Path(path).resolve().parents:
        if (parent / RUN_FILE).is_file() and (parent / "config.yaml").is_file():
            return parent
    return None


def refuse_existing_run(run_dir: Path, *, locked: bool = False) -> None:
    """A new run never writes into a folder that holds one (`--resume` continues it); one
    line naming a fix that works for what the folder holds. A folder another command
    writes now (its lock, `arena.store.lock_run`) is said to be so, before its contents
    are read: a run training before its first checkpoint was said to have "stopped", to be
    removed. `locked`: the caller holds that lock itself."""
    check_run_folder(run_dir)
    if not locked and run_dir.is_dir():
        from arena.store import lock_run

        os.close(lock_run(run_dir))
    outer = run_around(run_dir)
    if outer is not None:  # its resume replaced model/ whole, with the new run in it
        raise ArenaError(f"{run_dir} is inside the run folder {outer}, which writes there: choose an --out outside it")
    if not ((run_dir / "episodes.jsonl").exists() or (run_dir / "config.yaml").exists()):
        taken = [name for name in TRAINING_FILES if _holds_something(run_dir / name)]
        if taken:
            raise ArenaError(f"{run_dir} holds {', '.join(taken)}, which a training run writes: choose another --out "
                             "(a new or empty folder)")
        return
    if not (run_dir / "config.yaml").exists():
        raise ArenaError(f"{run_dir} already holds episodes of another command (no config.yaml: not a training run); "
                         "choose another --out")
    if not (run_dir / "episodes.jsonl").exists() and not (run_dir / RUN_FILE).exists():
        # a folder of the user's own that holds a config.yaml: no run to remove or resume
        raise ArenaError(f"{run_dir} holds a config.yaml but no run (no run.json, no episodes.jsonl): choose another "
                         "--out (a new or empty folder)")
    if last_checkpoint(run_dir) is None:  # --resume has nothing to continue from: never suggest it
        raise ArenaError(f"{run_dir} holds a run {no_checkpoint(run_dir)}")
    raise ArenaError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose another --out")
