"""What arena does to a model's forward, on the architectures its users train, not only the
tiny model's Qwen2: Qwen3 (SPIRAL's and SPICE's base family), Llama (AZR's baselines),
Mistral (a bare `sliding_window`, no `layer_types`), Gemma 2 (sliding and full layers
alternating) and a Qwen3 mixture of experts. Each is the tiny model under that
architecture (`tiny_model_path({"model_type": ...})`: the tiny tokenizer, random weights).

For each: the loss's shared prompt prefix (`arena.prefix`) gives the plain forward's
log-probs and gradients, with and without gradient checkpointing (or, where a cache layer
trims what it holds under checkpointing, falls back to the plain forward), and greedy
constrained generation with the context prefilled once plays the plain batch's tokens.
"""

from __future__ import annotations

import pytest
import torch
from test_prefix import _batch, _logps_and_grads

ARCHITECTURES = {
    "qwen3": {"model_type": "qwen3"},
    "llama": {"model_type": "llama"},
    "mistral": {"model_type": "mistral", "sliding_window": 32},
    "gemma2": {"model_type": "gemma2", "sliding_window": 32},
    "qwen3_moe": {"model_type": "qwen3_moe", "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64,
                  "decoder_sparse_step": 1},
}
#: Architectures whose cache trims a sliding window: under checkpointing the loss runs plain.
SLIDING = {"mistral", "gemma2"}


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def architecture(request):
    from arena.agents.hf import load_model
    from arena.agents.tiny import tiny_model_path

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tokenizer = load_model(str(tiny_model_path(ARCHITECTURES[request.param])), device="cpu")
    yield request.param, model, tokenizer
    torch.set_num_threads(threads)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_the_losss_shared_prefix_gives_the_plain_forward(architecture, checkpointing):
    from arena.prefix import plan, shared_prefix_logits

    name, model, tokenizer = architecture
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        ids, mask, completion, cmask = _batch(tokenizer, ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"])
        keep = completion.size(1)
        plain = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits[:, :-1]
        logps0, grads0 = _logps_and_grads(model, plain, completion, cmask)
        groups = plan(model, ids, mask, keep)
        if checkpointing and name in SLIDING:
            assert groups is None  # the caller's plain forward
            return
        assert groups is not None
        logps1, grads1 = _logps_and_grads(model, shared_prefix_logits(model, groups, keep), completion, cmask)
        torch.testing.assert_close(logps1, logps0, atol=1e-5, rtol=1e-5)
        for key, grad in grads0.items():
            if grad is not None:
                torch.testing.assert_close(grads1[key], grad, atol=1e-5, rtol=1e-4, msg=key)
    finally:
        model.gradient_checkpointing_disable()


def test_generation_with_the_context_prefilled_once_plays_the_plain_batch(architecture):
    from arena.agents.hf import HFPolicy

    from arena.rollout import play

    _, model, tokenizer = architecture
    model.eval()
    played = {}
    for share in (False, True):
        policy = HFPolicy(model, tokenizer, constrain=True, temperature=0.0, share_prefix=share)
        episodes = play("spiral/TicTacToe-v0", [policy], 8, seed=3, concurrency=8)
        played[share] = [(t.token_ids, t.logprobs) for e in episodes for t in e.turns]
    assert [tokens for tokens, _ in played[True]] == [tokens for tokens, _ in played[False]]
    for (_, shared), (_, plain) in zip(played[True], played[False]):
        assert shared == pytest.approx(plain, abs=1e-4)
