"""The loss's forward with the prompt prefix that every row shares computed once.

Every sample of a step in one env starts with the same tokens: the chat template and the
game's rules are 230 of a Kuhn Poker prompt's 270 tokens. A forward over the padded batch
recomputes them for every row (and backpropagates through every copy). Here they run once,
as a batch of one whose key/value cache is repeated to every row; only the rest of each row
(its own prompt tail and its completion) runs batched. Autograd sums the rows' gradients
through the repeat, so the log-probs and the gradients are those of the plain forward, up
to float rounding (`tests/test_prefix.py`). Positions start at 0 at each row's first real
token, as in generation (the plain left-padded forward shifts them, which rotary embeddings
do not see).

Measured on Kuhn Poker with the tiny model (`python scripts/bench_train.py`, README): the
update's forward and backward run over ~6x fewer tokens.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

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
    """Gradient checkpointing turns the key/value cache off in training (transformers), so the
    prefix could not be handed over: such models take the plain forward."""
    for m in (model, getattr(model, "base_model", None), getattr(getattr(model, "base_model", None), "model", None)):
        if m is not None and getattr(m, "is_gradient_checkpointing", False):
            return False
    return True


def shared_prefix_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         logits_to_keep: int, min_shared: int = MIN_SHARED) -> torch.Tensor | None:
    """Logits `[B, logits_to_keep, V]` that predict the last `logits_to_keep` tokens of each
    row (the completions), as `model(input_ids, attention_mask, logits_to_keep=k + 1)
    .logits[:, :-1]` gives them; `None` when no group of rows shares `min_shared` leading
    prompt tokens or the model cannot take a cache (then the caller runs the plain forward).
    The rows are left-padded prompts in the first columns, then the completions.
    """
    rows, width = input_ids.shape
    prompt_width = width - logits_to_keep
    if rows < 2 or not uses_cache(model):
        return None
    lengths = attention_mask[:, :prompt_width].sum(1).tolist()
    ids = input_ids[:, :prompt_width].tolist()
    prompts = [row[prompt_width - n:] for row, n in zip(ids, lengths)]
    groups = prefix_groups(prompts, min_shared)
    if all(shared == 0 for _, shared in groups):
        return None
    parts, order = [], []
    for members, shared in groups:
        index = torch.tensor(members, device=input_ids.device)
        parts.append(_group_logits(model, input_ids[index], attention_mask[index], logits_to_keep, shared))
        order.extend(members)
    inverse = torch.empty(rows, dtype=torch.long, device=input_ids.device)
    inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(rows, device=input_ids.device)
    return torch.cat(parts)[inverse]


def _group_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                  shared: int) -> torch.Tensor:
    """One group's logits. Row i = `[pad]*s_i + prefix + rest_i + completion_i`: the prefix
    runs once, the suffix `[pad]*s_i + rest_i + completion_i` on its repeated cache, with
    positions `shared, shared+1, ...` over its real tokens and the pads masked as keys. With
    `shared` 0 it is the plain forward. Columns that are padding in every row are dropped."""
    rows, width = input_ids.shape
    first = int(attention_mask.argmax(1).min())  # the earliest real token of the group
    input_ids, attention_mask = input_ids[:, first:], attention_mask[:, first:]
    if shared == 0:
        return model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1).logits[:, :-1, :]
    width -= first
    starts = attention_mask.argmax(1)
    begin = int(starts[0])
    cache = model(input_ids=input_ids[:1, begin:begin + shared], use_cache=True).past_key_values
    cache.batch_repeat_interleave(rows)
    columns = torch.arange(width, device=input_ids.device)[None]
    in_prefix = (columns >= starts[:, None]) & (columns < starts[:, None] + shared)
    suffix_ids = input_ids[~in_prefix].view(rows, width - shared)
    suffix_mask = attention_mask[~in_prefix].view(rows, width - shared)
    positions = (shared + suffix_mask.long().cumsum(1) - 1).clamp(min=shared)
    mask = torch.cat([suffix_mask.new_ones(rows, shared), suffix_mask], dim=1)
    out = model(input_ids=suffix_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                use_cache=True, logits_to_keep=logits_to_keep + 1)
    return out.logits[:, :-1, :]
