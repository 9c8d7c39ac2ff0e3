"""The loss's shared-prefix forward gives the plain forward's log-probs and gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from arena.prefix import plan, prefix_groups, shared_prefix_logits
from arena.registry import make


def test_rows_are_grouped_by_the_prefix_they_share():
    a = list(range(40))
    seat0 = [[*a, 1, 7], [*a, 1, 8, 9], [*a, 1, 7, 5]]
    seat1 = [[*a[:10], 99, *a[11:], 3], [*a[:10], 99, *a[11:], 4, 4]]
    groups = prefix_groups([seat0[0], seat1[0], seat0[1], seat1[1], seat0[2]])
    assert sorted((sorted(rows), shared) for rows, shared in groups) == [([0, 2, 4], 41), ([1, 3], 40)]
    # capped at the shortest prompt less one: a row keeps a token whose logits predict its completion
    assert prefix_groups([a, [*a, 5]]) == [([0, 1], 39)]
    # one row, or fewer than MIN_SHARED tokens in common: the plain forward (0)
    assert prefix_groups([a]) == [([0], 0)]
    assert [shared for _, shared in prefix_groups([a[:10], a[:10]])] == [0, 0]


def _batch(tokenizer, envs):
    """Prompts of both seats and several envs (left-padded), and completions of 1-4 tokens
    (right-padded), as `SelfPlayTrainer._batch` builds them."""
    from arena.batch import pad_left, pad_right

    prompts, completions = [], []
    gen = torch.Generator().manual_seed(0)
    for i in range(24):
        env = make(envs[i % len(envs)])
        env.reset(seed=i)
        if i % 3:
            env.step(env.legal_actions(env.agent_selection)[0])
        ids = tokenizer.apply_chat_template(env.prompt(env.agent_selection), add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]
        prompts.append(list(ids))
        completions.append([*torch.randint(5, len(tokenizer) - 1, (1 + i % 4,), generator=gen).tolist(),
                            tokenizer.eos_token_id])
    p, pm = pad_left(prompts, tokenizer.pad_token_id)
    c, cm = pad_right(completions, tokenizer.pad_token_id)
    return torch.cat([p, c], 1), torch.cat([pm, cm], 1), c, cm


def _logps_and_grads(model, logits, completion, mask):
    model.zero_grad()
    logps = torch.log_softmax(logits.float(), -1).gather(-1, completion.unsqueeze(-1)).squeeze(-1) * mask
    logps.sum().backward()
    return logps.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
@pytest.mark.parametrize("envs", [["spiral/KuhnPoker-v0"], ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"]])
def test_shared_prefix_logits_equal_the_plain_forward(arena_cache, envs, checkpointing, monkeypatch):
    """Also under gradient checkpointing (TRL's default with CUDA), compared with the plain
    checkpointed forward; there the suffix layers really are replayed in the backward pass."""
    from arena.agents.hf import load_model
    from transformers.models.qwen2 import modeling_qwen2

    model, tokenizer = load_model("tiny", device="cpu")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    layer_calls = []
    layer_forward = modeling_qwen2.Qwen2DecoderLayer.forward
    monkeypatch.setattr(modeling_qwen2.Qwen2DecoderLayer, "forward",
                        lambda self, *a, **kw: layer_calls.append(1) or layer_forward(self, *a, **kw))
    ids, mask, completion, cmask = _batch(tokenizer, envs)
    keep = completion.size(1)
    plain = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits[:, :-1]
    logps0, grads0 = _logps_and_grads(model, plain, completion, cmask)
    groups = plan(model, ids, mask, keep)
    assert groups is not None and len(groups) == 2 * len(envs)  # one per env and seat
    layer_calls.clear()
    shared = shared_prefix_logits(model, groups, keep)
    assert shared.shape == plain.shape
    layers = model.config.num_hidden_layers
    # the batch repeats prompts: their distinct middles run once each (checkpointed too)
    middles = sum(g.middle_ids is not None for g in groups)
    assert middles >= 1
    assert all(g.middle_ids.size(0) < g.rows.numel() for g in groups if g.middle_ids is not None)
    stages = 2 * len(groups) + middles  # each group's prefix, its middles, its suffixes
    assert len(layer_calls) == stages * layers
    logps1, grads1 = _logps_and_grads(model, shared, completion, cmask)
    # checkpointed: the middles' and the suffixes' layers run again in the backward pass,
    # the prefixes' do not
    assert len(layer_calls) == (stages + (len(groups) + middles if checkpointing else 0)) * layers
    torch.testing.assert_close(logps1, logps0, atol=1e-5, rtol=1e-5)
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # the switches are back as they were
    assert all(layer.gradient_checkpointing == checkpointing and "_can_checkpoint_with_cache" not in vars(layer)
               for layer in model.model.layers)
    assert model.model.gradient_checkpointing == checkpointing


def test_no_sharing_for_one_row_or_with_a_sliding_window_under_checkpointing(arena_cache):
    """A sliding-window cache layer trims what it holds: such a checkpointed model takes the
    caller's plain forward (without checkpointing its cache serves as usual)."""
    from arena.agents.hf import load_model

    model, tokenizer = load_model("tiny", device="cpu")
    ids, mask, completion, _ = _batch(tokenizer, ["spiral/KuhnPoker-v0"])
    assert plan(model, ids[:1], mask[:1], completion.size(1)) is None
    model.gradient_checkpointing_enable()
    model.train()
    assert plan(model, ids, mask, completion.size(1)) is not None
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.config.sliding_window = 32
    assert plan(model, ids, mask, completion.size(1)) is None


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointed"])
def test_trls_fused_log_probs_with_a_shared_prefix_equal_trls_own(tmp_path, arena_cache, monkeypatch, checkpointing):
    """Free decoding: the loss's log-probs come from TRL's fused LM head; with the prefix
    shared they, the entropies and the gradients equal TRL's plain path (with gradient
    checkpointing as TRL sets it up, too)."""
    pytest.importorskip("trl")
    from arena.agents.hf import HFPolicy, load_model

    import arena.constrained_loss
    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer

    prefixes_run = []  # the shared path really ran (not TRL's own path twice)
    real_forward = arena.constrained_loss.forward
    monkeypatch.setattr(arena.constrained_loss, "forward",
                        lambda m, g, **kw: prefixes_run.append(g.prefix is not None) or real_forward(m, g, **kw))

    model, tokenizer = load_model("tiny", device="cpu")
    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, constrain=False,
                      gradient_checkpointing=checkpointing, out=str(tmp_path))
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer, constrain=False), tmp_path)
    try:
        if checkpointing:  # as `Trainer.train` switches it on
            assert trainer.args.gradient_checkpointing
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)
        model.train()
        ids, mask, completion, cmask = _batch(tokenizer, ["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"])
        results = []
        for share in (False, True):
            trainer.share_prefix = share
            model.zero_grad()
            logps, entropies, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, completion.size(1),
                                                                           compute_entropy=True)
            (logps * cmask).sum().backward()
            results.append((logps.detach() * cmask, entropies * cmask,
                            {n: p.grad.clone() for n, p in model.named_parameters()}))
        (logps0, ent0, grads0), (logps1, ent1, grads1) = results
        assert prefixes_run and all(prefixes_run)
        torch.testing.assert_close(logps1, logps0, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent1, ent0, atol=1e-5, rtol=1e-5)
        for name, g in grads0.items():
            torch.testing.assert_close(grads1[name], g, atol=1e-5, rtol=1e-4, msg=name)
    finally:
        trainer.writer.close()


def test_training_on_cpu_shares_the_prefix_without_checkpointing(tmp_path, arena_cache):
    pytest.importorskip("trl")
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer

    model, tokenizer = load_model("tiny", device="cpu")
    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, out=str(tmp_path))
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer, constrain=True), tmp_path)
    try:
        assert trainer.share_prefix and not trainer.args.gradient_checkpointing
    finally:
        trainer.writer.close()


def test_a_dropped_prefix_cache_is_an_error_not_wrong_log_probs(arena_cache, monkeypatch):
    """transformers before 5.15 drops the cache of every checkpointed layer (no
    `_can_checkpoint_with_cache`): such a model takes the plain forward; and a forward whose
    layers dropped the prefix fails (its mask counts the prefix) instead of returning the
    suffixes' log-probs alone."""
    import contextlib

    from arena.agents.hf import load_model
    from transformers.modeling_layers import GradientCheckpointingLayer

    import arena.prefix

    model, tokenizer = load_model("tiny", device="cpu")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids, mask, completion, _ = _batch(tokenizer, ["spiral/KuhnPoker-v0"])
    groups = plan(model, ids, mask, completion.size(1))
    assert groups is not None
    with monkeypatch.context() as m:
        m.delattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache")
        assert plan(model, ids, mask, completion.size(1)) is None
    monkeypatch.setattr(arena.prefix, "_suffix_run", lambda layers: contextlib.nullcontext())
    with pytest.raises(RuntimeError, match="must match the size"):
        shared_prefix_logits(model, groups, completion.size(1))


def test_repeated_prompts_run_their_middle_once_and_give_the_plain_forward(arena_cache):
    """Rows that ask the same prompt share its middle: one distinct middle per prompt, among
    them an empty one (a prompt one token longer than the prefix) beside longer ones; the
    log-probs and gradients are still the plain forward's. `prompt_cache` then leaves
    `generate` one prompt token per row (or a whole prompt that shares nothing)."""
    from arena.agents.hf import HFPolicy, load_model

    from arena.batch import pad_left, pad_right
    from arena.prefix import prompt_cache

    model, tokenizer = load_model("tiny", device="cpu")
    model.train()
    gen = torch.Generator().manual_seed(1)
    base = torch.randint(5, 900, (30,), generator=gen).tolist()
    distinct = [base[:21], base[:25], base, [*base[:20], 7, 8, 9]]
    prompts = [distinct[i % 4] for i in range(11)]
    completions = [torch.randint(5, 900, (1 + i % 3,), generator=gen).tolist() + [tokenizer.eos_token_id]
                   for i in range(12)]
    prompts.append([901, 902, *base[5:12]])  # shares nothing: a group of its own, the plain forward
    p, pm = pad_left(prompts, tokenizer.pad_token_id)
    c, cm = pad_right(completions, tokenizer.pad_token_id)
    ids, mask, keep = torch.cat([p, c], 1), torch.cat([pm, cm], 1), c.size(1)
    groups = plan(model, ids, mask, keep)
    (group,) = [g for g in groups if g.prefix is not None]
    assert [g.rows.tolist() for g in groups if g.prefix is None] == [[11]]
    assert group.prefix.size(1) == 20 and group.middle_ids.shape == (4, 9)
    assert sorted(group.middle_mask.sum(1).tolist()) == [0, 2, 4, 9]
    plain = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits[:, :-1]
    logps0, grads0 = _logps_and_grads(model, plain, c, cm)
    # the same under non-reentrant gradient checkpointing (transformers' default): the
    # middles run checkpointed and their recorded keys and values carry the rows' gradients
    for checkpointing in (False, True):
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            groups = plan(model, ids, mask, keep)
            assert [g.middle_ids.shape for g in groups if g.prefix is not None] == [(4, 9)]
        logps1, grads1 = _logps_and_grads(model, shared_prefix_logits(model, groups, keep), c, cm)
        torch.testing.assert_close(logps1, logps0, atol=1e-5, rtol=1e-5)
        for name, g in grads0.items():
            torch.testing.assert_close(grads1[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # reentrant checkpointing runs the forward without a graph (and each replay would run
    # the prefix's backward again): the caller's plain forward
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    assert plan(model, ids, mask, keep) is None
    model.gradient_checkpointing_disable()

    model.eval()
    ids, mask, cache = prompt_cache(model, prompts, tokenizer.pad_token_id)
    # the longest context, then the rest: one token, or the whole of the odd prompt
    assert cache.get_seq_length() == 29 and ids.size(1) == 29 + 9
    assert [ids[i][mask[i] == 1].tolist() for i in range(len(prompts))] == prompts
    # and `generate` on it writes what it writes on the plain batch (greedy)
    sequences = []
    for share in (False, True):
        policy = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=5, share_prefix=share)
        result, width = policy._run_generate(model, prompts, [None] * len(prompts), len(prompts), 30)
        sequences.append(result.sequences[:, width:])
    assert torch.equal(sequences[0], sequences[1])
    # generation (no gradients, no replay) under either checkpointing: each distinct prompt once
    for reentrant in (False, True):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        assert prompt_cache(model, prompts, tokenizer.pad_token_id)[2].get_seq_length() == 29


def test_rows_taken_from_a_shared_middle_get_the_same_gradient_every_time():
    """Rows that share a middle take it from the cache by `index_select`, whose backward sums
    in a fixed order: two identical training runs on 2 threads stay bit-identical (advanced
    indexing's backward adds with atomics across threads; it differed in 17 of 20 here)."""
    from transformers import DynamicCache

    from arena.prefix import _select_rows

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        keys = torch.randn(3, 4, 64, 32, requires_grad=True)
        rows = torch.tensor([0, 1, 2] * 4)
        upstream = torch.randn(12, 4, 64, 32)
        grads = []
        for _ in range(10):
            cache = DynamicCache()
            cache.update(keys * 1.0, keys * 2.0, 0)
            _select_rows(cache, rows)
            keys.grad = None
            ((cache.layers[0].keys + cache.layers[0].values) * upstream).sum().backward()
            grads.append(keys.grad.clone())
    finally:
        torch.set_num_threads(threads)
    assert cache.layers[0].keys.shape == (12, 4, 64, 32)
    assert all(torch.equal(grads[0], g) for g in grads[1:])
