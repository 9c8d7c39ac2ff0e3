"""The `hf` agent: a transformers causal LM as an arena `Policy`.

`HFPolicy.act` answers a batch of requests with one batched `generate` call per chunk of
`batch_size` prompts: the chat template applied, left padding, temperature / top-p
sampling (greedy at temperature 0), stop at EOS, at most `max_new_tokens`, and nothing
else: sampling settings of the model's own generation config (`repetition_penalty`,
`no_repeat_ngram_size`, ...) are not applied (`sampling_overrides`), as vLLM's engine takes
arena's `SamplingParams` as they are. Each
`Completion` carries the prompt ids, the completion ids (EOS included when generated) and
the log-prob of every sampled token under the distribution it was sampled from.

**Legal-action constraint** (`constrain=True`): when a request lists `legal_actions`,
decoding is limited to exactly those strings followed by EOS: a prefix trie over their
token ids, applied as a logits processor that sets every other logit to -inf
(`arena.agents.constrain`: `ActionTrie`, `ConstrainProcessor`). The
log-probs are then those of the constrained distribution, and `Completion.info
["allowed_token_ids"]` records the allowed set at each position, so the trainer computes
the same constrained log-probs in its forward pass (`arena.trainer`). A completion cut at
`max_new_tokens` before its EOS says so: `Completion.info["finish_reason"] == "length"` (the
OpenAI API's word; nothing is added to a finished one, so stored episodes stay small).
Special-token text inside a message (another role's `<|im_end|>`) reads as plain text, not
as the token (`arena.agents.special_tokens`).

**Fast generation on GPU**: with a CUDA device, generation runs from a copy of the policy
in its compute dtype (bf16) with `cache_implementation="static"` (transformers compiles
the decode step into CUDA graphs), batch sizes bucketed to powers of two and prompt widths
to multiples of 64 so that few shapes occur. torch's automatic dynamic shapes then compile
the decode step three times in all, not once per bucket: a static graph for the first
batch size, a dynamic one for sizes >= 2, and one for size 1 (seen on CPU by forcing the
compile, `CompileConfig._compile_all_devices`: 64-episode Kuhn rollouts at concurrency 8,
64, 3 and 1 recompiled twice, then never); CUDA graphs are still recorded per shape.
We keep a *copy* rather than casting the trained model: the trainer's fp32 master weights
stay untouched, TRL's autocast never writes bf16 into an fp32 static cache (the crash
plain TRL hits with `generation_kwargs={"cache_implementation": "static"}`), and
`sync_weights()` refreshes the copy in place (`copy_`, no recompile) after each optimizer
step. On CPU the policy
generates from the trained model itself with the default dynamic cache.

**Shared prompt prefix** (`share_prefix=True`, the default): the prompts
of one call mostly repeat each other (in Kuhn Poker 206 of a prompt's ~270 tokens: the chat
template and the rules of the seat), and whole prompts repeat (128 Kuhn Poker episodes in
flight ask at most six distinct prompts per turn). The rows are grouped by the prefix they
share (`arena.prefix`); each group's prefix runs once, as a batch of one, then each
distinct prompt (less its last token) once on it, and their keys and values are placed in
every row of a cache handed to `generate`, which then prefills only what is left of each
row: its last prompt token, or its whole tail where no other row asks the same prompt. A
row is laid out `[pad | context | pad | rest]` (`arena.prefix.prompt_cache`); positions
follow the attention mask as `generate` computes them, so every real token sits where it
sits in the plain left-padded batch. The same tokens and, to float rounding, the same
log-probs (`tests/test_hf_agent.py`); a Kuhn Poker call of 128 prompts took 586 ms, 413 of
them the prefill, which this cuts to a fraction. With the static cache the same context is
written into a `StaticCache` that `generate` takes as its cache (one kept per rows and
length bucket, so the compiled decode step's CUDA graphs find the same tensors again), the
width bucketed by pad columns between the context and the rest. On CPU, where it is not
compiled, sharing made the static path play 1.8x the Kuhn Poker episodes/s and 1.6x the
TicTacToe ones at 64 in flight, about even at 8 (`python scripts/bench_rollout.py
--static-cache --backends hf,hf-plain`, docs/benchmarks.md); `scripts/gpu_bench.sh`
measures it on CUDA. Forced to compile on CPU, the decode step with this cache compiled three
graphs over Kuhn Poker calls of 8, 64, 4 and 1 rows, reused them, and played the eager
path's greedy episodes token for token (a test does the same at 8 and 64).

**Chat template arguments** (`chat_template_kwargs`, TRL's name): passed to the tokenizer's
`apply_chat_template` with every prompt, e.g. `{"enable_thinking": False}` for Qwen3's
template (an empty think block after the assistant's header, so the model answers at once).

Sampling uses the policy's own RNG stream (`get_rng_state` / `set_rng_state`, saved in
checkpoints), so a seeded run is reproducible and resumable whatever else draws from
torch's global generator.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

from arena.errors import ArenaError
from arena.policy import Completion, Request

from .constrain import ActionTrie, ConstrainProcessor
from .loading import (  # `arena.agents.hf.load_model` stays importable
    agent_kwargs,
    decoding_options,
    load_model,
)
from .special_tokens import neutralise, token_pattern


def _messages_key(messages: Sequence[Any]) -> tuple[tuple[str, str], ...] | None:
    """A conversation of plain `{"role", "content"}` string messages as a hashable key
    (None for anything richer, which is templated every time)."""
    key = []
    for m in messages:
        if not (isinstance(m, dict) and len(m) == 2 and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            return None
        key.append((m["role"], m["content"]))
    return tuple(key)


def _bucket(n: int, minimum: int = 1) -> int:
    """The next power of two >= n."""
    size = minimum
    while size < n:
        size *= 2
    return size


def _width_bucket(width: int) -> int:
    """A prompt width for the static cache: the next power of two from 64 up to 512, then the
    next multiple of 512 (few shapes, so few compilations and CUDA graphs)."""
    return _bucket(width, 64) if width <= 512 else -(-width // 512) * 512


#: Static caches kept for reuse, one per (rows, length) bucket: reusing one keeps its tensors'
#: addresses, which the compiled decode step's CUDA graphs are recorded against.
STATIC_CACHES_KEPT = 4


#: `apply_chat_template`'s own arguments that shape what arena reads back (token ids of the
#: prompt, the assistant's header after it): not the template's to take
CHAT_TEMPLATE_RESERVED = ("conversation", "add_generation_prompt", "continue_final_message", "tokenize", "padding",
                          "truncation", "max_length", "return_tensors", "return_dict", "return_assistant_tokens_mask",
                          "tokenizer_kwargs")


logger = logging.getLogger("arena.agents.hf")


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a completion, as TRL's `GRPOTrainer` stops: the tokenizer's EOS and
    every EOS of the model's generation config (a chat model may end its turn with another
    token than its tokenizer's EOS: Llama 3.1's `<|eot_id|>` and `<|eom_id|>`, Qwen3's
    `<|im_end|>` beside `<|endoftext|>`). The tokenizer's comes first: a constrained legal
    action ends with it."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    eos = tokenizer.eos_token_id
    return [eos, *(i for i in dict.fromkeys(ids) if i != eos)]


#: `GenerationConfig` fields that change what `generate` samples, or how much, beyond arena's
#: own settings (temperature, top-p, top-k, min-p, max_new_tokens, EOS).
SAMPLING_EXTRAS = (
    "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "force_words_ids", "constraints", "suppress_tokens", "begin_suppress_tokens",
    "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty",
    "min_length", "min_new_tokens", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h", "num_beams",
    "num_beam_groups", "diversity_penalty", "penalty_alpha", "guidance_scale", "watermarking_config",
    "renormalize_logits", "dola_layers", "stop_strings", "max_time", "num_return_sequences", "token_healing",
)


#: Values of `SAMPLING_EXTRAS` fields that change nothing (configs often spell them out).
_NO_OPS: dict[str, tuple] = {
    "repetition_penalty": (1.0,), "encoder_repetition_penalty": (1.0,), "no_repeat_ngram_size": (0,),
    "encoder_no_repeat_ngram_size": (0,), "min_length": (0,), "min_new_tokens": (0,), "typical_p": (1.0,),
    "epsilon_cutoff": (0.0,), "eta_cutoff": (0.0,), "num_beams": (1,), "num_beam_groups": (1,),
    "diversity_penalty": (0.0,), "guidance_scale": (1.0,), "renormalize_logits": (False,),
    "num_return_sequences": (1,), "token_healing": (False,), "bad_words_ids": ([],), "suppress_tokens": ([],),
    "begin_suppress_tokens": ([],),
}

_REPORTED: set[tuple[str, ...]] = set()  # the overridden fields already warned about, once per process


def sampling_overrides(generation_config: Any) -> dict[str, Any]:
    """`generate` arguments that put back transformers' defaults where the model's own
    generation config sets a `SAMPLING_EXTRAS` field (Qwen2.5-Instruct ships
    `repetition_penalty` 1.05, others `no_repeat_ngram_size`, `suppress_tokens`...):
    `generate` would apply them on top of arena's settings, so the sampled distribution, and
    the recorded log-probs the trainer reuses as the sampler's, would not be the policy's.
    vLLM's engine takes arena's `SamplingParams` as they are; this makes `hf` do the same."""
    from transformers import GenerationConfig

    if generation_config is None:
        return {}
    default = GenerationConfig()
    out = {}
    for k in SAMPLING_EXTRAS:
        if not hasattr(default, k):
            continue
        value = getattr(generation_config, k, getattr(default, k))
        if value != getattr(default, k) and value not in _NO_OPS.get(k, ()):
            out[k] = getattr(default, k)
    return out



def check_chat_template_kwargs(kwargs: Any, flag: str = "--chat-template-kwargs") -> dict[str, Any]:
    """`kwargs` as a plain dict of the chat template's arguments, or one line naming the fix."""
    example = f'e.g. {flag} \'{{"enable_thinking": false}}\''
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ArenaError(f"{flag} takes a JSON object of the chat template's arguments, {example}; got {kwargs!r}")
    reserved = sorted(set(kwargs) & set(CHAT_TEMPLATE_RESERVED))
    if reserved:
        raise ArenaError(f"{flag}: {reserved[0]!r} is apply_chat_template's own argument, which arena sets (the "
                         f"prompt's token ids, the assistant's header after them); pass the template's variables, "
                         f"{example}")
    return dict(kwargs)


class HFPolicy:
    """A transformers causal LM answering arena requests (see the module docstring).

    Args:
        model, tokenizer: from `load_model` (the tokenizer needs a chat template).
        name: the agent name recorded in episodes.
        max_new_tokens: completion length cap.
        temperature: sampling temperature; 0 is greedy.
        top_p: nucleus sampling mass (1.0: off).
        top_k: sample among the k most likely tokens only (0: off).
        min_p: drop tokens below this share of the most likely one's probability (0: off).
        constrain: decode only among `legal_actions` when a request has them.
        batch_size: prompts per `generate` call.
        seed: seed of the policy's sampling RNG.
        static_cache: generate from a compute-dtype copy with a static, compiled cache
            (default: when the model is on a CUDA device).
        share_prefix: prefill the context that rows share (each group's prompt prefix, each
            distinct prompt) once (see the module docstring).
        chat_template_kwargs: more arguments for the tokenizer's chat template, e.g.
            `{"enable_thinking": False}` (TRL's `chat_template_kwargs`).
    """

    def __init__(self, model, tokenizer, *, name: str = "model", max_new_tokens: int = 64,
                 temperature: float = 1.0, top_p: float = 1.0, constrain: bool = False,
                 batch_size: int = 256, seed: int = 0, static_cache: bool | None = None,
                 share_prefix: bool = True, top_k: int = 0, min_p: float = 0.0,
                 chat_template_kwargs: dict[str, Any] | None = None):

        check_decoding(temperature=temperature, max_new_tokens=max_new_tokens, top_p=top_p, top_k=top_k, min_p=min_p)
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.top_k = int(top_k)
        self.min_p = float(min_p)
        self.constrain = bool(constrain)
        self.batch_size = int(batch_size)
        self.device = next(model.parameters()).device
        self.static_cache = self.device.type == "cuda" if static_cache is None else bool(static_cache)
        self.share_prefix = bool(share_prefix)
        self.chat_template_kwargs = check_chat_template_kwargs(chat_template_kwargs, "chat_template_kwargs")
        # the recorded log-probs are the model's own (no copy in another dtype): the trainer
        # then needs no correction for the sampler (arena/correction.py)
        self.generates_with_model = not self.static_cache
        self._static_caches: dict[tuple[int, int], Any] = {}
        self.stop_ids = stop_token_ids(model, tokenizer)
        self._overrides = sampling_overrides(getattr(model, "generation_config", None))
        if self._overrides and tuple(sorted(self._overrides)) not in _REPORTED:
            _REPORTED.add(tuple(sorted(self._overrides)))
            logger.warning("the model's generation config sets %s: not applied, arena samples with its own settings "
                           "(temperature, top-p, top-k, min-p) so the recorded log-probs are the policy's",
                           ", ".join(sorted(self._overrides)))
        self.reseed(seed)
        self._gen_model = None
        self._views: dict[str, int] = {}  # state-dict keys of the lent weights, and their data pointers
        self.generated_tokens = 0
        self._action_ids: dict[str, list[int]] = {}
        self._prompt_ids: dict[tuple[tuple[str, str], ...], tuple[int, ...]] = {}
        self._special = token_pattern(tokenizer)
        if self.static_cache:
            self._make_generation_copy()

    # --- weights -------------------------------------------------------------------
    def _make_generation_copy(self) -> None:
        """The bf16 module the static cache generates from (`arena.weights.bf16_copy`:
        weights already in bf16 lent as views, the rest copied, LoRA merged in)."""
        from arena.weights import bf16_copy

        self._gen_model, self._views = bf16_copy(self.model)

    def sync_weights(self) -> None:
        """Refresh the generation copy from the trained weights, by name, LoRA adapters merged
        in (`arena.weights.merged_weights`: the trainer wraps the model in PEFT after this
        policy made its copy); a no-op when the policy generates from the trained model itself.
        Lent weights (views) need no copy; if the trained model no longer holds them (TRL
        wrapped it in PEFT, or cast its head to fp32, after the copy was made) the module is
        made again first: merged weights are never written into the trained model's own."""
        if self._gen_model is None:
            return
        from arena.weights import fill, merged_weights

        weights = merged_weights(self.model)
        if any(key not in weights or weights[key].data_ptr() != ptr for key, ptr in self._views.items()):
            self._static_caches.clear()
            self._make_generation_copy()
        fill(self._gen_model, weights, self._views)

    # --- RNG -----------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Start the sampling streams afresh from `seed`: the CPU one, and on a GPU the CUDA
        one that `generate` samples with there (transformers' `set_seed` gives every process
        of a data-parallel run the same global CUDA stream: each policy keeps its own)."""
        import torch

        self._cpu_rng = torch.Generator().manual_seed(int(seed)).get_state()
        self._cuda_rng = (torch.Generator(device=self.device).manual_seed(int(seed)).get_state()
                          if self.device.type == "cuda" else None)

    def get_rng_state(self) -> dict[str, Any]:
        state = {"cpu": self._cpu_rng.tolist()}
        if self._cuda_rng is not None:
            state["cuda"] = self._cuda_rng.tolist()
        return state

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """The streams `get_rng_state` saved; another backend's state (a run resumed with
        another `--backend`) cannot continue here, and the streams stay as seeded."""
        import torch

        if "cpu" not in state:
            return
        self._cpu_rng = torch.tensor(state["cpu"], dtype=torch.uint8)
        if state.get("cuda") is not None:
            self._cuda_rng = torch.tensor(state["cuda"], dtype=torch.uint8)

    # --- generation ----------------------------------------------------------------
    def encode(self, request: Request) -> list[int]:
        """The prompt ids of a request: its chat messages through the chat template (each
        distinct conversation templated and tokenised once: 128 Kuhn Poker episodes in
        flight ask at most six distinct prompts a turn, and tokenising was a quarter of a
        call once the prefill was shared)."""
        key = _messages_key(request.messages)
        ids = self._prompt_ids.get(key) if key is not None else None
        if ids is None:
            # a role marker written by another role reads as text, not as a token (`special_tokens`)
            messages = neutralise(request.messages, self._special)
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     **self.chat_template_kwargs)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            ids = tuple(ids)
            if key is not None:
                if len(self._prompt_ids) >= 10_000:
                    self._prompt_ids.clear()
                self._prompt_ids[key] = ids
        return list(ids)

    def action_ids(self, action: str) -> list[int]:
        """The token ids of a legal action followed by EOS, as constrained decoding emits it."""
        ids = self._action_ids.get(action)
        if ids is None:  # an env offers the same few actions again and again: tokenise each once
            ids = list(self.tokenizer(action, add_special_tokens=False).input_ids) + [self.tokenizer.eos_token_id]
            if len(self._action_ids) < 100_000:
                self._action_ids[action] = ids
        return list(ids)

    def _tries(self, requests: Sequence[Request]) -> list[ActionTrie | None]:
        """Each request's legal-action trie (None: free decoding), one per distinct set."""
        shared: dict[tuple[str, ...], ActionTrie] = {}
        out: list[ActionTrie | None] = []
        for r in requests:
            if not (self.constrain and r.legal_actions):
                out.append(None)
                continue
            key = tuple(r.legal_actions)
            if key not in shared:
                shared[key] = ActionTrie([self.action_ids(a) for a in key])
            out.append(shared[key])
        return out

    def act(self, requests: Sequence[Request]) -> list[Completion]:
        out: list[Completion] = []
        for start in range(0, len(requests), self.batch_size):
            out.extend(self._generate(requests[start:start + self.batch_size]))
        return out

    def _prefix_cache(self, model, prompts: list[list[int]]):
        """`(input_ids, attention_mask, cache)` for `generate` with the context that rows share
        (each group's prefix, each distinct prompt) prefilled once (`arena.prefix.prompt_cache`),
        or None (the plain batch)."""
        from arena.prefix import prompt_cache

        return prompt_cache(model, prompts, self.tokenizer.pad_token_id)

    def _static_prefix_cache(self, model, ids, mask, cache, rows: int, max_new: int):
        """The shared-context batch of `_prefix_cache` made static: the width bucketed (pad
        columns between the context and the rest, which positions taken from the attention
        mask ignore), `rows` rows (bucket fillers copy the first row), and the context's keys
        and values written into a reused `StaticCache` of `width + max_new` columns, handed to
        `generate` as its cache (transformers compiles the decode step for a user's static
        cache as for its own)."""
        import torch
        from transformers import StaticCache

        n, width = ids.shape
        context = int(cache.get_seq_length())
        total = _width_bucket(width)
        index = torch.cat([torch.arange(n), torch.zeros(rows - n, dtype=torch.long)])

        def spread(t: torch.Tensor, fill: int) -> torch.Tensor:
            out = t.new_full((rows, total), fill)
            out[:, :context] = t[index, :context]
            out[:, total - (width - context):] = t[index, context:]
            return out

        ids, mask = spread(ids, self.tokenizer.pad_token_id), spread(mask, 0)
        key = (rows, total + max_new)
        static = self._static_caches.pop(key, None)
        if static is None:
            if len(self._static_caches) >= STATIC_CACHES_KEPT:  # the least recently used goes
                self._static_caches.pop(next(iter(self._static_caches)))
            static = StaticCache(config=model.config, max_cache_len=key[1])
        self._static_caches[key] = static  # most recently used last
        static.reset()
        device_index = index.to(self.device)
        with torch.no_grad():
            for i, layer in enumerate(cache.layers):
                static.update(layer.keys[device_index], layer.values[device_index], i)
        return ids, mask, static

    def _run_generate(self, model, prompts: list[list[int]], tries: list, rows: int, width: int):
        """One `generate` call over `rows` rows (prompts, then bucket fillers) of `width`
        columns, the model in eval mode; returns the result and the input width."""
        import torch

        pad = self.tokenizer.pad_token_id
        tries = tries + [tries[0]] * (rows - len(prompts))
        max_new = self.max_new_tokens
        if all(t is not None for t in tries):  # legal actions bound the length
            max_new = min(max_new, max(len(k) for t in tries for k in t.next) + 1)
        cache = self._prefix_cache(model, prompts) if self.share_prefix and len(prompts) > 1 else None
        if cache is not None:
            ids, mask, cache = cache
            if self.static_cache:
                ids, mask, cache = self._static_prefix_cache(model, ids, mask, cache, rows, max_new)
            width = ids.size(1)
        else:
            ids = torch.full((rows, width), pad, dtype=torch.long)
            mask = torch.zeros((rows, width), dtype=torch.long)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            for i in range(len(prompts), rows):  # bucket filler rows: a copy of the first prompt
                ids[i], mask[i] = ids[0], mask[0]
        processor = ConstrainProcessor(tries, self.device)
        kwargs: dict[str, Any] = {
            "input_ids": ids.to(self.device), "attention_mask": mask.to(self.device), "max_new_tokens": max_new,
            "pad_token_id": pad, "eos_token_id": self.stop_ids, "return_dict_in_generate": True,
            "output_scores": True, "logits_processor": [processor] if any(t is not None for t in tries) else None,
            **self._overrides,
        }
        if self.temperature > 0:
            # (after arena's constraint, a custom processor: they truncate the legal actions' distribution)
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                          min_p=self.min_p or None)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None, min_p=None)
        if cache is not None:
            kwargs["past_key_values"] = cache
        elif self.static_cache:
            kwargs["cache_implementation"] = "static"
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.set_rng_state(self._cpu_rng)
            if devices and self._cuda_rng is not None:
                torch.cuda.set_rng_state(self._cuda_rng, self.device)
            result = model.generate(**kwargs)
            self._cpu_rng = torch.get_rng_state()
            if devices:
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
        return result, width

    def _generate(self, requests: Sequence[Request]) -> list[Completion]:
        import torch

        prompts = [self.encode(r) for r in requests]
        tries = self._tries(requests)
        rows = len(prompts)
        width = max(len(p) for p in prompts)
        model = self._gen_model if self._gen_model is not None else self.model
        if self.static_cache:  # compile once per bucket
            width = _width_bucket(width)
            rows = _bucket(rows)
        was_training = model.training
        if was_training:  # eval() and train() walk every module: ~1 ms each on the tiny model
            model.eval()
        try:
            result, width = self._run_generate(model, prompts, tries, rows, width)
        finally:
            if was_training:
                model.train()
        sequences = result.sequences[:, width:].cpu()
        # the log-prob of each sampled token, picked on the device (a full-vocabulary copy per
        # step would be rows x steps x vocab floats: ~10 GB for Qwen's 152k vocabulary)
        logps = None
        if result.scores:
            picked = [s.float().log_softmax(-1).gather(1, result.sequences[:, width + t:width + t + 1])
                      for t, s in enumerate(result.scores)]
            logps = torch.cat(picked, dim=1).cpu()
        stops = set(self.stop_ids)
        completions = []
        for i, request in enumerate(requests):
            tokens = sequences[i].tolist()
            end = next((t for t, token in enumerate(tokens) if token in stops), None)
            if end is not None:  # a row that never stopped holds no padding
                tokens = tokens[:end + 1]
            lp = [float(logps[i, t]) for t in range(len(tokens))] if logps is not None else None
            text = self.tokenizer.decode([t for t in tokens if t not in stops], skip_special_tokens=True)
            info: dict[str, Any] = {} if end is not None else {"finish_reason": "length"}  # cut at max_new_tokens
            if tries[i] is not None:
                info["allowed_token_ids"] = tries[i].allowed_path(tokens)
            self.generated_tokens += len(tokens)
            completions.append(Completion(text=text, prompt_ids=prompts[i], token_ids=tokens, logprobs=lp, info=info))
        return completions


def check_decoding(*, temperature: float = 1.0, max_new_tokens: int = 1, top_p: float = 1.0, top_k: int = 0,
                   min_p: float = 0.0, **_: Any) -> None:
    """One line for a sampling setting out of range (`HFPolicy` and an agent spec's options,
    the latter before its model loads)."""
    if not 0 <= temperature < math.inf:  # nan sampled greedily, inf failed inside generate
        raise ArenaError(f"temperature must be a finite number >= 0, got {temperature}")
    if max_new_tokens < 1:
        raise ArenaError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not 0 < top_p <= 1:
        raise ArenaError(f"top_p must be in (0, 1], got {top_p}")
    if not (isinstance(top_k, int) and top_k >= 0):
        raise ArenaError(f"top_k must be an integer >= 0 (0: off), got {top_k!r}")
    if not 0 <= min_p <= 1:
        raise ArenaError(f"min_p must be in [0, 1] (0: off), got {min_p}")


def make_hf_agent(spec: str, *, seed: int | None = None, device: str | None = None, **kwargs: Any) -> HFPolicy:
    """`tiny` or `hf:PATH_OR_ID` as an agent, named by its spec (so two models in one
    `arena play` stay apart). `hf:RUN` (a training run) plays the run's final model, else
    its newest checkpoint's, decoding as the run trained (`run_decoding`: the constraint,
    temperature, top-p, max tokens); a model folder inside a run (RUN/model) does the same.
    Otherwise the constraint is on for the tiny model only. Options after the spec set the
    decoding (`hf:PATH:temperature=0:max_tokens=16`, `tiny:constrain=no`; `decoding_options`)."""
    from arena.devices import check_device

    if device is None and os.environ.get("ARENA_DEVICE"):
        device = check_device(os.environ["ARENA_DEVICE"], flag="ARENA_DEVICE")
    elif device is not None:
        check_device(device)
    device = device or _default_device()
    target, options = decoding_options(spec, "tiny" if spec.startswith("tiny") else "hf")
    check_decoding(**options)  # before the model loads
    model, tokenizer = load_model(target, device=device, flag="hf:",
                                  generation_only=kwargs.get("static_cache") is not False)
    for key, value in agent_kwargs(target.removeprefix("hf:"), options).items():
        kwargs.setdefault(key, value)
    kwargs.setdefault("name", spec)
    return HFPolicy(model, tokenizer, seed=seed or 0, **kwargs)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
