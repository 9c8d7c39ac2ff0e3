"""The weights a generating copy of the trained model loads, LoRA merged in.

Three places generate from a copy of the policy rather than the trained model itself: the
bf16 static-cache copy of the `hf` backend on CUDA (`HFPolicy.sync_weights`), the vLLM engine
(`VLLMPolicy.sync_weights`) and the Ray actors (`arena.ray_rollout`). Each copy is a plain
model, so with LoRA (`--lora-r`) it needs `W + sum_a scale_a * B_a A_a` for every adapted
layer, under the base model's own names. `merged_weights` computes that from the PEFT
model without touching it: merging the adapters into the trained weights and unmerging them
after (PEFT's `merge_adapter` / `unmerge_adapter`, what TRL does before a vLLM push) leaves
`(W + d) - d`, which in float arithmetic is not always `W`, so the trained weights would
drift a little at every push.

`bf16_copy` makes the `hf` backend's copy, lending it the weights the trained model already
holds in bf16 (views, so they sit in GPU memory once), and `fill` refreshes the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def merged_weights(model: Any) -> Mapping[str, Any]:
    """The model's weights for a plain copy of it: its state dict, or for a PEFT model the
    base weights with the active LoRA adapters added in (`W + get_delta_weight(a)`), under
    the base model's keys (`.base_layer.` dropped, no `lora_` factors). Tensors stay where
    they are (device, dtype); those without an adapter are the model's own (views).

    For a PEFT model the result is a `MergedWeights` mapping that computes each adapted
    weight when it is read: a caller going through it (a sync copying into its module, the
    Ray actors' CPU copy) holds one merged weight at a time, not a second copy of every
    adapted weight with its delta beside it (twice the adapted weights, in the adapters'
    precision, for a moment at every sync).

    An adapter on a parameter rather than a layer (PEFT's `ParamWrapper`: `all-linear`
    adapts a mixture of experts' fused expert tensors so, nesting one wrapper per tensor)
    adds its delta to that parameter (`parameter_name`)."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    if not hasattr(model, "peft_config"):
        return dict(model.state_dict())
    return MergedWeights(model.get_base_model())


class MergedWeights(Mapping):
    """`merged_weights` of a PEFT model (its base model given): base key -> weight, each
    adapted one computed (under `torch.no_grad`) when read."""

    def __init__(self, base: Any):
        self._adapters: dict[str, list[tuple[Any, list[str]]]] = {}
        for name, module in base.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight") and not getattr(module, "merged", False):
                adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
                if adapters and not getattr(module, "disable_adapters", False):
                    target = f"{_base_key(name)}.{getattr(module, 'parameter_name', 'weight')}"
                    self._adapters.setdefault(target, []).append((module, adapters))
        self._base = _unmerged(base)

    def __getitem__(self, key: str) -> Any:
        import torch

        value = self._base[key]
        if key not in self._adapters:
            return value
        with torch.no_grad():
            return value + sum(module.get_delta_weight(a) for module, adapters in self._adapters[key] for a in adapters)

    def __contains__(self, key: object) -> bool:  # without computing the weight
        return key in self._base

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def bf16_copy(model: Any) -> tuple[Any, dict[str, int]]:
    """A plain bf16 module of `model` to generate from, and its lent weights: state-dict key
    -> data pointer.

    Weights the model already holds in bf16 (`--dtype bfloat16`, or `auto` on a bf16
    checkpoint: full fine-tuning of a real-size model on one GPU) are lent, not copied: the
    module's parameters are views of the trained ones, so no second set of them sits in GPU
    memory and `fill` has nothing to copy (the optimizer steps them in place). The rest is
    copied, cast to bf16 tensor by tensor (an fp32 model; a head `--cast-lm-head-to-fp32`
    keeps in fp32): never a second full-precision copy, even for a moment. A PEFT model is
    copied with its adapters merged in, lending only what no adapter touches (with
    `all-linear`: the embeddings, the head, the norms); a weight under a `base_layer` is
    always copied, as the merge writes into it, and the merged weights are then filled in
    from `merged_weights` (a merge of bf16 copies would round twice)."""
    import copy

    import torch

    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):  # a tied weight has several
        names.setdefault(id(p), []).append(name)
    memo: dict[int, Any] = {}  # what deepcopy takes for each parameter (tied ones stay tied)
    lent = set()
    for p in model.parameters():
        if p.dtype == torch.bfloat16 and not any("base_layer" in n or "lora_" in n for n in names[id(p)]):
            memo[id(p)] = torch.nn.Parameter(p.detach(), requires_grad=False)
            lent.add(p.data_ptr())
        else:  # cast as `Module.to` casts: floating-point tensors only
            data = p.detach().to(torch.bfloat16, copy=True) if p.is_floating_point() else p.detach().clone()
            memo[id(p)] = torch.nn.Parameter(data, requires_grad=False)
    out = copy.deepcopy(model, memo)
    peft = hasattr(out, "peft_config")
    if peft:
        out = out.merge_and_unload()
    bf16_parameters(out).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    views = {key: t.data_ptr() for key, t in out.state_dict().items() if t.data_ptr() in lent}
    if peft:
        fill(out, merged_weights(model), views)
    return out, views


def bf16_parameters(module: Any) -> Any:
    """`module` with its floating-point parameters cast to bf16 in place, its buffers left as
    they are: `Module.to(torch.bfloat16)` also rounds the rotary frequencies (`inv_freq`),
    which transformers keeps in fp32 for a bf16 model, and a copy cast so encoded positions
    otherwise than the trained model (at position 1000 of a Qwen2-0.5B shape, angles off by
    up to 0.9 rad). Tied weights are one parameter: cast once."""
    import torch

    for p in module.parameters():
        if p.is_floating_point() and p.dtype != torch.bfloat16:
            p.data = p.data.to(torch.bfloat16)
    return module


def fill(module: Any, weights: Mapping[str, Any], views: dict[str, int]) -> None:
    """Copy `weights` (`merged_weights` of the trained model) into `module` (`bf16_copy`'s)
    by name, all but the lent ones (`views`)."""
    import torch

    from arena.errors import ArenaError

    target = module.state_dict()
    missing = sorted(set(target) - set(weights))
    if missing:
        raise ArenaError(f"the generation copy has weights the trained model lacks ({missing[0]}, ...): "
                         "the policy's model was replaced by another architecture")
    with torch.no_grad():
        for key in weights:  # one merged weight at a time (`MergedWeights`)
            if key not in views:
                target[key].copy_(weights[key])


def _base_key(key: str) -> str:
    """A PEFT key under the base model's name: every `base_layer` step dropped (wrappers
    nest: `experts.base_layer.base_layer.gate_up_proj` is `experts.gate_up_proj`)."""
    return ".".join(part for part in key.split(".") if part != "base_layer")


def checkpoint_format(model: Any, weights: Mapping[str, Any]) -> Mapping[str, Any]:
    """`weights` (a state dict of `model`, or `merged_weights(model)`) under the names and
    layout of the model's saved files, as `save_pretrained` writes them: what vLLM's loader
    reads (`is_checkpoint_format`). transformers 5 holds some weights otherwise in memory
    than on disk: a mixture of experts keeps each layer's experts in one 3-D tensor
    (`mlp.experts.gate_up_proj`) where its files have one matrix per expert and projection
    (`mlp.experts.0.gate_proj.weight`, ...), and vLLM's loader is written for the files
    (`is_checkpoint_format=True` says the weights are in their format). transformers' own
    reversal (`revert_weight_conversion`, what `save_pretrained` runs) converts. A model it
    leaves as it is (tried on the model's own tensors, which costs nothing) gets `weights`
    back untouched: `merged_weights`' lazy mapping stays lazy, and a push holds one merged
    weight at a time."""
    from transformers.core_model_loading import revert_weight_conversion

    plain = plain_model(model)
    own = _unmerged(plain)
    probe = revert_weight_conversion(plain, dict(own))
    if probe.keys() == own.keys() and all(probe[key] is value for key, value in own.items()):
        return weights
    return dict(revert_weight_conversion(plain, dict(weights)))


def _unmerged(base: Any) -> dict[str, Any]:
    """A plain (or PEFT base) model's own tensors under the plain model's keys, LoRA factors
    left out."""
    return {_base_key(key): value for key, value in base.state_dict().items() if ".lora_" not in key}


def plain_model(model: Any) -> Any:
    """The transformers model inside DDP's wrapper and PEFT's."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "peft_config") else model


def has_router(model: Any) -> bool:
    """Whether the model is a mixture of experts: its config declares router logits (TRL's
    test before it adds the router's load-balancing loss)."""
    return hasattr(plain_model(model).config.get_text_config(), "output_router_logits")
