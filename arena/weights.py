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
"""

from __future__ import annotations

from typing import Any


def merged_weights(model: Any) -> dict[str, Any]:
    """The model's weights for a plain copy of it: its state dict, or for a PEFT model the
    base weights with the active LoRA adapters added in (`W + get_delta_weight(a)`), under
    the base model's keys (`.base_layer.` dropped, no `lora_` factors). Tensors stay where
    they are (device, dtype); those without an adapter are the model's own (views).

    An adapter on a parameter rather than a layer (PEFT's `ParamWrapper`: `all-linear`
    adapts a mixture of experts' fused expert tensors so, nesting one wrapper per tensor)
    adds its delta to that parameter (`parameter_name`)."""
    import torch

    model = getattr(model, "module", model)  # DistributedDataParallel
    with torch.no_grad():
        if not hasattr(model, "peft_config"):
            return dict(model.state_dict())
        base = model.get_base_model()
        deltas = {}
        for name, module in base.named_modules():
            if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight") and not getattr(module, "merged", False):
                adapters = [a for a in module.active_adapters if a in getattr(module, "lora_A", {})]
                if adapters and not getattr(module, "disable_adapters", False):
                    target = f"{_base_key(name)}.{getattr(module, 'parameter_name', 'weight')}"
                    deltas[target] = sum(module.get_delta_weight(a) for a in adapters)
        out = {}
        for key, value in base.state_dict().items():
            if ".lora_" in key:
                continue
            key = _base_key(key)
            out[key] = value + deltas[key] if key in deltas else value
        return out


def _base_key(key: str) -> str:
    """A PEFT key under the base model's name: every `base_layer` step dropped (wrappers
    nest: `experts.base_layer.base_layer.gate_up_proj` is `experts.gate_up_proj`)."""
    return ".".join(part for part in key.split(".") if part != "base_layer")


def checkpoint_format(model: Any, weights: dict[str, Any]) -> dict[str, Any]:
    """`weights` (a state dict of `model`, or `merged_weights(model)`) under the names and
    layout of the model's saved files, as `save_pretrained` writes them: what vLLM's loader
    reads (`is_checkpoint_format`). transformers 5 holds some weights otherwise in memory
    than on disk: a mixture of experts keeps each layer's experts in one 3-D tensor
    (`mlp.experts.gate_up_proj`) where its files have one matrix per expert and projection
    (`mlp.experts.0.gate_proj.weight`, ...), and vLLM's loader is written for the files
    (`is_checkpoint_format=True` says the weights are in their format). transformers' own
    reversal (`revert_weight_conversion`, what `save_pretrained` runs) converts; a model
    without such conversions passes through unchanged."""
    from transformers.core_model_loading import revert_weight_conversion

    return dict(revert_weight_conversion(plain_model(model), dict(weights)))


def plain_model(model: Any) -> Any:
    """The transformers model inside DDP's wrapper and PEFT's."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "peft_config") else model


def has_router(model: Any) -> bool:
    """Whether the model is a mixture of experts: its config declares router logits (TRL's
    test before it adds the router's load-balancing loss)."""
    return hasattr(plain_model(model).config.get_text_config(), "output_router_logits")
