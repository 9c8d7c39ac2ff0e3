"""arena's part of a training checkpoint, as a mixin of `SelfPlayTrainer`.

transformers' `Trainer` saves the model, optimizer, scheduler and RNG states; arena adds
what self-play needs to go on exactly where it stopped (`arena_state`, written as
`arena_state.json` with TRL's checkpoint, Ctrl-C held until both are written, and read
back by `arena.training.train` on `--resume`): the step, the rollouts played (the episode store's
offset), the RAE baselines, the wall-clock time so far, the policy's sampling RNG, the
empty-step counters and the sizes of the files envs keep in the run's `env-state/`; with
`--sync-ref-model` the moved KL reference (`save_reference`), which TRL's own checkpoint
leaves out; and the learning rate of the schedule a resumed session runs
(`_load_optimizer_and_scheduler`).
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from arena.errors import ArenaError, interrupts_held
from arena.resume import env_state_sizes
from arena.run_info import (
    STATE_FILE,
    checkpoint_step,
    complete_checkpoints,
    last_checkpoint,
    no_checkpoint,
    resume_checkpoint,
)

REF_MODEL_FILE = "ref_model.safetensors"  # the moved KL reference, in a checkpoint of a --sync-ref-model run


class CheckpointState:
    """Checkpoint state of `SelfPlayTrainer` (which supplies `state`, `policy`, `config`,
    `rollouts`, `baselines`, the timers, `ref_model`, `accelerator` and `lr_scheduler`)."""

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """transformers' loading, then this session's hyperparameters and the learning rate
        of the schedule it runs.

        transformers' loading restores the optimizer's parameter groups and the scheduler's
        base rates as the checkpoint saved them, so `--resume RUN --learning-rate X` (or
        `--weight-decay`, `--adam-beta1`, ...) trained on at the old values while config.yaml
        said X. The groups' hyperparameters (all but the rate) and the base rates are now
        this session's, as its optimizer was built from its config; the optimizer's states
        (moments, step counts) are the checkpoint's. Unchanged flags change nothing.

        The optimizer's saved rate is what the checkpoint's schedule set for its next step:
        0 at the end of a finished run with the default linear (or cosine) schedule, so a run
        trained further with a larger `--steps` took its first new step at rate 0. The
        schedule itself (a `LambdaLR`) is rebuilt for this session's steps; its rate at the
        checkpoint's step replaces the saved one. A run resumed with its own steps and rate
        gets the rate it saved, unchanged."""
        optimizer = self.optimizer
        scheduler = self.lr_scheduler
        built = [{k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
                 for group in optimizer.param_groups]
        base_lrs = list(getattr(scheduler, "base_lrs", []))
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        for group, hyper in zip(optimizer.param_groups, built, strict=True):
            group.update(hyper)
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            return
        scheduler.base_lrs = base_lrs
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["initial_lr"] = base
        rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
        for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates  # what `get_last_lr()` (and the step's logged rate) reads

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """TRL's checkpoint, then arena's state in it (`save_arena_state`), with Ctrl-C and
        SIGTERM held until both are written (`interrupts_held`): a run interrupted while it
        wrote a checkpoint lost it (a checkpoint without arena's state is not one), and one
        interrupted during its last had none to resume or evaluate from."""
        with interrupts_held(f"writing checkpoint-{self.state.global_step}"):
            super()._save_checkpoint(model, trial)
            self.save_arena_state(Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}")

    def save_arena_state(self, ckpt: Path) -> None:
        """arena's state (`arena_state`) into checkpoint `ckpt`, and the moved KL reference
        (`save_reference`) before it: the state file marks the checkpoint complete. By process
        0 (every process holds the same state, `arena.data_parallel`)."""
        if self.is_world_process_zero() and ckpt.is_dir():
            self.save_reference(ckpt)
            tmp = ckpt / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(self.arena_state(), indent=1))
            os.replace(tmp, ckpt / STATE_FILE)

    def arena_state(self) -> dict[str, Any]:
        get_rng = getattr(self.policy, "get_rng_state", None)
        return {
            "step": self.state.global_step,
            "rollouts": self.rollouts,
            "episodes_written": self.episodes_written,
            "baselines": dict(self.baselines),
            "elapsed_seconds": self.elapsed_before + time.monotonic() - self.session_start,
            "policy_rng": get_rng() if get_rng is not None else None,
            "empty_steps": [self.empty_steps, self.empty_total],
            "env_state": env_state_sizes(self.run_dir),  # what a resume cuts env-state/ back to
        }

    def save_reference(self, ckpt: Path) -> None:
        """With `--sync-ref-model` the KL reference is not the starting model but has moved
        with the policy, and TRL's checkpoint leaves it out (its `Trainer` saves only the
        policy): saved beside it, so a resumed run's KL term is the one it had."""
        if self.args.sync_ref_model and self.ref_model is not None:
            from safetensors.torch import save_model

            tmp = ckpt / (REF_MODEL_FILE + ".tmp")
            save_model(self.accelerator.unwrap_model(self.ref_model), str(tmp))  # tied weights saved once
            os.replace(tmp, ckpt / REF_MODEL_FILE)

    def load_reference(self, ckpt: Path) -> None:
        """The reference `save_reference` wrote, when the checkpoint has one (a run that turns
        `--sync-ref-model` on at resume starts its reference from the starting model)."""
        path = ckpt / REF_MODEL_FILE
        if self.args.sync_ref_model and self.ref_model is not None and path.is_file():
            from safetensors.torch import load_model

            load_model(self.accelerator.unwrap_model(self.ref_model), str(path), device=str(self.accelerator.device))

    def load_arena_state(self, state: dict[str, Any]) -> None:
        self.rollouts = int(state["rollouts"])
        self.episodes_written = int(state["episodes_written"])
        self.baselines = {k: float(v) for k, v in state["baselines"].items()}
        self.elapsed_before = float(state.get("elapsed_seconds", 0.0))
        self.empty_steps, self.empty_total = state.get("empty_steps", [0, 0])
        self.session_start = time.monotonic()
        if state.get("policy_rng") and hasattr(self.policy, "set_rng_state"):
            self.policy.set_rng_state(state["policy_rng"])


# -- the checkpoint `--resume` continues from ------------------------------------------------
def resume_point(run_dir: str | Path, steps: int) -> tuple[Path, dict[str, Any]]:
    """The checkpoint `arena train --resume RUN --steps N` continues from and arena's state
    in it, each file checked readable first: one line naming the fix otherwise (a damaged
    file is named, never skipped over to an older checkpoint)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ArenaError(f"--resume {run_dir}: {run_dir} is a file, not a run folder")
    if run_dir.is_dir() and last_checkpoint(run_dir) is None and (run_dir / "config.yaml").is_file():
        raise ArenaError(f"--resume {run_dir}: a run {no_checkpoint(run_dir)}")
    ckpt = resume_checkpoint(run_dir, steps)
    return ckpt, check_checkpoint(ckpt)


def check_checkpoint(ckpt: Path) -> dict[str, Any]:
    """arena's state of `ckpt`, once every file of it that can be checked without loading
    it reads (JSON parses, safetensors headers cover their files, torch's zip files end);
    else one line naming the file and the older checkpoint to resume from, if any."""
    for path in sorted(ckpt.iterdir()):
        problem = _damage(path)
        if problem:
            raise damaged(path, problem)
    state = json.loads((ckpt / STATE_FILE).read_text())
    if not isinstance(state, dict) or not isinstance(state.get("episodes_written"), int):
        raise damaged(ckpt / STATE_FILE, "no episodes_written count")
    return state


def damaged(path: Path, problem: str) -> ArenaError:
    """The one line for a damaged file of a checkpoint: which, why, and the fix (the older
    checkpoint to resume from, if any: never taken without the user's word)."""
    return ArenaError(f"{path} is damaged ({problem}): {_without(path.parent)}")


def _damage(path: Path) -> str | None:
    """What is wrong with one file of a checkpoint, or None when it reads (or is not checked)."""
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        return "empty"
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
            return str(exc).splitlines()[0]
    elif path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt"):
                pass
        except Exception as exc:  # noqa: BLE001  (SafetensorError and OSError alike: the file does not read)
            return str(exc).splitlines()[0]
    elif path.suffix in (".pt", ".pth", ".bin"):
        with open(path, "rb") as f:
            zipped = f.read(2) == b"PK"  # torch's files are zip archives; an older pickle format is not checked
        if zipped and not zipfile.is_zipfile(path):
            return "cut short: the zip archive has no end"
    return None


def _without(ckpt: Path) -> str:
    """The fix for a damaged `ckpt`: the newest complete checkpoint before it, if any."""
    step = checkpoint_step(ckpt)
    older = [p for p in complete_checkpoints(ckpt.parent.parent) if checkpoint_step(p) < step]
    if older:
        return f"remove that checkpoint ({ckpt}) to resume from {older[-1].name}"
    return (f"there is no older checkpoint in {ckpt.parent} to resume from; restore the file, or start a new run "
            "with another --out")
