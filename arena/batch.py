"""The loss's batch, as TRL's `GRPOTrainer._compute_loss` reads it, from a step's kept
samples: `LossBatch`, a mixin of `arena.trainer.SelfPlayTrainer`.

Rows are padded (prompts on the left, completions on the right) to a multiple of the
micro-batch count; the advantages are arena's; the old log-probs of the PPO ratio are the
recorded ones where they are the loss's, else a no-grad forward; the reference model's
log-probs (KL, `beta` > 0) another; and where the sampler is not the trained model in its
own numerics, the importance weights of `arena.correction` against the recorded log-probs
(the kept mass of a truncating sampler added back).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from arena.constrained_loss import illegal_mask
from arena.correction import importance_ratio, kept_log_mass, mismatch_metrics
from arena.data_parallel import merge_metrics
from arena.samples import Sample


def pad_left(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows into (ids, mask): prompts end where completions begin."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
    return ids, mask


def pad_right(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(max(len(r) for r in rows), 1)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
    return ids, mask


class LossBatch:
    """TRL's batch from arena's samples (the module docstring); mixed into the trainer."""

    def _batch(self, kept: list[Sample], num_items: int | None = None, min_rows: int = 1,
               kept_total: int | None = None, processes: int = 1) -> dict[str, Any]:
        """TRL's batch from the kept samples, padded to a multiple of the micro-batch count
        with empty rows (completion mask 0: they add nothing to the loss, nor to the
        normaliser of the token-normalised losses; `row_scale` undoes their count in the
        row-averaged ones and in bnpo's micro-batch means);
        only empty rows when nothing was kept (`_check_not_empty`). `num_items`: the loss's
        normaliser, the completion tokens of the whole batch over every process (TRL's
        `num_items_in_batch`); default: those of `kept`. `min_rows`: at least that many rows,
        empty ones added as above. `kept_total` and `processes`: the kept rows of every
        process and their number, in a data-parallel step (`kept` is this process's share):
        `row_scale = rows * processes / kept_total`, so that every kept row weighs the same
        once the processes' gradients are averaged, whatever share it is in."""
        device = self.accelerator.device
        chunks = self.args.steps_per_generation
        pad_id = self.processing_class.pad_token_id
        rows = list(kept)
        filler_prompt = rows[0].prompt_ids if rows else [pad_id]
        while not rows or len(rows) % chunks or len(rows) < min_rows:
            rows.append(Sample(env_id="", role="", episode=-1, prompt_ids=filler_prompt, completion_ids=[],
                               logprobs=[], reward=0.0, advantage=0.0))
        prompt_ids, prompt_mask = pad_left([s.prompt_ids for s in rows], pad_id)
        completion_ids, completion_mask = pad_right([s.completion_ids for s in rows], pad_id)
        width = completion_ids.size(1)
        out: dict[str, Any] = {
            "prompt_ids": prompt_ids.to(device), "prompt_mask": prompt_mask.to(device),
            "completion_ids": completion_ids.to(device), "completion_mask": completion_mask.to(device),
            "advantages": torch.tensor([s.advantage for s in rows], dtype=torch.float32, device=device),
            "num_items_in_batch": (completion_mask.sum() if num_items is None else torch.tensor(num_items))
            .clamp(min=1).to(device),  # 0 only in an empty step
            # rows over real rows: the loss types that average over rows count the fillers
            # (`ConstrainedLoss._compute_loss` scales them back)
            "row_scale": torch.tensor(len(rows) * processes / max(1, len(kept) if kept_total is None else kept_total),
                                      device=device),
        }
        if any(s.allowed for s in rows):
            out["allowed"] = [s.allowed if s.allowed else None for s in rows]
        stale = self.num_iterations > 1 or self.args.steps_per_generation > self.args.gradient_accumulation_steps
        forward_old = self.sampling_correction or not self.sampler_exact or self.config.truncates_sampling()
        recorded = None  # the sampler's log-probs, where something reads them
        if self.sampling_correction or self.config.off_policy_mask_threshold is not None or (stale and not forward_old):
            recorded = torch.zeros((len(rows), width), dtype=torch.float32)
            for i, s in enumerate(rows):
                if s.logprobs:
                    recorded[i, : len(s.logprobs)] = torch.tensor(s.logprobs)
            recorded = recorded.to(device)
            if self.config.truncates_sampling() and self.config.temperature > 0:
                # recorded under the sampler's truncated distribution (--top-p, --top-k, --min-p):
                # the kept mass added back, so that the ratio and the mask measure the sampler's
                # mismatch alone (TRL compares the two as they are: every token's weight carried
                # the kept mass, 0.5 at --top-p 0.5, and the mask took truncation for drift)
                recorded = recorded + self._kept_log_mass(out)
        if stale or self.sampling_correction:
            if forward_old:
                # the sampler's log-probs are not the loss's: another engine or dtype (the
                # ratio's first pass would carry the mismatch, unclipped), or a truncated,
                # renormalised distribution (--top-p, --top-k, --min-p: the ratio would be off
                # by the kept mass, 0.5 at --top-p 0.5, where the clip zeroes every negative
                # advantage's gradient). A forward pass, as TRL always takes them.
                out["old_per_token_logps"] = self._no_grad_logps(self.model, out)
            else:  # the trained model's own log-probs, as sampled: they spare that forward
                out["old_per_token_logps"] = recorded
        if self.sampling_correction or self.config.off_policy_mask_threshold is not None:
            out["sampling_per_token_logps"] = recorded  # what the off-policy mask measures against
        if self.sampling_correction:
            cfg, old, mask = self.config, out["old_per_token_logps"], out["completion_mask"]
            out["importance_sampling_ratio"] = ratio = importance_ratio(
                old, recorded, mask, cfg.sampling_correction_mode, cfg.sampling_correction_min,
                cfg.sampling_correction_max)
            mismatch = mismatch_metrics(old, recorded, mask, ratio)
            if self.data_parallel is not None:  # this process's share: merged over all of them
                mismatch = merge_metrics(self.data_parallel.gather([mismatch]))
            for name, value in mismatch.items():
                self._metrics["train"][name].append(value)
        if self.beta != 0.0:
            out["ref_per_token_logps"] = self._reference_logps(out)
        return out

    def _no_grad_logps(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Per-token log-probs of the batch's completions under `model`, without gradients,
        scored as the loss scores them (temperature, the constraint, the shared prefix), in
        as many chunks as the loss takes micro-batches (`steps_per_generation`), so that the
        forward fits wherever the training step's does."""
        keep = batch["completion_ids"].size(1)
        parts = []
        try:
            with torch.no_grad():
                for ids, mask, allowed in self._chunks(batch):
                    self._allowed = allowed
                    parts.append(self._get_per_token_logps_and_entropies(model, ids, mask, keep)[0])
        finally:
            self._allowed = None
        return torch.cat(parts)

    def _chunks(self, batch: dict[str, Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor, list | None]]:
        """(ids, attention mask, legal ids or None) of the batch's whole rows, in as many
        chunks as the loss takes micro-batches (`steps_per_generation`)."""
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        allowed = batch.get("allowed")
        size = -(-ids.size(0) // max(1, self.args.steps_per_generation))
        for rows in range(0, ids.size(0), size):
            part = slice(rows, rows + size)
            yield ids[part], mask[part], (allowed[part] if allowed else None)

    def _kept_log_mass(self, batch: dict[str, Any]) -> torch.Tensor:
        """`kept_log_mass` of the sampler's truncation at each completion token of the batch,
        from a forward of the trained model without gradients (temperature, the constraint),
        in the chunks of `_no_grad_logps`; the sampler's order of the filters: vLLM's for
        --backend vllm, transformers' otherwise."""
        cfg = self.config
        keep = batch["completion_ids"].size(1)
        parts = []
        with torch.no_grad():
            for ids, mask, allowed in self._chunks(batch):
                with self.accelerator.autocast():
                    logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep + 1).logits[:, :-1, :]
                logits = logits.float() / self.temperature
                if allowed and any(allowed):
                    logits = logits.masked_fill(illegal_mask(allowed, logits.shape, logits.device), float("-inf"))
                parts.append(kept_log_mass(logits, top_k=cfg.top_k, top_p=cfg.top_p, min_p=cfg.min_p,
                                           order="vllm" if cfg.backend == "vllm" else "hf"))
        return torch.cat(parts)

    def _reference_logps(self, batch: dict[str, Any]) -> torch.Tensor:
        """Log-probs of the completions under the reference model (KL term, `beta` > 0), as
        TRL computes them: its `ref_model`, or the PEFT base with the adapter disabled."""
        from trl.trainer.utils import use_adapter

        if self.ref_model is not None:
            return self._no_grad_logps(self.ref_model, batch)
        model = self.accelerator.unwrap_model(self.model)
        with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
            return self._no_grad_logps(self.model, batch)
