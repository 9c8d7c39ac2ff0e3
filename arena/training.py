"""A training run: its folder (create, refuse, resume from the last checkpoint), the
trainer built for it (model, hf or vLLM policy, opponent, LoRA, Ray rollout), and `train`,
which runs it. The update itself is `arena.trainer.SelfPlayTrainer`. Launched as several
processes (torchrun, accelerate launch), process 0 prepares and writes the run folder and
the others train beside it (`arena.data_parallel`).

Run folder: `config.yaml` and `run.json` (written once the trainer started, so a failed
start leaves nothing that refuses the corrected command), `episodes.jsonl`, `metrics.csv`,
`checkpoints/checkpoint-N` (with `arena_state.json`), `model/` (the final model).
`--resume` moves what was written after its checkpoint (episodes, metrics.csv rows,
eval.jsonl records) to `*.after-checkpoint.*` files, and writes flags given with it to
config.yaml, the previous one kept as `config.before-resume-N.yaml`: nothing is deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from arena.checkpoint import damaged, resume_point
from arena.config import (
    TrainConfig,
    check_device,
    check_env_ids,
    check_transformers_names,
    save_config,
)
from arena.data_parallel import DataParallel
from arena.errors import ArenaError, interrupts_held
from arena.resume import (
    cut_env_state_after,
    cut_episodes_after,
    cut_evals_after,
    cut_metrics_after,
    refuse_fixed_changes,
    save_resumed_config,
)
from arena.run_info import (
    CHECKPOINTS_DIR,
    STATE_FILE,
    checkpoint_step,
    refuse_existing_run,
    write_run_info,
)
from arena.store import EPISODES_FILE, lock_run
from arena.trainer import MODEL_DIR, Rollout, SelfPlayTrainer


def prepare_run(config: TrainConfig) -> tuple[Path, Path | None]:
    """Create (or reopen, with `resume`) the run folder; returns it and the checkpoint to
    resume from. A new run refuses a folder that already holds a run."""
    check_env_ids(config)  # a typo or a bad env argument fails here, before the run folder exists
    check_transformers_names(config)
    check_device(config)
    run_dir = Path(config.resume or config.out)
    if config.resume:
        ckpt, state = resume_point(run_dir, config.steps)
        refuse_fixed_changes(config)
        lock = lock_run(run_dir)  # a run still training holds it: nothing is cut under it
        try:
            # what the run wrote after its checkpoint is played and logged again: moved aside
            # (the env state first: a file shorter than the checkpoint's stops the resume before
            # anything is moved; none was recorded before env-state/ was kept)
            cut_env_state_after(run_dir, state.get("env_state", {}))
            cut_episodes_after(run_dir, int(state["episodes_written"]))
            step = checkpoint_step(ckpt)
            cut_metrics_after(run_dir, step)
            cut_evals_after(run_dir, step)
        finally:
            os.close(lock)
        return run_dir, ckpt
    refuse_existing_run(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArenaError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}; choose another --out") from None
    return run_dir, None


def save_final_model(trainer: SelfPlayTrainer, run_dir: Path) -> Path:
    """The trained model and its tokenizer into RUN/model, whole or not at all (Ctrl-C held
    until it is written). A model already there (a finished run trained further) is
    replaced, unless it holds a file the new one does not (a user's notes, another shard
    layout): it is then kept whole as `model.before-resume-N` (it was deleted)."""
    target = Path(run_dir) / MODEL_DIR
    tmp = Path(run_dir) / (MODEL_DIR + ".tmp")
    with interrupts_held(f"writing {target}"):
        shutil.rmtree(tmp, ignore_errors=True)
        trainer.save_model(str(tmp))
        trainer.processing_class.save_pretrained(str(tmp))
        extra = sorted(_files(target) - _files(tmp))
        if extra:
            n = 1
            while (kept := Path(run_dir) / f"{MODEL_DIR}.before-resume-{n}").exists():
                n += 1
            os.replace(target, kept)
            logging.getLogger(__name__).warning("kept the previous %s as %s: it holds %s, which the new model does "
                                                "not", target, kept.name, ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else ""))
        else:
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def _files(folder: Path) -> set[str]:
    """The files under `folder`, as paths relative to it (none when it is missing)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()} if folder.is_dir() else set()


def train(config: TrainConfig) -> SelfPlayTrainer:
    """Run (or resume) self-play training as `config` says; returns the trainer."""
    dp = DataParallel.start(config)  # None in a single process
    main = dp is None or dp.main  # process 0 alone writes the run folder (`arena.data_parallel`)
    existed = Path(config.resume or config.out).exists()
    run_dir, ckpt = prepare_run(config) if dp is None else dp.on_main(prepare_run, config)
    lock = _claim(run_dir, new=ckpt is None) if main else None
    try:
        return _train(config, dp, run_dir, ckpt, lock, existed)
    finally:
        if lock is not None:
            os.close(lock)


def _claim(run_dir: Path, new: bool) -> int:
    """The run folder's lock, held from here to the end of training (the episode writer gets
    a duplicate of it). Two `arena train` started at once on one new `--out` both passed the
    check for a run there; the one whose writer then found the folder locked removed, as
    a failed start's leftovers, the episode file the other was writing into. Now the second
    stops here and removes nothing; a new run's folder is checked again under the lock."""
    lock = lock_run(run_dir)
    if new:
        try:
            refuse_existing_run(run_dir, locked=True)
        except BaseException:
            os.close(lock)
            raise
    return lock


def _train(config: TrainConfig, dp: DataParallel | None, run_dir: Path, ckpt: Path | None, lock: int | None,
           existed: bool) -> SelfPlayTrainer:
    """`train` once the run folder is prepared and, by process 0, locked."""
    main = lock is not None
    if dp is not None:
        dp.prepare_models(config)
    try:
        trainer, rollout = _build(config, run_dir, dp, lock)
    except BaseException:
        if ckpt is None and main:  # a failed start leaves no run to refuse the corrected command
            _remove_unstarted(run_dir, remove_dir=not existed)
        raise
    try:
        _start(trainer, config, run_dir, ckpt, main)
    except BaseException:  # a damaged checkpoint state: the actors, Ray and the run folder's lock let go
        _close(trainer, rollout)
        raise
    try:
        with _no_transformers_bars(), _frozen_heap():
            _train_and_save(trainer, rollout, config, run_dir, ckpt, dp)
    except KeyboardInterrupt:
        if main:
            _mark(run_dir, config, trainer, "interrupted")
        raise
    except BaseException as exc:  # a run that failed says so: "running" would be a run still going
        if main:
            _mark(run_dir, config, trainer, "failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise
    if main:
        write_run_info(run_dir, {"command": "train", "config": config.to_dict(), "status": "complete",
                                 "step": trainer.state.global_step, "minutes": trainer.minutes()})
    return trainer


def _start(trainer: SelfPlayTrainer, config: TrainConfig, run_dir: Path, ckpt: Path | None, main: bool) -> None:
    """A new run's config.yaml and run.json, written once everything started (a failed start
    leaves no run to refuse); or the checkpoint's state loaded into a resumed run."""
    if ckpt is None:
        if main:
            save_config(config, run_dir / "config.yaml")
            write_run_info(run_dir, {"command": "train", "config": config.to_dict(), "status": "running"})
        return
    _load_state(trainer, ckpt)
    trainer.load_reference(ckpt)
    if main:  # the flags given with --resume are what the next plain --resume goes on with
        save_resumed_config(config)
        write_run_info(run_dir, {"command": "train", "config": config.to_dict(), "status": "running",
                                 "step": checkpoint_step(ckpt)})


def _close(trainer: SelfPlayTrainer, rollout: Rollout | None) -> None:
    """The progress bar, the episode writer (and the run folder's lock) and the rollout's
    workers (Ray actors, a local Ray), however training ended."""
    trainer.close_progress()
    if trainer.writer is not None:
        trainer.writer.close()
    if rollout is not None:
        rollout.close()


def _load_state(trainer: SelfPlayTrainer, ckpt: Path) -> None:
    """arena's state of the checkpoint into the trainer; a state that reads as JSON but
    lacks a field (`check_checkpoint` checks the episode count only) is one line too."""
    try:
        trainer.load_arena_state(json.loads((ckpt / STATE_FILE).read_text()))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise damaged(ckpt / STATE_FILE, f"{type(exc).__name__}: {exc}") from None


def _mtime_note(record: logging.LogRecord) -> bool:
    return "mtime may not be reliable" not in record.getMessage()


@contextlib.contextmanager
def _no_transformers_bars() -> Iterator[None]:
    """transformers' own bars (`Writing model shards` at every checkpoint) off while the
    training bar runs, and back as they were after, however training ends; and its
    "mtime may not be reliable on this filesystem" left out: it says that checkpoints came
    less than a second apart (the tiny model's do), and orders them by step then, as arena
    always reads them, so the note only alarmed."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    note = logging.getLogger("transformers.trainer_utils")
    note.addFilter(_mtime_note)
    try:
        yield
    finally:
        note.removeFilter(_mtime_note)
        if enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _frozen_heap() -> Iterator[None]:
    """Every object alive when training starts (imported modules, the model, the tokenizer:
    half a million for the tiny model) kept out of Python's garbage collections while it
    runs, as vLLM's engine and SGLang do after start-up (`gc.freeze`): a full collection
    then walks only what training made since. Two such pauses of 0.26 s each made most of a
    40-step Kuhn Poker run's 0.63 s of garbage collection (1.5% of its 41 s); with the heap
    frozen, 0.12 s. The heap thaws when training ends; a caller that froze its own heap
    keeps it as it was."""
    import gc

    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _train_and_save(trainer: SelfPlayTrainer, rollout: Rollout | None, config: TrainConfig, run_dir: Path,
                    ckpt: Path | None, dp: DataParallel | None = None) -> None:
    """The training loop, then the final evaluation and model (by process 0 of a
    data-parallel run: the others hold the same weights)."""
    main = dp is None or dp.main
    try:
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    finally:
        _close(trainer, rollout)
    if dp is not None:
        dp.finish()
    if not main:
        return
    if config.eval_every and not trainer.final_evaluated:  # the last step evaluates it (`ArenaCallback`)
        trainer.run_evaluation(final=True)
    save_final_model(trainer, run_dir)


def _mark(run_dir: Path, config: TrainConfig, trainer: SelfPlayTrainer, status: str, **fields: object) -> None:
    """run.json says how the run stopped (interrupted, failed) and at which step; a failure
    to write it never hides the error that stopped the run."""
    info = {"command": "train", "config": config.to_dict(), "status": status, "step": trainer.state.global_step,
            **fields}
    with contextlib.suppress(ArenaError):
        write_run_info(run_dir, info)


def _remove_unstarted(run_dir: Path, remove_dir: bool) -> None:
    """Undo what a start that failed wrote: the empty episode file (and the folder, when the
    start made it and it is left empty). Anything holding data stays."""
    episodes = run_dir / EPISODES_FILE
    if episodes.is_file() and episodes.stat().st_size == 0:
        episodes.unlink()
    with contextlib.suppress(OSError):  # transformers' Trainer made it, empty, when it was built
        (run_dir / CHECKPOINTS_DIR).rmdir()
    if remove_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _build(config: TrainConfig, run_dir: Path, dp: DataParallel | None = None,
           lock: int | None = None) -> tuple[SelfPlayTrainer, Rollout | None]:
    """The trainer of a run (model, policy: hf or vllm, opponent, LoRA) and its Ray rollout,
    started first so that a wrong address fails before anything loads; closed on failure."""
    rollout = None
    if config.ray_address:  # first: a wrong address fails before anything loads
        from arena.ray_rollout import RayRollout

        rollout = RayRollout(config)
    try:
        return _build_trainer(config, run_dir, rollout, dp, lock), rollout
    except BaseException:
        if rollout is not None:
            rollout.close()
        raise


def _build_trainer(config: TrainConfig, run_dir: Path, rollout: Rollout | None,
                   dp: DataParallel | None = None, lock: int | None = None) -> SelfPlayTrainer:
    from arena.agents import is_agent_spec, make_agent
    from arena.agents.hf import HFPolicy, load_model
    from arena.evaluate import training_evaluator

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.manual_seed(config.seed)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dp is not None:  # one device per process (accelerate's choice: the process's local rank)
        device = dp.device
    model, tokenizer = load_model(config.model, device=device, dtype=config.torch_dtype(),
                                  chat_template=config.chat_template)
    constrain = config.resolved_constrain()
    if config.backend == "vllm":
        from arena.agents.vllm import VLLMPolicy, check_weight_sync

        check_weight_sync(model, device.startswith("cuda"))  # before an engine starts
        policy = VLLMPolicy(model, tokenizer, name="model", max_new_tokens=config.max_new_tokens,
                            temperature=config.temperature, top_p=config.top_p, constrain=constrain,
                            seed=config.seed, memory=config.vllm_memory, max_model_len=config.vllm_max_model_length,
                            top_k=config.top_k, min_p=config.min_p, chat_template_kwargs=config.chat_template_kwargs)
    else:
        policy = HFPolicy(model, tokenizer, name="model", max_new_tokens=config.max_new_tokens,
                          temperature=config.temperature, top_p=config.top_p, constrain=constrain, seed=config.seed,
                          share_prefix=config.share_prefix, top_k=config.top_k, min_p=config.min_p,
                          chat_template_kwargs=config.chat_template_kwargs)
    opponent = None
    if config.opponent:
        if is_agent_spec(config.opponent):  # random, heuristic, openai:MODEL@URL, ...
            opponent = make_agent(config.opponent, seed=config.seed + 1, chat_template_kwargs=config.chat_template_kwargs)
        else:
            opp_model, opp_tok = load_model(config.opponent, device=device, flag="--opponent", dtype=config.torch_dtype(),
                                            chat_template=config.chat_template, generation_only=True)
            opponent = HFPolicy(opp_model, opp_tok, name="opponent", max_new_tokens=config.max_new_tokens,
                                temperature=config.temperature, constrain=constrain, seed=config.seed + 1,
                                share_prefix=config.share_prefix, chat_template_kwargs=config.chat_template_kwargs)
    peft_config = None
    if config.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    evaluate = training_evaluator(config, run_dir) if dp is None or dp.main else None  # process 0 evaluates
    trainer = SelfPlayTrainer(config, model, tokenizer, policy, run_dir, opponent=opponent, evaluate=evaluate,
                              peft_config=peft_config, rollout=rollout, data_parallel=dp, run_lock=lock)
    return trainer
