"""Self-play training on TRL's `GRPOTrainer`, with arena's rollout and advantages.

One step, as the algorithm box reads:

1. play `episodes_per_step` episodes of the configured envs (mixed by weight), the one
   model in every seat (or against a fixed opponent), all episodes in flight at once and
   one generation call per tick (`arena.rollout.play`); store them in the run;
2. every model turn is a sample: prompt ids, completion ids, the log-probs it was sampled
   with, and its reward (the role's episode return);
3. advantages per (env, role[, task type]) with each env's estimator (`arena.samples`):
   RAE for games, TRR++ for Absolute Zero, GRPO for SPICE; infra failures masked;
4. TRL's loss (`loss_type`, clipping `epsilon`, KL `beta`), optimizer, scheduler,
   gradient accumulation, accelerate and PEFT take it from there.

The seam is `GRPOTrainer._generate_and_score_completions` (a private method: TRL is
pinned exactly and `tests/test_trainer.py` pins the seam): arena's override returns the
batch TRL expects (`prompt_ids`, `prompt_mask`, `completion_ids`, `completion_mask`,
`advantages`, `num_items_in_batch`, and `old_per_token_logps` when TRL would need them).

Deviations from TRL, kept small: (1) with the legal-action constraint, a completion was
sampled from the distribution renormalised over the legal next tokens, so the loss must
score it under that same distribution. `_get_per_token_logps_and_entropies` is overridden
for batches with constrained samples only: it computes logits (TRL's fused head cannot
mask), sets the illegal tokens to -inf, and takes the log-softmax; unconstrained batches
go through TRL's own code. For a mixture of experts it returns the router's load-balancing
loss too, as TRL's does (TRL adds it whenever the model config has `router_aux_loss_coef`),
and runs each row whole (no shared prefix: the loss is over every token of every row). (2) An entropy bonus over the legal actions
(`entropy_coef`, on by default with the constraint, scheduled per step; both in
`arena.constrained_loss`): a small model
whose features cannot yet tell states apart collapses to one state-blind action before it
learns them (measured: Kuhn Poker's tiny-model policy went to "always call" for every card
and stayed at exploitability 1/3). Subtracted from TRL's loss in `_compute_loss`. TRL 1.16
has an `entropy_coef` of its own, but a constant one (or Skywork-OR1's adaptive one) over
every completion token of every row: on the rows of an env without legal actions (free
text) that is the whole vocabulary's entropy, and a bonus sized for a handful of legal
actions would pay the model to spread its mass over every token. So TRL's stays off (`GRPOConfig.entropy_coef` 0, pinned by
`tests/test_trainer.py`) and arena's lives under its own name, `legal_entropy_coef`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers.trainer_callback import ProgressCallback
from trl import GRPOConfig, GRPOTrainer

from arena.batch import LossBatch
from arena.callbacks import ArenaCallback, ProgressBar
from arena.checkpoint import CheckpointState
from arena.config import LOSS_SHAPES, TrainConfig
from arena.constrained_loss import ConstrainedLoss
from arena.data_parallel import DataParallel
from arena.env_state import fold_episodes, mirror_folder
from arena.episode import Episode
from arena.errors import ArenaError
from arena.metrics import role_metrics
from arena.rollout import play, run_env_kwargs
from arena.run_info import ENV_STATE_DIR
from arena.samples import DROP_REASONS, Sample, assign_advantages, collect, keep_for_loss
from arena.store import CHECKPOINTS_DIR, EpisodeWriter
from arena.weights import has_router

MODEL_DIR = "model"
MAX_EMPTY_STEPS = 3  # steps in a row with nothing to train on before the run stops
logger = logging.getLogger("arena.trainer")


def _unused_reward(completions: list, **kwargs: Any) -> list[float]:
    """GRPOTrainer requires a reward function; arena scores in the env, so this is never called."""
    raise RuntimeError("arena computes rewards in its envs; TRL's reward path must not run")


class Rollout(Protocol):
    """Plays one training step's episodes and writes them to `trainer.writer` in index order.

    `start_index` is the index of the step's first episode (episode i is reset with seed
    `config.seed * 1_000_003 + i`); `metadata` goes into every episode. The trained
    weights are `trainer.model`'s; `trainer.policy` is already synced with them (its
    `sync_weights()` ran), and a rollout that generates with other copies of them (Ray
    actors) brings those up to date first, and with the run's env state (`arena.env_state`):
    `trainer.env_state_dir` as it is before the step (the trainer folds the step's episodes
    into it after the rollout returns: a rollout that calls `arena.rollout.play` passes
    `run_state=False`).
    """

    def __call__(self, trainer: SelfPlayTrainer, start_index: int, metadata: dict[str, Any]) -> list[Episode]: ...

    def close(self) -> None:
        """Release what the rollout holds (actors, engines); called once when training ends."""


def rollout_seed(config: TrainConfig) -> int:
    """Episode i of a run is reset with seed `rollout_seed(config) + i`."""
    return config.seed * 1_000_003


def local_rollout(trainer: SelfPlayTrainer, start_index: int, metadata: dict[str, Any], *,
                  count: int | None = None, schedule: list[int] | None = None, schedule_offset: int = 0,
                  store: bool = True) -> list[Episode]:
    """The step's episodes, played in this process by `trainer.policy` (and the opponent).

    A data-parallel process (`arena.data_parallel`) plays `count` of them from `start_index`
    on, entries `schedule_offset` on of the step's env `schedule`, and stores none (`store`).

    A fixed opponent's sampling stream restarts from `share_seed(seed + 1, start_index)`: its
    state is in no checkpoint, so a resumed run's opponent once played other moves than the
    uninterrupted run's (the trained policy's stream is checkpointed)."""
    from arena.ray_rollout import reseed, share_seed

    cfg = trainer.config
    if trainer.opponent is not None:
        reseed(trainer.opponent, share_seed(cfg.seed + 1, start_index))
    agents = [trainer.policy] if trainer.opponent is None else [trainer.policy, trainer.opponent]
    return play(
        cfg.env, agents, cfg.episodes_per_step if count is None else count, seed=rollout_seed(cfg),
        env_kwargs=trainer.run_env_kwargs(), env_weights=cfg.env_weights or None,
        concurrency=cfg.concurrency, writer=trainer.writer if store else None, run_name=trainer.run_dir.name,
        swap_seats=trainer.opponent is not None, start_index=start_index, metadata=metadata, schedule=schedule,
        schedule_offset=schedule_offset, run_state=False,  # folded after the step (`SelfPlayTrainer.fold_step`)
    )


def _writer(run_dir: Path, lock: int | None) -> EpisodeWriter:
    """The run's episode writer, holding a duplicate of the caller's `lock` on the folder
    (or taking the lock itself); the duplicate let go if the writer cannot start."""
    if lock is None:
        return EpisodeWriter(run_dir)
    own = os.dup(lock)
    try:
        return EpisodeWriter(run_dir, lock=own)
    except BaseException:
        os.close(own)
        raise


class SelfPlayTrainer(CheckpointState, LossBatch, ConstrainedLoss, GRPOTrainer):
    """`GRPOTrainer` whose generation and scoring is arena's self-play rollout.

    Args:
        config: the run's `TrainConfig`.
        model, tokenizer: the policy being trained (`arena.agents.hf.load_model`).
        policy: the `HFPolicy` that generates with `model` in the rollout.
        opponent: a fixed opponent policy, or None for pure self-play.
        run_dir: the run folder (episodes, metrics, checkpoints).
        evaluate: called as `evaluate(trainer, final=..., reuse=...)` at the start of training
            and at the end of every `config.eval_every`-th step and of the last one
            (`ArenaCallback`); returns metrics (`eval_<name>`) logged at the step evaluated.
        rollout: plays a step's episodes somewhere else (e.g. Ray actors, `arena.ray_rollout`);
            default: in this process with `policy` (synced with `model` first).
        data_parallel: this process's part in a run launched as several processes
            (`arena.data_parallel`): a share of each step's episodes and of its loss.
    """

    def __init__(self, config: TrainConfig, model, tokenizer, policy, run_dir: Path, *, opponent=None,
                 evaluate=None, peft_config=None, rollout: Rollout | None = None,
                 data_parallel: DataParallel | None = None, run_lock: int | None = None):
        self.config = config
        self.data_parallel = data_parallel
        self.policy = policy
        self.opponent = opponent
        self.rollout = rollout
        self.run_dir = Path(run_dir)
        self.evaluate_fn = evaluate
        self.final_evaluated = False  # the final model's evaluation is done (`run_evaluation`)
        self._synced_step: int | None = None  # the step the generating copy was last synced at
        self.baselines: dict[str, float] = {}
        self.empty_steps = 0  # steps in a row with nothing to train on
        self.empty_total = 0
        self.rollouts = 0  # rollout batches played so far
        # episodes played so far: the next step's first episode index (and seed). Counted, not
        # `rollouts * episodes_per_step`: a run resumed with another --episodes-per-step then
        # started its indices inside or past the ones written, and could not be resumed again
        self.episodes_written = 0
        self.elapsed_before = 0.0  # wall-clock seconds of earlier sessions of this run (resume)
        self.session_start = time.monotonic()
        # process 0 alone writes the run's episodes (`arena.data_parallel`)
        # (`run_lock`: the run folder's lock the caller holds, `arena.store.lock_run`; the writer
        # releases its duplicate when closed)
        self.writer = _writer(self.run_dir, run_lock) if data_parallel is None or data_parallel.main else None
        # state that lasts the run (AZR's task buffer, `arena.env_state`): kept in the run's
        # env-state/ by the process that writes the episodes, and cut back with them on resume;
        # other data-parallel processes play with a mirror of it
        self.env_state_dir = self.run_dir / ENV_STATE_DIR if self.writer is not None else mirror_folder()
        # transformers 5 reads the TensorBoard folder from the environment, not from the args
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(self.run_dir / "tensorboard")
        use_cuda = (config.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
        try:
            args = GRPOConfig(
                output_dir=str(self.run_dir / CHECKPOINTS_DIR),
                max_steps=config.steps,
                per_device_train_batch_size=2,  # nominal: a rollout batch is split by gradient_accumulation_steps
                gradient_accumulation_steps=config.gradient_accumulation_steps,
                steps_per_generation=config.gradient_accumulation_steps,
                num_generations=2,  # nominal: arena forms its own groups (see arena.samples)
                num_iterations=config.num_iterations,
                learning_rate=config.learning_rate,
                lr_scheduler_type=config.lr_scheduler_type,
                warmup_steps=config.warmup_steps,
                weight_decay=config.weight_decay,
                adam_beta1=config.adam_beta1,
                adam_beta2=config.adam_beta2,
                max_grad_norm=config.max_grad_norm,
                loss_type=config.loss_type,
                epsilon=config.epsilon,
                epsilon_high=config.epsilon_high,
                delta=config.delta,
                importance_sampling_level=config.importance_sampling_level,
                **{name: getattr(config, name) for name in LOSS_SHAPES},
                top_entropy_quantile=config.top_entropy_quantile,
                vllm_importance_sampling_mode=config.sampling_correction_mode,
                vllm_importance_sampling_clip_min=config.sampling_correction_min,
                vllm_importance_sampling_clip_max=config.sampling_correction_max,
                off_policy_mask_threshold=config.off_policy_mask_threshold,
                cast_lm_head_to_fp32=config.cast_lm_head_to_fp32,
                beta=config.beta,
                use_bias_correction_kl=config.use_bias_correction_kl,
                router_aux_loss_coef=config.router_aux_loss_coef,
                sync_ref_model=config.sync_ref_model,
                ref_model_mixup_alpha=config.ref_model_mixup_alpha,
                ref_model_sync_steps=config.ref_model_sync_steps,
                temperature=config.temperature if config.temperature > 0 else 1.0,
                max_completion_length=config.max_new_tokens,
                logging_steps=1,
                save_strategy="steps",
                save_steps=config.save_every,
                save_total_limit=config.save_total_limit,
                report_to=[] if config.report_to == "none" else [config.report_to],
                seed=config.seed,
                use_cpu=not use_cuda,
                gradient_checkpointing=use_cuda if config.gradient_checkpointing is None else config.gradient_checkpointing,
                bf16=use_cuda and torch.cuda.is_bf16_supported(),
                remove_unused_columns=False,
                # several processes (`arena.data_parallel`): DDP's forward runs no collective (the
                # shared prefix's forwards, as many as the rows' groups, differ between processes;
                # a causal LM's buffers, rotary frequencies, never change) and finds no unused
                # parameters (the loss reaches every trained one)
                ddp_broadcast_buffers=False,
                ddp_find_unused_parameters=False,
                disable_tqdm=False,
            )
        except ValueError as exc:  # transformers' checks of the user's values: scheduler, report_to, ...
            raise ArenaError(f"invalid training setting: {str(exc).splitlines()[0]}") from None
        if config.router_aux_loss_coef and not has_router(model):
            raise ArenaError(f"--router-aux-loss-coef weighs a mixture of experts' load-balancing loss; "
                             f"{type(model).__name__} has no router: leave it unset")
        from datasets import Dataset

        rows = args.generation_batch_size * config.steps * config.num_iterations
        dataset = Dataset.from_dict({"prompt": [str(i) for i in range(rows)]})
        super().__init__(model=model, reward_funcs=[_unused_reward], args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config)
        if peft_config is not None:  # the policy generates from (and a vLLM engine is fed by) the PEFT model
            self.policy.model = self.model
        self._allowed: list | None = None
        self._entropy_tokens: torch.Tensor | None = None
        self.sampler_exact = self._sampler_exact()
        self.sampling_correction = (not self.sampler_exact if config.sampling_correction is None
                                    else config.sampling_correction)
        if self.sampling_correction and config.loss_type == "vespo" and config.sampling_correction_mode.startswith("seq"):
            raise ArenaError("--loss-type vespo weighs whole sequences itself: --sampling-correction needs "
                             "--sampling-correction-mode token_truncate or token_mask (or --no-sampling-correction)")
        # TRL's loss multiplies each token's loss by inputs["importance_sampling_ratio"] under
        # `use_vllm and vllm_importance_sampling_correction`, its only reading of `use_vllm`
        # once built: TRL's generation paths that also read it are replaced by
        # `_generate_and_score_completions`. So `use_vllm` here means "correct for the
        # sampler" (tests/test_correction.py pins the multiplication).
        self.use_vllm = self.vllm_importance_sampling_correction = self.sampling_correction
        self.legal_entropy_coef = config.resolved_entropy_coef()  # not TRL's `entropy_coef` (module docstring)
        self.share_prefix = config.share_prefix
        if config.optimizer == "optimistic-adamw":  # built by Trainer.create_optimizer, with its weight-decay groups
            from arena.optim import OptimisticAdamW

            self.optimizer_cls_and_kwargs = (OptimisticAdamW, {"lr": args.learning_rate, "eps": args.adam_epsilon,
                                                               "betas": (args.adam_beta1, args.adam_beta2)})
        self.nothing_to_train = False  # the step's batch is empty (`_check_not_empty`): no optimizer step
        # the bar first: it is on screen (0/N) while ArenaCallback evaluates the starting model
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(ProgressBar())
        self.add_callback(ArenaCallback(self))

    def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        """TRL's optimizer, whose `step` does nothing after a step with nothing to train on:
        a zero gradient still moved the weights by Adam's momentum (up to half a real step's
        change, measured) where the step was to make no update. (Wrapped before the scheduler
        is made, which counts the calls: the schedule goes on a step.)"""
        optimizer = super().create_optimizer(*args, **kwargs)
        step = optimizer.step

        def step_unless_empty(*a: Any, **k: Any) -> Any:
            return None if self.nothing_to_train else step(*a, **k)

        optimizer.step = step_unless_empty
        return optimizer

    def _sampler_exact(self) -> bool:
        """Whether the episodes are sampled by the trained model in the loss's own numerics,
        so that their recorded log-probs are the loss's: the hf backend generating with the
        trained module itself (not a bf16 copy, not a vLLM engine; Ray's actors: a CPU fp32
        copy of the same weights), fp32 weights (in bf16 a cached decode and the loss's whole
        forward differ by bf16's rounding) and a loss outside bf16 autocast."""
        sampler = self.rollout if self.rollout is not None else self.policy
        fp32 = next(self.model.parameters()).dtype == torch.float32
        return bool(getattr(sampler, "generates_with_model", False)) and fp32 and not self.args.bf16

    def run_env_kwargs(self) -> list[dict[str, Any]]:
        """Each env's arguments in this run and process (`arena.rollout.run_env_kwargs`)."""
        cfg = self.config
        return run_env_kwargs(cfg.env, [cfg.env_kwargs.get(e, {}) for e in cfg.env], self.run_dir.name,
                              self.env_state_dir)

    def fold_step(self, episodes: list[Episode]) -> None:
        """Fold the step's episodes, in index order, into the state the envs keep over the run
        (`arena.env_state`), in the process that writes them; before the checkpoint of the
        step, so that a resume from it continues the state exactly."""
        if self.writer is not None:
            fold_episodes(self.config.env, self.run_env_kwargs(), episodes)

    def close_progress(self) -> None:
        """Close the progress bar of a training that stopped early (an error, Ctrl-C);
        left open, tqdm redraws it at exit, after the error message."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
                callback.training_bar.close()
                callback.training_bar = None

    # -- the seam ------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        cfg = self.config
        metrics: dict[str, float] = {}
        self.sync_policy()
        t0 = time.perf_counter()
        dp = self.data_parallel
        rollout = self.rollout or (dp.rollout if dp is not None else local_rollout)
        episodes = rollout(self, self.episodes_written, {"step": self.state.global_step})
        rollout_seconds = time.perf_counter() - t0
        self.fold_step(episodes)
        if hasattr(self.policy, "sleep"):  # a vLLM engine frees its memory for the update (CUDA)
            self.policy.sleep()
        self.rollouts += 1
        self.episodes_written += cfg.episodes_per_step
        samples = collect(episodes, self.policy.name)
        estimators = {e: (cfg.estimators.get(e) or cfg.estimator) for e in cfg.env}
        assign_advantages(samples, {e: v for e, v in estimators.items() if v}, self.baselines, cfg.rae_alpha,
                          cfg.grpo_scale)
        kept, dropped = keep_for_loss(samples, cfg.filter_zero_advantage, cfg.mask_truncated_completions)
        self._check_not_empty(kept, samples, dropped)
        self.nothing_to_train = not kept
        metrics.update(self._rollout_metrics(episodes, samples, dropped, rollout_seconds))
        if (cfg.resolved_entropy_coef() or cfg.entropy_coef_final) and any(s.allowed for s in kept):
            # the bonus this step's loss uses: over legal actions, so on constrained turns only (none in azr/spice)
            metrics["entropy_coef"] = cfg.entropy_coef_at(self.state.global_step)
        for name, value in metrics.items():
            self._metrics["train"][name].append(value)
        if dp is not None:  # this process's share of the batch, normalised by the whole batch's tokens
            # (each the same number of rows: TRL gathers per-row metrics, and a gather takes equal shapes)
            return self._batch(dp.share(kept), num_items=sum(len(s.completion_ids) for s in kept),
                               min_rows=-(-len(kept) // dp.size), kept_total=len(kept), processes=dp.size)
        return self._batch(kept)

    def sync_policy(self) -> None:
        """Bring the generating copy of the weights (the GPU bf16 copy, a vLLM engine) to the
        last optimizer step, once per step: before anything generates, evaluation (at the end
        of a step, `ArenaCallback`) and the next rollout alike."""
        if self._synced_step != self.state.global_step:
            self.policy.sync_weights()
            self._synced_step = self.state.global_step

    def run_evaluation(self, *, final: bool = False, reuse: bool = False) -> dict[str, float]:
        """Evaluate the policy at the current step (`evaluate`, after the sync); its metrics
        (`eval_<name>`), empty when `reuse` found the step already evaluated."""
        if self.evaluate_fn is None:  # else "'NoneType' object is not callable"
            raise ArenaError("this trainer evaluates nothing (eval_every 0, or a data-parallel process other than 0): "
                             "evaluate its model with arena.evaluate.evaluate(policy, env_ids) or `arena eval RUN`")
        self.sync_policy()
        metrics = self.evaluate_fn(self, final=final, reuse=reuse) or {}
        if final:
            self.final_evaluated = True
        return metrics

    def _check_not_empty(self, kept: list[Sample], samples: list[Sample], dropped: Counter) -> None:
        """A step with nothing to train on (every sample masked as infra or filtered) makes
        no update (its batch is empty rows: zero loss, as TRL's own all-zero-advantage
        batches), is counted (`samples/empty_steps`) and warned about; `MAX_EMPTY_STEPS` in a
        row stop the run, since then something is broken (the sandbox, a filter)."""
        if kept:
            self.empty_steps = 0
            return
        self.empty_steps += 1
        self.empty_total += 1
        why = ", ".join(f"{k} {v}" for k, v in sorted(dropped.items())) or "no model turn was played"
        if self.empty_steps >= MAX_EMPTY_STEPS:
            raise ArenaError(f"{self.empty_steps} steps in a row had nothing to train on ({len(samples)} samples; "
                             f"left out: {why}): check the sandbox (infra), --filter-zero-advantage or "
                             "--mask-truncated-completions (a larger --max-new-tokens)")
        logger.warning("step %d has nothing to train on (%d samples; left out: %s): no update this step",
                       self.state.global_step, len(samples), why)

    def _issue_warnings_after_load(self, load_result) -> None:
        """`Trainer` warns on resume that the checkpoint lacks ``lm_head.weight``; a tied head
        is saved once, as the embedding, and loading that sets both. Only untied keys warn."""
        tied = set(getattr(self.accelerator.unwrap_model(self.model), "all_tied_weights_keys", None) or ())
        if tied and hasattr(load_result, "_replace"):  # torch's _IncompatibleKeys, a namedtuple
            load_result = load_result._replace(missing_keys=[k for k in load_result.missing_keys if k not in tied])
        super()._issue_warnings_after_load(load_result)

    # -- metrics -------------------------------------------------------------------------
    def _rollout_metrics(self, episodes, samples: list[Sample], dropped: Counter, seconds: float) -> dict[str, float]:
        out: dict[str, float] = {}
        tokens = sum(len(s.completion_ids) for s in samples)
        out["rollout/episodes_per_s"] = len(episodes) / max(seconds, 1e-9)
        out["rollout/completion_tokens_per_s"] = tokens / max(seconds, 1e-9)
        out["rollout/seconds"] = seconds
        out["samples/trained"] = len(samples) - sum(dropped.values())
        out["samples/empty_steps"] = self.empty_total
        for reason in DROP_REASONS:
            out[f"samples/dropped_{reason}"] = dropped.get(reason, 0)
        out.update(role_metrics(episodes, samples, model=self.policy.name if self.opponent is not None else None,
                                baselines=self.baselines))
        return out

    def minutes(self) -> float:
        """Wall-clock minutes of training so far, over every session of this run."""
        return (self.elapsed_before + time.monotonic() - self.session_start) / 60.0
