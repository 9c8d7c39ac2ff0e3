"""The embedded default model: a tiny Qwen2-architecture model with its own tokenizer,
built on this machine (no download), saved with `save_pretrained` and loaded back
through the normal `from_pretrained` path like any other checkpoint.

- Tokenizer: byte-level BPE (the `tokenizers` library, as GPT-2 and Qwen2) trained on the
  prompts of arena's first nine built-in envs (`TOKENIZER_ENVS`: 16 seeded random games
  each) and their manuals, as they read when recipe 3 was made: that text is kept in
  `data/tiny_corpus.json.gz` (`corpus()`), so editing a prompt does not change the model
  (an edit to AZR's propose prompt once did, silently: a fresh machine built another model
  under the same cache name than a machine that had it cached),
  with Qwen2's normaliser and pre-tokenizer (any text still encodes, byte by byte),
  with Qwen2's chat special tokens and chat template. EOS is `<|im_end|>` (the end of an
  assistant turn), padding is `<|endoftext|>` on the left (decoder-only generation).
- Model: `Qwen2ForCausalLM` with a small config (`TINY_CONFIG`), randomly initialised
  from a fixed seed. head_dim 64 so that vLLM's CPU kernels accept it (16 is refused).

`tiny_model_path()` builds it once into `$ARENA_CACHE/models/tiny-<hash>` (default
`~/.cache/arena`) and returns the folder; the hash covers the config, the tokenizer
recipe and its envs, so a new recipe builds a new model. The
build writes into a temporary folder and renames it, so concurrent builders (pytest
workers, two runs) never see a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from arena.errors import ArenaError

TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 1,
    "num_key_value_heads": 1,
    "head_dim": 64,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}
TINY_MOE: dict[str, Any] = {
    "model_type": "qwen3_moe", "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
    "decoder_sparse_step": 1,
}
"""`tiny_model_path(TINY_MOE)`: the tiny model as a Qwen3 mixture of experts (four experts,
two per token, in both layers), for tests of what a router changes (TRL's load-balancing
loss, data-parallel training, weight pushes)."""
VOCAB_SIZE = 4096
MAX_TOKEN_CHARS = 32
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
               r"""|\s+(?!\S)|\s+""")
SEED = 0
TOKENIZER_ENVS: tuple[str, ...] = (
    "azr/Abduction-v0", "azr/Deduction-v0", "azr/Induction-v0", "azr/Mixed-v0", "spice/Corpus-v0",
    "spiral/KuhnPoker-v0", "spiral/KuhnPoker-v1", "spiral/SimpleNegotiation-v0", "spiral/TicTacToe-v0",
)
"""The envs whose text the tokenizer learns from: arena's built-in envs as of recipe 3, fixed.
Registering a new env (SPIRAL's evaluation games came later) does not change the default
model, so every run and every documented result stays reproducible; the new env's text still
encodes, byte-level where the vocabulary lacks it. Extending this list is a new model: bump
`RECIPE_VERSION` with it."""
RECIPE_VERSION = 3

PAD, BOS_CHAT, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """`$ARENA_CACHE`, default `~/.cache/arena`."""
    return Path(os.environ.get("ARENA_CACHE") or Path.home() / ".cache" / "arena")


CORPUS_FILE = Path(__file__).parent / "data" / "tiny_corpus.json.gz"
CORPUS_SHA256 = "131734c1e7691b08e3de3c63785f5fc76185ca2f78d0a42246a5eef5dc9b4c65"
"""The SHA-256 of the corpus file's JSON (unzipped): `env_corpus()` as recipe 3 made it."""


def corpus() -> list[str]:
    """The text the tokenizer is trained on: `env_corpus()` as it was when `RECIPE_VERSION`
    was made, read from `CORPUS_FILE` (a file whose text is not that is an error: a new
    corpus is a new model, with a new `RECIPE_VERSION`)."""
    import gzip

    raw = gzip.decompress(CORPUS_FILE.read_bytes())
    if hashlib.sha256(raw).hexdigest() != CORPUS_SHA256:
        raise ArenaError(f"{CORPUS_FILE} is not the tiny model's corpus of recipe {RECIPE_VERSION}: restore it "
                         "(a new corpus is a new model: bump RECIPE_VERSION and CORPUS_SHA256 with it)")
    return json.loads(raw)


def env_corpus(games_per_env: int = 16) -> list[str]:
    """Text to train a tokenizer on, from the envs as they are now: every env of
    `builtin_envs()`'s class manual and the chat prompts of a few seeded random games (all
    roles), plus every legal action seen. `CORPUS_FILE` holds it as recipe 3 made it; a new
    recipe writes it again."""
    import random

    from arena.registry import make

    texts: list[str] = ["system\nuser\nassistant\n" * 8]  # the chat roles, whole words
    for env_id in builtin_envs():
        env = make(env_id)
        texts.append(type(env).__doc__ or "")
        rng = random.Random(0)
        for seed in range(games_per_env):
            env.reset(seed=seed)
            for _ in range(60):
                if not env.agents:
                    break
                role = env.agent_selection
                if env.terminations.get(role) or env.truncations.get(role):
                    env.step(None)
                    continue
                texts.extend(m["content"] for m in env.prompt(role))
                legal = env.legal_actions(role)
                if legal:
                    texts.extend(legal)
                    env.step(rng.choice(legal))
                else:
                    env.step("[pass]")
    return texts


def builtin_envs() -> list[str]:
    """The envs of the tokenizer's corpus (`TOKENIZER_ENVS`; plugins and later envs never
    change the tiny model: runs stay reproducible)."""
    return sorted(TOKENIZER_ENVS)


def _fingerprint() -> str:
    blob = json.dumps({"config": TINY_CONFIG, "vocab": VOCAB_SIZE, "seed": SEED, "recipe": RECIPE_VERSION,
                       "max_token": MAX_TOKEN_CHARS, "envs": builtin_envs()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_tokenizer(texts: list[str]):
    """A byte-level BPE `PreTrainedTokenizerFast` with Qwen2's chat tokens and template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own pipeline (NFC, its split regex, byte level): transformers loads any
    # qwen2 checkpoint with `Qwen2Tokenizer`, which rebuilds exactly this pipeline around
    # the saved vocab and merges, so a tokenizer trained any other way would not survive
    # `from_pretrained` (checked after the build, in `build_tiny`).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=[PAD, BOS_CHAT, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  max_token_length=MAX_TOKEN_CHARS)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, bos_token=None,
                                   unk_token=None, padding_side="left", model_max_length=TINY_CONFIG["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny(path: str | os.PathLike[str], config_overrides: dict[str, Any] | None = None) -> Path:
    """Build the tiny model and tokenizer into `path` (overwritten). `config_overrides`
    changes the architecture (e.g. a Qwen2-0.5B shape for GPU benchmarks); its `model_type`
    another transformers architecture (`TINY_MOE`: a Qwen3 mixture of experts)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    path = Path(path)
    tokenizer = build_tokenizer(corpus())
    cfg = {**TINY_CONFIG, **(config_overrides or {})}
    model_type = cfg.pop("model_type", None)
    ids = {"vocab_size": len(tokenizer), "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(SEED)
    if model_type is None:  # the default model, built as it always was
        model = Qwen2ForCausalLM(Qwen2Config(**ids, **cfg))
    else:
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **ids, **cfg))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(path)
    sample = CHAT_TEMPLATE + " Available Moves: '[check]', '[bet]' 12 + 345 = 357"
    if reloaded(sample).input_ids != tokenizer(sample).input_ids:
        raise RuntimeError("the tiny tokenizer does not survive from_pretrained: its pipeline differs from Qwen2's")
    return path


def tiny_model_path(config_overrides: dict[str, Any] | None = None) -> Path:
    """The folder of the tiny model, built on first use (atomically) and cached."""
    key = _fingerprint()
    if config_overrides:
        key += "-" + hashlib.sha256(json.dumps(config_overrides, sort_keys=True).encode()).hexdigest()[:8]
    final = cache_dir() / "models" / f"tiny-{key}"
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-", dir=final.parent))
    try:
        build_tiny(tmp, config_overrides)
        if not (tmp / "config.json").exists():  # transformers saves on rank 0 only once torch.distributed is up
            raise ArenaError("the tiny model cannot be built outside process 0 of a torch.distributed group "
                             "(transformers writes its weights on rank 0 only): build it there first")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 kept the cache from every other user of it
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first: use its copy
            if not (final / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
