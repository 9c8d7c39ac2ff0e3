"""The prompt tokens that rows share, computed once: in the loss's forward and in generation.

A step's prompts mostly repeat each other: in Kuhn Poker 206 of a prompt's ~270 tokens (the
chat template and the rules) are the same for every sample of a seat, and whole prompts
repeat too (a seat with one of three cards has three distinct first prompts; 128 episodes
in flight ask them 128 times; GRPO asks each task's prompt once per sample). A forward over
the padded batch recomputes them for every row, and backpropagates through every copy.
Here the rows are grouped by the prefix they share (`prefix_groups`); each group's prefix
runs once, as a batch of one whose key/value cache is repeated; then the group's *distinct*
prompt middles (what follows the prefix, less the last prompt token) run once each, on
that cache; the cache is indexed to the rows, and only each row's last prompt token and
its completion run per row. A group whose prompts are all different runs each row's whole
tail (middle and last token) on the prefix instead. Autograd sums the rows' gradients
through the repeat and the index, so log-probs, entropies and gradients are those of the
plain forward up to float rounding (`tests/test_prefix.py`). Positions start at 0 at each
row's first real token, as in generation (the plain left-padded forward shifts them, which
rotary embeddings do not see). Generation (`prompt_cache`, the `hf` agent's dynamic cache)
fills its cache the same way and lets `generate` prefill only what is left of each row.

Measured with the tiny model on Kuhn Poker's default training step (128 episodes, 2 threads,
`arena train --env spiral/KuhnPoker-v0 --steps 30 --eval-every 0`, median of steps 6-30): a
step took 0.905 s with the prefix alone shared and takes 0.425 s with the distinct prompts
split out too (its rollout 0.387 -> 0.191 s), the same log-probs to float rounding.

`SelfPlayTrainer` calls `plan` once per forward, then `shared_prefix_logits` for arena's
constrained log-probs, or `forward` / `in_batch_order` for TRL's fused LM head.

Under gradient checkpointing (on by default with CUDA, where a real-size model needs it)
transformers drops the cache in checkpointed layers, because a layer that writes to the
cache would write a second time when the backward pass replays it. The repeated prefix is
held instead in a cache layer that never grows (`PrefixLayer`: `update` returns the
prefix's states and the new ones, and stores nothing), so replaying a layer reads the same
states and the layers may keep the cache (transformers' `_can_checkpoint_with_cache`). The
prefix itself (one row per group) runs without checkpointing; each suffix layer is
checkpointed as usual. The saving is largest there: TRL's checkpointed forward runs every
row's full prompt twice (forward and replay), this one each group's prefix once and each
distinct middle twice. The middles run checkpointed on their own copy of the prefix's
cache, which records the keys and values each layer passes it (`RecordingLayer`); the
rows' cache is the prefix's and these, indexed to the rows. A layer then holds its input
and the middles' keys and values, not their activations, and the replay reads the same
cache as the forward did. This needs non-reentrant checkpointing (transformers' default),
which keeps the autograd graph of the recorded states; with reentrant checkpointing the
caller runs its plain forward (`uses_cache`). Measured with checkpointing on (`python
scripts/bench_train.py --threads 1 --gradient-checkpointing on`, tiny model): arena's step
took 2.37 s when the rows ran their whole tails on the prefix and takes 1.29 s (plain
TRL: 6.8-7.6 s).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer
from transformers.modeling_layers import GradientCheckpointingLayer

MIN_SHARED = 16
"""A group of rows shares its prefix only when it has at least this many leading tokens."""


def prefix_groups(prompts: list[list[int]], min_shared: int = MIN_SHARED) -> list[tuple[list[int], int]]:
    """Rows grouped by the prompt prefix they share: `(row indices, shared length)` per group.

    Prompts are sorted; a group ends where two neighbours share fewer than half the longest
    neighbour overlap (and fewer than `min_shared`): in Kuhn Poker that splits the seats, whose
    prompts part at "You are Player 0/1" and meet again in the rules. A group's length is its
    rows' common prefix, at most its shortest prompt less one (each row keeps a prompt token
    of its own, whose logits predict the completion's first token); groups of one row, or
    sharing fewer than `min_shared` tokens, have length 0 (the plain forward).
    """
    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    overlaps = [_common(prompts[a], prompts[b]) for a, b in itertools.pairwise(order)]
    cut = max(min_shared, max(overlaps, default=0) // 2)
    groups: list[list[int]] = [[order[0]]] if order else []
    for row, overlap in zip(order[1:], overlaps):
        if overlap >= cut:
            groups[-1].append(row)
        else:
            groups.append([row])
    out = []
    for rows in groups:
        shared = min(_common(prompts[rows[0]], prompts[rows[-1]]), min(len(prompts[r]) for r in rows) - 1)
        out.append((rows, shared if len(rows) > 1 and shared >= min_shared else 0))
    return out


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def uses_cache(model: Any) -> bool:
    """Whether the rows' suffixes can run on a shared prefix's cache: always without gradient
    checkpointing; with it, when the checkpointed layers are transformers'
    `GradientCheckpointingLayer`s (they can keep a cache that never grows, `PrefixLayer`) and
    every layer attends to the full context (a sliding-window cache layer trims what it holds),
    on a transformers that lets a checkpointed layer keep a cache (`_can_checkpoint_with_cache`,
    since 5.15; earlier ones drop it), and with non-reentrant checkpointing (`use_reentrant=False`,
    transformers' default since 5.0; `_non_reentrant`). Otherwise the caller runs its plain
    forward. (A PEFT model answers for its base model. Without gradients, as in generation,
    there is no replay: any checkpointing will do. DDP's wrapper answers for its module.)"""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    if not getattr(model, "is_gradient_checkpointing", False):
        return True
    if not hasattr(GradientCheckpointingLayer, "_can_checkpoint_with_cache"):
        return False
    layers = _checkpointed_layers(model)
    return bool(layers) and full_attention(model) and (_non_reentrant(layers) or not torch.is_grad_enabled())


def _non_reentrant(layers: list[GradientCheckpointingLayer]) -> bool:
    """Every checkpointed layer uses non-reentrant checkpointing, whose forward builds the
    autograd graph and whose replay only recomputes what the backward unpacks. Reentrant
    checkpointing runs the forward without a graph and the replay's own backward: states
    recorded inside it would carry no gradient, and the replay of every row's layer would
    run the backward of the shared prefix's graph again (an error at the second)."""
    for layer in layers:
        keywords = getattr(getattr(layer, "_gradient_checkpointing_func", None), "keywords", None) or {}
        if keywords.get("use_reentrant", True) is not False:
            return False
    return True


def full_attention(model: Any) -> bool:
    """Every layer attends to the whole context (no sliding window, whose cache layer trims
    what it holds): a prefix's keys and values can be handed over in a plain cache. Read off
    the cache transformers builds for the model's config, whose layers are plain
    `DynamicLayer`s then: a config may say so by `layer_types` (Gemma, Qwen2) or by a bare
    `sliding_window` (Mistral)."""
    from transformers import DynamicCache

    model = getattr(model, "module", model)  # DistributedDataParallel
    config = getattr(model, "config", None)
    if config is None:
        return True
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def _checkpointed(model: Any) -> list[Any]:
    """The modules with gradient checkpointing on: the layers (`GradientCheckpointingLayer`)
    and the base model, which turns `use_cache` off while it is on."""
    return [m for m in model.modules() if getattr(m, "gradient_checkpointing", False) is True]


def _checkpointed_layers(model: Any) -> list[GradientCheckpointingLayer]:
    return [m for m in _checkpointed(model) if isinstance(m, GradientCheckpointingLayer)]


class PrefixLayer(DynamicLayer):
    """A cache layer that holds a shared prefix's keys and values and never grows: `update`
    returns `cat(prefix, new)` along the sequence and stores nothing. A forward over it is a
    pure function of its inputs, so gradient checkpointing may replay it (the replay reads the
    same states), and a group's cache serves one forward without being copied or trimmed."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


@contextlib.contextmanager
def _prefix_run(modules: list[Any]) -> Iterator[None]:
    """The prefix runs without checkpointing: checkpointed layers would drop the cache it must
    fill (one row per group: its activations are small)."""
    for module in modules:
        module.gradient_checkpointing = False
    try:
        yield
    finally:
        for module in modules:
            module.gradient_checkpointing = True


@contextlib.contextmanager
def _suffix_run(layers: list[GradientCheckpointingLayer]) -> Iterator[None]:
    """Checkpointed layers keep the `PrefixLayer` cache (it is only read). The flag is read
    when a layer is called; the backward's replay reuses the arguments of that call."""
    saved = [vars(layer).get("_can_checkpoint_with_cache") for layer in layers]
    for layer in layers:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            if value is None:
                del layer._can_checkpoint_with_cache  # the class's value again
            else:
                layer._can_checkpoint_with_cache = value


@dataclass
class Group:
    """Rows of the batch (`rows`, indices) and the inputs of their forward.

    `prefix` `[1, P]` None: the plain forward of `input_ids` / `attention_mask`. Otherwise
    `input_ids` are the rows' suffixes with their `position_ids`: without `middle_ids`,
    `[pad]*s_i + rest_i + completion_i` at positions `P, P+1, ...`; with them, each row's
    last prompt token and completion, after its middle. `middle_ids` `[U, M]` are the
    group's distinct middles (prompt tokens after the prefix, less the last one),
    left-padded, at `middle_positions` `P, P+1, ...`; `middle_of[i]` is row i's middle."""

    rows: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None = None
    prefix: torch.Tensor | None = None
    middle_ids: torch.Tensor | None = None
    middle_mask: torch.Tensor | None = None
    middle_positions: torch.Tensor | None = None
    middle_of: torch.Tensor | None = None


def plan(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
         min_shared: int = MIN_SHARED) -> list[Group] | None:
    """The groups of a batch of left-padded prompts followed by `logits_to_keep` completion
    columns (0: prompts alone, as generation has them); `None` when no group of rows shares
    `min_shared` leading prompt tokens or the model cannot take a cache (then the caller
    runs its plain forward). Columns that are padding in every row of a group are dropped.
    A group's distinct middles are split out when some rows repeat one."""
    rows, width = input_ids.shape
    prompt_width = width - logits_to_keep
    if rows < 2 or not uses_cache(model):
        return None
    lengths = attention_mask[:, :prompt_width].sum(1).tolist()
    ids = input_ids[:, :prompt_width].tolist()
    prompts = [row[prompt_width - n:] for row, n in zip(ids, lengths)]
    found = prefix_groups(prompts, min_shared)
    if all(shared == 0 for _, shared in found):
        return None
    device = input_ids.device
    out = []
    for members, shared in found:
        index = torch.tensor(members, device=device)
        group_ids, group_mask = input_ids[index], attention_mask[index]
        first = int(group_mask.argmax(1).min())  # the group's earliest real token
        group_ids, group_mask = group_ids[:, first:], group_mask[:, first:]
        if shared == 0:
            out.append(Group(index, group_ids, group_mask))
            continue
        starts = group_mask.argmax(1)
        begin = int(starts[0])
        prefix = group_ids[:1, begin:begin + shared]
        middles = [tuple(prompts[r][shared:-1]) for r in members]
        unique = list(dict.fromkeys(middles))
        if len(unique) < len(members) and any(unique):
            out.append(_with_middles(index, prefix, unique, middles, group_ids, group_mask, logits_to_keep))
            continue
        columns = torch.arange(group_ids.size(1), device=device)[None]
        in_prefix = (columns >= starts[:, None]) & (columns < starts[:, None] + shared)
        suffix_ids = group_ids[~in_prefix].view(len(members), -1)
        suffix_mask = group_mask[~in_prefix].view(len(members), -1)
        positions = (shared + suffix_mask.long().cumsum(1) - 1).clamp(min=shared)
        out.append(Group(index, suffix_ids, suffix_mask, positions, prefix))
    return out


def _with_middles(index: torch.Tensor, prefix: torch.Tensor, unique: list[tuple[int, ...]],
                  middles: list[tuple[int, ...]], group_ids: torch.Tensor, group_mask: torch.Tensor,
                  logits_to_keep: int) -> Group:
    """A group whose rows repeat prompts: its distinct middles (left-padded) and each row's
    suffix, the last prompt token and the completion (`Group`)."""
    shared, device = prefix.size(1), prefix.device
    width = max(len(m) for m in unique)
    middle_ids = group_ids.new_zeros(len(unique), width)
    middle_mask = group_mask.new_zeros(len(unique), width)
    for u, middle in enumerate(unique):
        if middle:
            middle_ids[u, width - len(middle):] = torch.tensor(middle, dtype=middle_ids.dtype)
            middle_mask[u, width - len(middle):] = 1
    middle_positions = shared + middle_mask.long().cumsum(1) - 1
    number = {m: u for u, m in enumerate(unique)}
    middle_of = torch.tensor([number[m] for m in middles], device=device)
    cut = group_ids.size(1) - logits_to_keep - 1  # the last prompt token's column
    suffix_ids, suffix_mask = group_ids[:, cut:], group_mask[:, cut:]
    lengths = shared + middle_mask.sum(1)[middle_of]
    positions = lengths[:, None] + suffix_mask.long().cumsum(1) - 1
    return Group(index, suffix_ids, suffix_mask, positions, prefix, middle_ids, middle_mask,
                 middle_positions.clamp(min=shared), middle_of)


def context(model: Any, group: Group) -> tuple[Any, torch.Tensor]:
    """The key/value cache of a group's shared context (its prefix, then its distinct
    middles), one row per row of the group, and the context's attention mask. The prefix
    runs without gradient checkpointing (`_prefix_run`); the middles run checkpointed when
    the model is (`_checkpointed_middles`)."""
    rows = group.input_ids.size(0)
    checkpointed = _checkpointed(model)
    with _prefix_run(checkpointed):
        cache = model(input_ids=group.prefix, use_cache=True, logits_to_keep=1).past_key_values
        ones = group.attention_mask.new_ones(rows, group.prefix.size(1))
        if group.middle_ids is None:
            cache.batch_repeat_interleave(rows)
            return cache, ones
        cache.batch_repeat_interleave(group.middle_ids.size(0))
        mask = torch.cat([group.middle_mask.new_ones(group.middle_ids.size(0), group.prefix.size(1)),
                          group.middle_mask], dim=1)
        if not checkpointed:
            cache = model(input_ids=group.middle_ids, attention_mask=mask, position_ids=group.middle_positions,
                          past_key_values=cache, use_cache=True, logits_to_keep=1).past_key_values
    if checkpointed:
        _checkpointed_middles(model, group, cache, mask)
    _select_rows(cache, group.middle_of)
    return cache, mask[group.middle_of]


class RecordingLayer(PrefixLayer):
    """A `PrefixLayer` that also keeps the states it was last given (`new`). The distinct
    middles run through it under gradient checkpointing: a checkpointed layer's replay in
    the backward pass records the same states again, which nobody reads by then."""

    new: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.new = (key_states, value_states)
        return super().update(key_states, value_states, *args, **kwargs)


def _checkpointed_middles(model: Any, group: Group, cache: Any, mask: torch.Tensor) -> None:
    """Run a group's distinct middles on its prefix's cache (one row per middle) with the
    model's checkpointed layers, and append their keys and values to the cache. Each layer
    holds its input and the middles' keys and values, not its activations: the middles'
    states are recorded inside the checkpointed forward (`RecordingLayer`), and
    non-reentrant checkpointing (`uses_cache`) keeps their autograd graph,
    so the rows' gradients reach them, and the replay recomputes what their backward needs."""
    _plain_layers(cache)
    # a cache of its own, never changed after: the backward's replay reads what the forward read
    record = copy.copy(cache)
    record.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in record.layers:
        layer.__class__ = RecordingLayer
    with _suffix_run(_checkpointed_layers(model)):
        model(input_ids=group.middle_ids, attention_mask=mask, position_ids=group.middle_positions,
              past_key_values=record, use_cache=False, logits_to_keep=1)
    for layer, recorded in zip(cache.layers, record.layers):
        if recorded.new is None:
            raise RuntimeError("a layer did not pass the middles' keys and values to the cache")
        keys, values = recorded.new
        layer.keys = torch.cat([layer.keys, keys], dim=-2)
        layer.values = torch.cat([layer.values, values], dim=-2)


def _plain_layers(cache: Any) -> None:
    """A checkpointed forward reads the shared context through plain cache layers only."""
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise TypeError(f"a checkpointed forward cannot share the prefix through a {type(layer).__name__}")


def _select_rows(cache: Any, rows: torch.Tensor) -> None:
    """`cache.batch_select_indices(rows)` by `index_select`: its backward (`index_add_`) sums
    the gradients of rows that share a middle in a fixed order, where advanced indexing's
    (`index_put_` with accumulate) adds them with atomics across CPU threads, and two identical
    runs on 2 threads drifted apart in the last bits by step 21."""
    for layer in cache.layers:
        if layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, rows)
            layer.values = layer.values.index_select(0, rows)


def forward(model: Any, group: Group, **kwargs: Any) -> Any:
    """The model's output for one group's rows (`kwargs`: `logits_to_keep`, or TRL's `labels`
    and `fused_lm_head`). The prefix and the distinct middles run once; their key/value
    cache, repeated and indexed to the rows, carries the gradient back to them."""
    if group.prefix is None:
        return model(input_ids=group.input_ids, attention_mask=group.attention_mask, **kwargs)
    layers = _checkpointed_layers(model)
    cache, context_mask = context(model, group)
    if layers:  # `uses_cache` admits full-attention models only
        _plain_layers(cache)
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = PrefixLayer
    mask = torch.cat([context_mask, group.attention_mask], dim=1)
    with _suffix_run(layers):  # (were the cache dropped, the mask, which counts the prefix, would not fit)
        return model(input_ids=group.input_ids, attention_mask=mask, position_ids=group.position_ids,
                     past_key_values=cache, use_cache=False, **kwargs)


def in_batch_order(parts: list[torch.Tensor], groups: list[Group]) -> torch.Tensor:
    """The groups' per-row outputs, concatenated back into the batch's row order."""
    order = torch.cat([g.rows for g in groups])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    return torch.cat(parts)[inverse]


def shared_prefix_logits(model: Any, groups: list[Group], logits_to_keep: int) -> torch.Tensor:
    """Logits `[B, logits_to_keep, V]` that predict the last `logits_to_keep` tokens of each
    row (the completions), in batch order, as `model(input_ids, attention_mask,
    logits_to_keep=k + 1).logits[:, :-1]` gives them for the batch that `plan` grouped."""
    parts = [forward(model, g, logits_to_keep=logits_to_keep + 1).logits[:, :-1, :] for g in groups]
    return in_batch_order(parts, groups)


def prompt_cache(model: Any, prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
    """`(input_ids, attention_mask, cache)` for `generate`: the shared context of each row
    (`plan`'s groups: the prefix, and the distinct middles where prompts repeat) already in
    the cache, so `generate` prefills only the rest of each row. None when no rows share
    `MIN_SHARED` tokens or the model has sliding-window layers (then the plain batch).

    Row i is `[pad | context | pad | rest]`: its group's context right-aligned in the first
    `C` columns (the longest context), the rest of its prompt left-padded after them; the
    cache holds the contexts' keys and values in those `C` columns (zeros where masked).
    Positions follow the attention mask as `generate` computes them, so every real token
    sits where it sits in the plain left-padded batch."""
    from transformers import DynamicCache

    if not full_attention(model):
        return None
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    with torch.no_grad():
        groups = plan(model, ids.to(device), mask.to(device), 0)
        if groups is None:
            return None
        contexts = []
        for group in groups:
            contexts.append(context(model, group) if group.prefix is not None else (None, group.attention_mask[:, :0]))
    width_c = max(m.size(1) for _, m in contexts)
    rests = [g.attention_mask.sum(1) for g in groups]
    width_r = max(int(r.max()) for r in rests)
    out_ids = torch.full((len(prompts), width_c + width_r), pad_id, dtype=torch.long)
    out_mask = torch.zeros_like(out_ids)
    keys: list[torch.Tensor] = []
    values: list[torch.Tensor] = []
    for group, (cache, context_mask), rest in zip(groups, contexts, rests):
        c = context_mask.size(1)
        suffix = group.input_ids.cpu()
        if c:  # the context's tokens, row by row: the prefix, then the row's middle
            context_ids = group.prefix.expand(len(group.rows), -1)
            if group.middle_ids is not None:
                context_ids = torch.cat([context_ids, group.middle_ids[group.middle_of]], dim=1)
            out_ids[group.rows.cpu(), width_c - c:width_c] = context_ids.cpu()
            out_mask[group.rows.cpu(), width_c - c:width_c] = context_mask.cpu()
        for j, (row, n) in enumerate(zip(group.rows.tolist(), rest.tolist())):
            out_ids[row, width_c + width_r - n:] = suffix[j, suffix.size(1) - n:]
            out_mask[row, width_c + width_r - n:] = 1
        if cache is None:
            continue
        if not keys:
            for layer in cache.layers:
                shape = (len(prompts), layer.keys.size(1), width_c, layer.keys.size(3))
                keys.append(layer.keys.new_zeros(shape))
                values.append(layer.values.new_zeros(shape))
        index = group.rows.to(device)
        for k, v, layer in zip(keys, values, cache.layers):
            k[index, :, width_c - c:] = layer.keys
            v[index, :, width_c - c:] = layer.values
    cache = DynamicCache()
    for i, (k, v) in enumerate(zip(keys, values)):
        cache.update(k, v, i)
    return out_ids, out_mask, cache

