"""Correcting the loss for the sampler's mismatch with the trained model.

The episodes of a step are sampled by *something* and trained on by the model. Where that
something is the trained model itself, in its own numerics (the hf backend on CPU: the
same module, fp32), the log-probs recorded at sampling are the loss's and nothing needs
correcting. Elsewhere they are not: a vLLM engine (other kernels, bf16 on a GPU), the hf
backend's bf16 generation copy on CUDA, a learner whose loss runs in bf16 autocast. The
gap between the two distributions ("training-inference mismatch") biases the policy
gradient, and grows with length and with training (Yao et al. 2025, "Your efficient RL
framework secretly brings you off-policy RL training"; TRL's `vllm_importance_sampling_*`).

The correction is TRL's: the old log-probs come from a forward pass of the trained model
(not from the sampler), and each token's loss is weighted by an importance ratio of the
trained model over the sampler, truncated (TIS) or masked (MIS), per token or per
sequence. `importance_ratio` is that weight; TRL's loss multiplies it in
(`arena.trainer.SelfPlayTrainer`, where it is switched on).
"""

from __future__ import annotations

import math

import torch

#: TRL 1.16's `vllm_importance_sampling_mode` values (tests/test_correction.py pins them).
MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def importance_ratio(old: torch.Tensor, sampling: torch.Tensor, mask: torch.Tensor, mode: str,
                     low: float | None, high: float | None) -> torch.Tensor:
    """The importance weight of each completion token, the trained model over the sampler.

    With `d_t = m_t * (log pi_old(y_t) - log mu(y_t))` (m: the completion mask, pi_old: the
    trained model at sampling time, mu: the sampler):

        token_*:     r_t = exp(d_t)                          shape (B, T)
        sequence_*:  r   = exp(sum_t d_t)                    shape (B, 1), every token of the row
        *_truncate:  w = clamp(r, low, high)                 (TIS)
        *_mask:      w = r if low <= r <= high else 0        (MIS; a missing bound is no bound)

    Args:
        old, sampling: per-token log-probs (B, T) of the trained model and of the sampler.
        mask: 1 on completion tokens, 0 on padding (B, T).
        mode: one of `MODES`.
        low, high: the bounds (None: unbounded on that side).
    """
    if mode not in MODES:
        raise ValueError(f"unknown importance sampling mode {mode!r}; one of {', '.join(MODES)}")
    diff = (old - sampling) * mask
    if mode.startswith("sequence"):
        diff = diff.sum(dim=-1, keepdim=True)
    ratio = torch.exp(diff)
    if mode.endswith("truncate"):  # (torch.clamp takes no two missing bounds; TRL's call then fails)
        return ratio if low is None and high is None else torch.clamp(ratio, min=low, max=high)
    lo = -math.inf if low is None else low
    hi = math.inf if high is None else high
    return ratio.masked_fill((ratio < lo) | (ratio > hi), 0.0)


def mismatch_metrics(old: torch.Tensor, sampling: torch.Tensor, mask: torch.Tensor,
                     ratio: torch.Tensor | None) -> dict[str, float]:
    """TRL's names for how far the sampler is from the trained model, over the completion
    tokens: |log pi_old - log mu| (mean, max) and the importance weights (min, mean, max;
    per sequence in the sequence modes, over rows with a completion)."""
    keep = mask.bool()
    out: dict[str, float] = {}
    delta = (old - sampling).abs()[keep]
    if delta.numel():
        out["sampling/sampling_logp_difference/mean"] = delta.mean().item()
        out["sampling/sampling_logp_difference/max"] = delta.max().item()
    if ratio is not None:
        flat = ratio[keep] if ratio.size(-1) == mask.size(-1) else ratio[keep.any(dim=-1)].flatten()
        if flat.numel():
            out["sampling/importance_sampling_ratio/min"] = flat.min().item()
            out["sampling/importance_sampling_ratio/mean"] = flat.mean().item()
            out["sampling/importance_sampling_ratio/max"] = flat.max().item()
    return out


def kept_log_mass(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                  order: str = "hf") -> torch.Tensor:
    """log Z_t, the log of the probability mass a truncating sampler keeps at each position:

        Z_t = sum over the kept tokens v of softmax(l_t)_v

    from `logits` l (..., vocab) already divided by the temperature (and constrained). The
    sampler draws from the softmax over the kept tokens, so a kept token's recorded
    log-prob is log mu(y) - log Z_t: adding log Z_t back gives the whole distribution's,
    which the trained model's log-probs are compared with. The tokens kept are those
    transformers' warpers keep (`order="hf"`: top-k, then top-p, then min-p, as
    `generate` applies them) or vLLM's sampler (`"vllm"`: min-p, then top-k, then top-p).
    0 where nothing is truncated or the position has no finite logit (padding)."""
    from transformers.generation.logits_process import (
        MinPLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    if order not in ("hf", "vllm"):
        raise ValueError(f"unknown sampler order {order!r}; hf or vllm")
    warpers = {"top_k": TopKLogitsWarper(top_k) if top_k > 0 else None,
               "top_p": TopPLogitsWarper(top_p) if top_p < 1.0 else None,
               "min_p": MinPLogitsWarper(min_p) if min_p > 0.0 else None}
    flat = logits.reshape(-1, logits.size(-1)).float()
    scores = flat
    for name in ("top_k", "top_p", "min_p") if order == "hf" else ("min_p", "top_k", "top_p"):
        if warpers[name] is not None:
            scores = warpers[name](None, scores)
    out = torch.logsumexp(scores, dim=-1) - torch.logsumexp(flat, dim=-1)
    return torch.where(torch.isfinite(out), out, torch.zeros_like(out)).reshape(logits.shape[:-1])

