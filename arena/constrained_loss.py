"""The loss's log-probs under the legal-action constraint, and the entropy bonus over the
legal actions: `ConstrainedLoss`, a mixin of `arena.trainer.SelfPlayTrainer` (the
deviations from TRL it makes are in that module's docstring).

A completion sampled under the constraint was drawn from the distribution renormalised over
the legal next tokens; the loss scores it under that same distribution (`illegal_mask`
sets the other tokens to -inf). Unconstrained batches go through TRL's own code, with the
prompt prefix that rows share run once (arena/prefix.py).
"""

from __future__ import annotations

import torch

from arena.prefix import forward, in_batch_order, plan, shared_prefix_logits


def constrained_positions(allowed: list, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """True at position t of row i when `allowed[i]` has a list for it (the token was
    decoded under the constraint); shape `shape[:2]`."""
    constrained = torch.zeros(shape[:2], dtype=torch.bool)
    for i, per_token in enumerate(allowed):
        if per_token:
            constrained[i, : min(len(per_token), shape[1])] = True
    return constrained.to(device)


def illegal_mask(allowed: list, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """True where the constraint rules a token out: at position t of row i with a list
    `allowed[i][t]`, every token id but those; nothing elsewhere (rows without a constraint
    (None), positions past their list). Built with one scatter, not a tensor op per position."""
    rows, cols, at_rows, at_cols, ids = [], [], [], [], []
    for i, per_token in enumerate(allowed):
        for t, legal in enumerate((per_token or [])[: shape[1]]):
            rows.append(i)
            cols.append(t)
            at_rows += [i] * len(legal)
            at_cols += [t] * len(legal)
            ids += legal
    constrained = torch.zeros(shape[:2], dtype=torch.bool)
    constrained[rows, cols] = True
    legal_ids = torch.zeros(shape, dtype=torch.bool)
    legal_ids[at_rows, at_cols, ids] = True
    return (constrained.unsqueeze(-1) & ~legal_ids).to(device)


def entropy_bonus_tokens(entropies: torch.Tensor, logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per token of each row, the entropy bonus's term: H_t + sg(sum_{t' > t} H_t') log pi(y_t),
    with H_t the entropy of the constrained next-token distribution at t (0 where `mask` is
    not) and sg a stop-gradient.

    The entropy of the action, H(a) = E_y[sum_t H_t] (the chain rule over the action's
    tokens), has the gradient E_y[sum_t grad H_t + (sum_{t' > t} H_t') grad log pi(y_t)]: the
    second part moves mass between branches that lead to different later entropies. With
    H_t alone, the bonus pushed towards uniform at each branching token, not over actions: in
    Liar's Dice, with `[Call]` one branch at the first token and 15 bids below the other, to
    P(`[Call]`) = 0.5 instead of 1/16 (a review of the math). Where every action branches at
    one token (Kuhn Poker, TicTacToe) the later entropies are 0 and this is H_t exactly."""
    h = entropies * mask
    later = h.flip(-1).cumsum(-1).flip(-1) - h
    return h + later.detach() * logps * mask


#: TRL's loss types whose normaliser counts rows (a mean over rows, or rows x max length)
#: rather than completion tokens.
ROW_AVERAGED = ("grpo", "sapo", "dr_grpo", "luspo")


def reduce_like_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, *, num_items: torch.Tensor,
                     processes: int, accumulation: int, steps_per_generation: int, max_length: int) -> torch.Tensor:
    """A per-token quantity x (rows x tokens, 0 where `mask` is) reduced as TRL 1.16's
    `GRPOTrainer._compute_loss` reduces its per-token loss for `loss_type`, in training, with
    n_i the tokens of row i, B the rows, G the accumulation steps:

    - grpo, sapo: mean_i (sum_t x_it / n_i) / G
    - bnpo: sum x / sum n / G
    - dr_grpo: sum x / (B * max_length) / G
    - luspo: mean_i sum_t x_it / G
    - dapo, cispo, vespo: sum x / (num_items / processes * G / steps_per_generation)

    so that a term added to the loss this way weighs against the policy term of the same
    tokens alike whatever else is in the batch (the entropy bonus over the legal actions,
    in a batch mixing constrained and free-text rows)."""
    x = per_token * mask
    if loss_type in ("grpo", "sapo"):
        total = (x.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        total = x.sum() / mask.sum().clamp(min=1)
    elif loss_type == "dr_grpo":
        total = x.sum() / (x.size(0) * max_length)
    elif loss_type == "luspo":
        total = x.sum(-1).mean()
    elif loss_type in ("dapo", "cispo", "vespo"):
        return x.sum() / (num_items.clamp(min=1) / processes * accumulation / steps_per_generation)
    else:
        raise ValueError(f"unknown loss type {loss_type!r}")
    return total / accumulation


class ConstrainedLoss:
    """`GRPOTrainer`'s log-probs and loss with arena's constraint and entropy bonus; the
    trainer sets `_allowed` (the batch's per-token legal ids) around each loss."""

    def _compute_loss(self, model, inputs):
        self._allowed = inputs.get("allowed")
        self._entropy_tokens = None
        try:
            loss = super()._compute_loss(model, inputs)
            self.legal_entropy_coef = self.config.entropy_coef_at(self.state.global_step)
            if self.legal_entropy_coef and self._entropy_tokens is not None:
                # entropy bonus over the legal actions, reduced as this loss type reduces its
                # per-token loss, so that it weighs against the policy term of the same tokens
                # alike in any mix of constrained and free-text rows (divided by the whole
                # batch's tokens under every loss type, grpo's weight fell with the share of
                # free text and dr_grpo's was max_new_tokens / the action's length too large)
                loss = loss - self.legal_entropy_coef * reduce_like_loss(
                    self._entropy_tokens, inputs["completion_mask"], self.loss_type,
                    num_items=inputs["num_items_in_batch"], processes=self.accelerator.num_processes,
                    accumulation=self.current_gradient_accumulation_steps,
                    steps_per_generation=self.args.steps_per_generation, max_length=self.max_completion_length)
            if self.loss_type in ROW_AVERAGED and "row_scale" in inputs:
                # these losses average over a micro-batch's rows, filler rows included
                # (`SelfPlayTrainer._batch`): scaled as if only the kept rows had been split
                loss = loss * inputs["row_scale"]
            elif self.loss_type == "bnpo" and "row_scale" in inputs:
                # bnpo: each micro-batch's token mean, summed over micro-batches / their count;
                # a micro-batch of filler rows alone (TRL shuffles before it splits) added 0 and
                # still counted. Weighted by its share of the kept rows instead: without
                # fillers each micro-batch's weight stays 1 / count, as in TRL
                real = (inputs["completion_mask"].sum(dim=1) > 0).to(loss.dtype).mean()
                loss = loss * inputs["row_scale"] * real
            return loss
        finally:
            self._allowed = None
            self._entropy_tokens = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, **kwargs):
        allowed = self._allowed
        # a mixture of experts' load-balancing loss (TRL asks for it whenever the model has a
        # router): over every token of each row, so no prefix runs once for several rows
        aux_loss = bool(kwargs.get("compute_aux_loss"))
        plain = any(v is not None and v is not False for k, v in kwargs.items() if k != "compute_aux_loss")  # images
        # the prompt prefix the rows share runs once (arena/prefix.py)
        share = self.share_prefix and not plain and not aux_loss
        groups = plan(model, input_ids, attention_mask, logits_to_keep) if share else None
        if not allowed or plain:
            if groups is None:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                    compute_entropy=compute_entropy, **kwargs)
            return self._shared_prefix_fused_logps(model, groups, logits_to_keep, compute_entropy)
        aux = None
        with self.accelerator.autocast():
            if groups is not None:
                logits = shared_prefix_logits(model, groups, logits_to_keep)
            else:
                router = {"output_router_logits": True} if aux_loss else {}
                out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1,
                            **router)
                logits = out.logits[:, :-1, :]
                aux = out.aux_loss if aux_loss else None
        logits = logits.float() / self.temperature
        logits = logits.masked_fill(illegal_mask(allowed, logits.shape, logits.device), float("-inf"))
        logps_all = torch.log_softmax(logits, dim=-1)
        targets = input_ids[:, -logits_to_keep:]
        logps = logps_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        # padding positions may hold a token outside the allowed set: keep them finite (masked later)
        logps = torch.where(torch.isfinite(logps), logps, torch.zeros_like(logps))
        entropies = None
        if compute_entropy:
            p = logps_all.exp()
            entropies = -(p * torch.where(torch.isfinite(logps_all), logps_all, torch.zeros_like(logps_all))).sum(-1)
            if torch.is_grad_enabled():
                # over the constrained tokens only: a free-text row of a mixed batch (an env
                # without legal actions) would add its whole vocabulary's entropy
                width = entropies.size(1)
                mask = attention_mask[:, -width:].bool() & constrained_positions(allowed, entropies.shape, entropies.device)
                self._entropy_tokens = entropy_bonus_tokens(entropies, logps, mask.to(entropies.dtype))
            entropies = entropies.detach()
        return logps, entropies, aux

    def _shared_prefix_fused_logps(self, model, groups, logits_to_keep: int, compute_entropy: bool):
        """TRL's log-probs and entropies (its fused LM head, labels on the completion tokens
        only, as in `GRPOTrainer._get_per_token_logps_and_entropies`), with each group's
        shared prompt prefix run once (arena/prefix.py)."""
        logps, entropies = [], []
        for group in groups:
            labels = group.input_ids.masked_fill(group.attention_mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            with self.accelerator.autocast():
                out = forward(model, group, labels=labels, fused_lm_head=True)
            logps.append(out.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(out.entropy[:, -logits_to_keep:])
        return in_batch_order(logps, groups), in_batch_order(entropies, groups) if compute_entropy else None, None
