"""TRL's names for `arena train`'s settings: what a researcher coming from TRL types first.

`arena.config` answers a TRL name with one line: arena's own name for the same setting
(`TRL_NAMES`), or why arena has none and what to use (`TRL_WITHOUT`). Names that TRL and
arena share need no entry; tests/test_train_cli.py checks both tables against TRL's fields.
"""

from __future__ import annotations

#: TRL's (GRPOConfig, TrainingArguments) names for what arena calls otherwise: a researcher
#: coming from TRL types these first. Fields with the same name in both need no entry.
TRL_NAMES: dict[str, str] = {
    "max_steps": "steps",
    "output_dir": "out",
    "save_steps": "save_every",
    "eval_steps": "eval_every",
    "max_completion_length": "max_new_tokens",
    "model_name_or_path": "model",
    "resume_from_checkpoint": "resume",
    "scale_rewards": "grpo_scale",
    "vllm_gpu_memory_utilization": "vllm_memory",
    "use_vllm": "backend",
    "use_peft": "lora_r",
    "vllm_importance_sampling_correction": "sampling_correction",
    "vllm_importance_sampling_mode": "sampling_correction_mode",
    "vllm_importance_sampling_clip_min": "sampling_correction_min",
    "vllm_importance_sampling_clip_max": "sampling_correction_max",
    "vllm_importance_sampling_cap": "sampling_correction_max",
}


#: TRL's (GRPOConfig, TrainingArguments) names with no arena field, and why: what the
#: researcher typing them needs to know instead of a far-off close match.
TRL_WITHOUT: dict[str, str] = {
    "num_generations": "arena forms no fixed groups: every model turn of --episodes-per-step episodes is a "
                       "sample, and --estimator grpo groups the samples that share a prompt",
    "per_device_train_batch_size": "a step trains on every model turn of --episodes-per-step episodes; split it "
                                   "with --gradient-accumulation-steps",
    "generation_batch_size": "a step plays --episodes-per-step episodes, --concurrency of them in flight (one "
                             "generation call per tick)",
    "logging_steps": "every step is logged (RUN/metrics.csv and --report-to)",
    **dict.fromkeys(("bf16", "fp16"), "training runs in bf16 autocast on a CUDA device that supports it, in fp32 on "
                                      "CPU; --dtype bfloat16 loads the weights themselves in bf16"),
    "model_init_kwargs": "arena loads the model itself (`from_pretrained`); --dtype sets its weights' dtype",
    "steps_per_generation": "each optimizer step plays its own rollout, split into --gradient-accumulation-steps "
                            "micro-batches (TRL's steps_per_generation is that); --num-iterations passes go over it",
    **dict.fromkeys(("log_completions", "num_completions_to_print"),
                    "every episode, every completion in it, goes to RUN/episodes.jsonl: `arena replay RUN` shows them"),
    "cache_implementation": "on a CUDA device the hf backend generates from a bf16 copy with the static, compiled "
                            "cache; plain generate on CPU",
    "vllm_mode": "--backend vllm runs the engine in the trainer's process (TRL's colocate); a served model plays "
                 "as --opponent openai:MODEL@URL",
    "vllm_enable_sleep_mode": "--backend vllm sleeps between rollouts on CUDA, always (nothing to sleep on CPU)",
    "reward_weights": "the rewards are the env's (each role's return): an env weighs its own terms",
    "num_train_epochs": "there is no dataset to go over: a run trains --steps steps, each on the episodes it plays "
                        "(--num-iterations: passes over each step's batch)",
    "shuffle_dataset": "there is no dataset: every step plays fresh episodes (seeded by --seed and the episode index)",
    **dict.fromkeys(("fsdp", "fsdp_config", "deepspeed"),
                    "arena trains a whole model per process (DDP: torchrun, or `accelerate launch --multi_gpu`); "
                    "sharding it is not supported (the rollout generates from the whole model): --lora-r fits a "
                    "larger one"),
    "ddp_find_unused_parameters": "DDP runs without the unused-parameter search (the loss's shared prefix runs "
                                  "several forwards per backward); every weight takes part in each step's loss, a "
                                  "mixture of experts' too (transformers keeps a layer's experts in one tensor)",
    "trust_remote_code": "arena loads models with transformers' own classes (`from_pretrained`), never code from "
                         "a model's repository: a model that needs its own code is refused when it loads",
    "disable_dropout": "the rollout samples with the model in eval mode (no dropout); the loss runs it as "
                       "configured, where Qwen's and Llama's dropout is 0",
    **dict.fromkeys(("vllm_server_base_url", "vllm_server_host", "vllm_server_port", "vllm_server_timeout",
                     "vllm_group_port"),
                    "arena has no vLLM server mode: --backend vllm runs the engine in the trainer's process (TRL's "
                    "colocate); a served model plays as --opponent openai:MODEL@URL"),
    "vllm_tensor_parallel_size": "--backend vllm runs one engine on the trainer's device; several GPUs train "
                                 "data-parallel (torchrun) with the hf backend",
    **dict.fromkeys(("use_adaptive_entropy", "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta",
                     "entropy_target"),
                    "arena's entropy bonus is over the legal actions (--entropy-coef, scheduled by "
                    "--entropy-coef-final and --entropy-decay); TRL's, over every completion token, stays off: on "
                    "free text it would pay the model to spread its mass over the whole vocabulary"),
    "generation_kwargs": "arena samples with --temperature, --top-p, --top-k and --min-p (and the legal-action "
                         "constraint)",
    **dict.fromkeys(("use_transformers_continuous_batching", "transformers_continuous_batching_config",
                     "use_transformers_paged"),
                    "the hf backend batches every episode in flight into one generate call per tick, each shared "
                    "prompt prefix prefilled once (--share-prefix); on CUDA through the static, compiled cache"),
    "num_generations_eval": "`arena eval` and --eval-every play --eval-episodes episodes per opponent and seat",
    "multi_objective_aggregation": "the rewards are the env's (each role's return): an env weighs its own terms",
    "repetition_penalty": "arena samples with --temperature, --top-p, --top-k and --min-p (and the legal-action "
                          "constraint)",
}
