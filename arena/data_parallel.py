"""Data-parallel training: `arena train` launched as several processes (`accelerate launch`,
`torchrun`), one replica of the model per process (a GPU each), as accelerate runs TRL.

Launched that way, each process used to play the whole step by itself and write it to the
run folder: every episode twice, interleaved. Now a step runs as one batch over all of them:

1. each process plays a contiguous share of the step's episodes (`split`, as Ray's actors
   do), its sampling RNG (and a fixed opponent's) restarted for each share from
   `share_seed(seed, first index)`: episode i is reset with the same seed whatever the
   number of processes, and a resumed run needs no RNG state from any of them;
2. the shares are gathered to every process in index order (`all_gather_object`), and
   process 0 alone writes them to the episode store;
3. every process scores the whole batch (advantages, RAE's baselines, the metrics: the same
   numbers on each, so the checkpoint of process 0 holds them all), then trains on its
   contiguous share of the kept samples (`share`), with the whole batch's token count as
   the loss's normaliser (TRL's `num_items_in_batch`, gathered over the processes in TRL as
   well); DDP averages the gradients, so the processes stay one model;
4. process 0 alone writes the run folder: config, `run.json`, `metrics.csv`, evaluations,
   arena's state in each checkpoint, the final model.

The hf backend only: `--backend vllm` (an engine per process) and `--ray-address` (the
rollout on Ray's actors already) are refused with a one-line error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from arena.env_state import StateMirror, apply_tail
from arena.errors import ArenaError

if TYPE_CHECKING:
    from arena.config import TrainConfig
    from arena.episode import Episode

T = TypeVar("T")


def process_count() -> int:
    """How many processes the launcher started (`WORLD_SIZE`, set by torchrun and accelerate)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_rank() -> int:
    """This process's rank among them (`RANK`); 0 without a launcher."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return process_rank() == 0


_group_up = False  # set once `DataParallel.start` brought the process group up


def said_by_process_zero(exc: BaseException) -> bool:
    """Whether another process prints this error for this one: launched as several, an error
    each process meets alike is one line, not one per process (8 on an 8-GPU node). Alike:
    anything before the process group is up (the same command line and files: a usage
    error, a bad setting, a refused launch), printed by each machine's first process
    (`LOCAL_RANK` 0: a file missing on one machine of several is still said there), and
    process 0's own failure handed to all (`DataParallel.on_main`), printed by process 0.
    Later errors may differ by process: each prints its own."""
    if process_count() <= 1:
        return False
    if getattr(exc, "every_process", False):
        return not is_main_process()
    local = int(os.environ.get("LOCAL_RANK", "") or process_rank())
    return not _group_up and local != 0


def share_of(count: int, rank: int, size: int) -> slice:
    """The contiguous share of `count` items that process `rank` of `size` takes: sizes differ
    by at most one, the first processes take the larger ones (`ray_rollout.split`'s cut)."""
    base, extra = divmod(count, size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


#: accelerate's launch settings (`accelerate config`, `--use_fsdp`, `--use_deepspeed`) that
#: shard the model, its gradients or its optimizer over the processes, by the environment
#: variable `accelerate launch` sets for each; transformers' `Trainer` would wrap the model so
SHARDING_LAUNCHES: dict[str, str] = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
                                     "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM"}


def sharded_launch() -> str | None:
    """The name of the sharding accelerate was launched with (`SHARDING_LAUNCHES`), if any."""
    return next((name for var, name in SHARDING_LAUNCHES.items()
                 if os.environ.get(var, "false").strip().lower() in ("true", "1", "yes")), None)


def check_launch(config: TrainConfig) -> None:
    """Refuse, in one line, what cannot train on the processes launched (if several), and a
    launch that shards the model (FSDP, DeepSpeed, Megatron-LM, on any number of processes):
    arena's policy generates from the whole model it holds and syncs its generation copy from
    the whole weights, which a sharded model has in no process. Refused rather than run: the
    rollout would play with one shard's weights or fail deep inside accelerate."""
    sharding = sharded_launch()
    if sharding:
        raise ArenaError(f"accelerate was launched with {sharding}, which shards the model over the processes: "
                         "arena trains a whole model per process (DDP); launch without it (`accelerate launch "
                         "--multi_gpu --num_processes N`, or torchrun), or use LoRA (--lora-r) to fit a large model")
    size = process_count()
    if size <= 1:
        return
    if config.backend != "hf":
        raise ArenaError(f"--backend {config.backend} runs in one process ({size} were launched): train "
                         "data-parallel with --backend hf, or launch one process")
    if config.ray_address:
        raise ArenaError(f"--ray-address plays the rollout on Ray's actors, from one learner process ({size} were "
                         "launched): launch one process, or leave out --ray-address")


def merge_metrics(parts: Sequence[dict[str, float]]) -> dict[str, float]:
    """One dict from each process's metrics of its share: `.../max` the largest, `.../min` the
    smallest, any other the mean over the processes that have it (shares are within one
    sample of each other, so this is close to the mean over the whole batch)."""
    out: dict[str, float] = {}
    for key in dict.fromkeys(k for part in parts for k in part):
        values = [part[key] for part in parts if key in part]
        out[key] = max(values) if key.endswith("/max") else min(values) if key.endswith("/min") else sum(values) / len(values)
    return out


class DataParallel:
    """This process's part in a data-parallel run (the module docstring); built with the
    process group up (`start`)."""

    def __init__(self, rank: int, size: int, device: str = "cpu"):
        self.rank = rank
        self.size = size
        self.device = device  # this process's own: `cuda:LOCAL_RANK` on GPUs, whatever `--device` says
        self.mirror = StateMirror()  # what the other processes hold of process 0's env state

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, config: TrainConfig) -> DataParallel | None:
        """None in a single process; else refuse what cannot run data-parallel, and bring up
        the process group as transformers' `Trainer` will (accelerate's `PartialState`: NCCL
        on CUDA, Gloo on CPU), so that the run folder is prepared before anything loads."""
        if process_count() <= 1:
            return None
        check_launch(config)
        import torch
        from accelerate import PartialState

        cuda = (config.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        state = PartialState(cpu=not cuda)
        import warnings

        # torch >= 2.13 deprecates DDP's `broadcast_buffers` (the trainer passes False, see
        # `arena.trainer`) for `forward_sync_buffers`, which transformers cannot pass yet; the
        # only difference, a sync of the buffers at wrap time, is moot here (the rotary
        # frequencies are equal in every process). One warning per process otherwise.
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        if not state.is_main_process:  # one "Loading weights" bar, not one per process
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        global _group_up
        _group_up = True
        return cls(state.process_index, state.num_processes, str(state.device))

    def finish(self) -> None:
        """After the last step, in every process: wait for the others, then take the process
        group down, before process 0 evaluates and saves the final model alone (a process
        that exited with the group up died in Gloo's threads at exit, and killed the run)."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def prepare_models(self, config: TrainConfig) -> None:
        """Build the tiny model (`--model tiny`, a `tiny` opponent) in process 0 before the
        others look for it: once the process group is up, transformers' `save_pretrained`
        writes the weights on rank 0 only, so a build elsewhere would come out empty."""
        specs = (config.model, config.opponent or "")
        if any(s in ("tiny", "hf:tiny") or s.startswith(("tiny:", "hf:tiny:")) for s in specs):
            from arena.agents.tiny import tiny_model_path

            self.on_main(tiny_model_path)

    def on_main(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` run by process 0, its result handed to every process; an `ArenaError`
        there (a run folder refused) is raised in every process, so none waits for the others."""
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.main:
            try:
                box[0] = ("ok", fn(*args))
            except ArenaError as exc:
                box[0] = ("error", str(exc))
            except BaseException:
                box[0] = ("error", "process 0 failed (its traceback above)")
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            error = ArenaError(value)
            error.every_process = True  # process 0 prints it (`said_by_process_zero`)
            raise error
        return value

    def gather(self, items: Sequence[T]) -> list[T]:
        """Every process's `items`, concatenated in rank order, on every process."""
        import torch.distributed as dist

        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, list(items))
        return [item for part in parts for item in part]

    def share(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous share of `items` (`share_of`)."""
        return list(items[share_of(len(items), self.rank, self.size)])

    def rollout(self, trainer: Any, start_index: int, metadata: dict[str, Any]) -> list[Episode]:
        """The step's episodes: this process plays its share (the module docstring, 1), the
        shares are gathered to every process, and process 0 writes them to the store."""
        from arena.ray_rollout import reseed, share_seed
        from arena.rollout import env_schedule
        from arena.trainer import local_rollout, rollout_seed

        cfg = trainer.config
        seed = rollout_seed(cfg)
        part = share_of(cfg.episodes_per_step, self.rank, self.size)
        schedule = env_schedule(cfg.env, cfg.env_weights or None, cfg.episodes_per_step, seed) if len(cfg.env) > 1 else None
        start = start_index + part.start
        # the run's env state as process 0 holds it after the last step (`arena.env_state`)
        tail = self.on_main(self.mirror.tail, trainer.env_state_dir)
        if not self.main:
            apply_tail(trainer.env_state_dir, tail)
        reseed(trainer.policy, share_seed(cfg.seed, start))  # the opponent: in `local_rollout`
        mine = local_rollout(trainer, start, metadata, count=part.stop - part.start, schedule=schedule,
                             schedule_offset=part.start if schedule else 0, store=False)
        episodes = self.gather(mine)
        if trainer.writer is not None:
            trainer.writer.write(episodes)
        return episodes
