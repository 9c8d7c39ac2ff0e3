"""The correction for the sampler's mismatch with the trained model (arena/correction.py):
the weights against hand-computed values, TRL's loss applying them, when it is on, and its
settings."""

import csv
import inspect
import math

import pytest

torch = pytest.importorskip("torch", reason="the correction weighs torch tensors (pip install torch)")

from arena.correction import MODES, importance_ratio, mismatch_metrics

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, 0.0, 0.0]])
SAMPLING = torch.tensor([[-1.5, -1.0, -0.5], [-0.1, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])  # row 1: one token, then padding


def test_token_weights_are_the_per_token_ratio_clamped_or_zeroed():
    e = math.exp
    # d = old - sampling on the completion tokens: row 0 (0.5, -1, 0), row 1 (0)
    truncated = importance_ratio(OLD, SAMPLING, MASK, "token_truncate", None, 1.5)
    assert torch.allclose(truncated, torch.tensor([[1.5, e(-1), 1.0], [1.0, 1.0, 1.0]]))  # e^0.5 = 1.65 > 1.5
    truncated = importance_ratio(OLD, SAMPLING, MASK, "token_truncate", 0.5, 3.0)
    assert torch.allclose(truncated, torch.tensor([[e(0.5), 0.5, 1.0], [1.0, 1.0, 1.0]]))
    masked = importance_ratio(OLD, SAMPLING, MASK, "token_mask", 0.5, 1.5)
    assert torch.allclose(masked, torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]))
    unbounded = importance_ratio(OLD, SAMPLING, MASK, "token_mask", None, None)
    assert torch.allclose(unbounded, torch.tensor([[e(0.5), e(-1), 1.0], [1.0, 1.0, 1.0]]))


def test_sequence_weights_are_one_per_completion_over_its_tokens_only():
    # row 0: exp(0.5 - 1 + 0) = e^-0.5; row 1: exp(0); padding adds nothing even where it differs
    sampling = SAMPLING.clone()
    sampling[1, 2] = -9.0  # a padding position: masked out
    truncated = importance_ratio(OLD, sampling, MASK, "sequence_truncate", 0.7, None)
    assert truncated.shape == (2, 1)
    assert torch.allclose(truncated, torch.tensor([[0.7], [1.0]]))  # e^-0.5 = 0.61 < 0.7
    masked = importance_ratio(OLD, sampling, MASK, "sequence_mask", None, 3.0)
    assert torch.allclose(masked, torch.tensor([[math.exp(-0.5)], [1.0]]))
    assert torch.equal(importance_ratio(OLD, sampling, MASK, "sequence_mask", 0.7, 3.0), torch.tensor([[0.0], [1.0]]))
    with pytest.raises(ValueError, match="unknown importance sampling mode 'sequence'"):
        importance_ratio(OLD, SAMPLING, MASK, "sequence", None, None)


def test_modes_are_trls():
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for mode in MODES:
        assert f'"{mode}"' in source, mode


def test_mismatch_metrics_over_completion_tokens_and_rows():
    ratio = importance_ratio(OLD, SAMPLING, MASK, "token_truncate", None, None)
    out = mismatch_metrics(OLD, SAMPLING, MASK, ratio)
    assert out["sampling/sampling_logp_difference/mean"] == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert out["sampling/sampling_logp_difference/max"] == pytest.approx(1.0)
    assert out["sampling/importance_sampling_ratio/min"] == pytest.approx(math.exp(-1))
    assert out["sampling/importance_sampling_ratio/max"] == pytest.approx(math.exp(0.5))
    assert out["sampling/importance_sampling_ratio/mean"] == pytest.approx((math.exp(0.5) + math.exp(-1) + 2) / 4)
    empty = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # a filler row (no completion) is not a sequence
    ratio = importance_ratio(OLD, SAMPLING, empty, "sequence_mask", None, None)
    out = mismatch_metrics(OLD, SAMPLING, empty, ratio)
    assert out["sampling/importance_sampling_ratio/mean"] == pytest.approx(math.exp(-0.5))


def _train(tmp_path, monkeypatch, *, static_cache: bool, **kw):
    """A short Kuhn Poker run, its batches captured; `static_cache` forces the CUDA
    generation path (a bf16 copy of the trained model) on this CPU."""
    from arena.agents.hf import HFPolicy

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer
    from arena.training import train

    monkeypatch.setitem(HFPolicy.__init__.__kwdefaults__, "static_cache", static_cache)
    batches = []
    batch_of = SelfPlayTrainer._batch

    def spy(self, kept):
        out = batch_of(self, kept)
        batches.append((out, {k: v.clone() for k, v in out.items() if isinstance(v, torch.Tensor)}, kept))
        return out

    monkeypatch.setattr(SelfPlayTrainer, "_batch", spy)
    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=8, eval_every=0,
                                save_every=100, out=str(tmp_path / "run"), **kw))
    return trainer, batches


def test_the_cpu_default_samples_with_the_trained_model_and_corrects_nothing(tmp_path, monkeypatch):
    from arena.report import write_plots

    trainer, batches = _train(tmp_path, monkeypatch, static_cache=False)
    assert trainer.sampler_exact and not trainer.sampling_correction and not trainer.use_vllm
    for out, _, _ in batches:
        assert not {"importance_sampling_ratio", "sampling_per_token_logps", "old_per_token_logps"} & set(out)
    assert "sampler.png" not in [p.name for p in write_plots(tmp_path / "run", tmp_path / "plots")]


def test_a_bf16_generation_copy_is_corrected_against_the_trained_models_own_log_probs(tmp_path, monkeypatch):
    """The CUDA path's bf16 copy samples: by default the old log-probs are the trained
    model's (a forward), the weights those of `importance_ratio` against the recorded ones,
    which really differ (bf16), and the mismatch is logged under TRL's names."""
    trainer, batches = _train(tmp_path, monkeypatch, static_cache=True)
    assert not trainer.sampler_exact and trainer.sampling_correction and trainer.use_vllm
    assert len(batches) == 2
    for out, saved, kept in batches:
        on = saved["completion_mask"].bool()
        recorded = torch.tensor([lp for s in kept for lp in s.logprobs])
        assert torch.allclose(saved["sampling_per_token_logps"][on], recorded)
        assert not torch.equal(saved["old_per_token_logps"][on], recorded)  # bf16 sampled, fp32 trained
        ratio = importance_ratio(saved["old_per_token_logps"], recorded.new_zeros(on.shape).masked_scatter(on, recorded),
                                 saved["completion_mask"], "sequence_mask", None, 3.0)
        assert torch.allclose(saved["importance_sampling_ratio"], ratio)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert all(0 < float(r["sampling/sampling_logp_difference/mean"]) < 0.1 for r in rows)
    assert all(float(r["sampling/importance_sampling_ratio/min"]) > 0 for r in rows)
    from arena.report import write_plots  # `arena report` plots the gap and the weights

    assert "sampler.png" in [p.name for p in write_plots(tmp_path / "run", tmp_path / "plots")]


def test_trls_loss_applies_the_weights_arena_supplies(tmp_path, monkeypatch):
    """The seam: TRL's loss multiplies each token's loss by inputs["importance_sampling_ratio"]
    once `use_vllm` is set after it is built: weights of 2 double the loss, weights of 0
    leave no gradient. A TRL upgrade that stops applying them fails here."""
    trainer, batches = _train(tmp_path, monkeypatch, static_cache=True, entropy_coef=0.0, num_iterations=1)
    _, saved, _ = batches[-1]
    inputs = dict(batches[-1][0])
    losses = []
    for weight in (1.0, 2.0, 0.0):
        inputs["importance_sampling_ratio"] = torch.full_like(saved["importance_sampling_ratio"], weight)
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        grad = sum(p.grad.abs().sum() for p in trainer.model.parameters() if p.grad is not None)
        losses.append((loss.item(), float(grad)))
    (one, g1), (two, _), (zero, g0) = losses
    assert one != 0 and two == pytest.approx(2 * one, rel=1e-5)
    assert zero == 0 and g0 == 0 and g1 > 0


def test_switched_off_with_a_bf16_copy_the_old_log_probs_still_come_from_a_forward(tmp_path, monkeypatch):
    """Without the correction, several passes over a batch need the old log-probs of the
    loss's numerics: the bf16 copy's recorded ones would start the ratio off 1, unclipped."""
    trainer, batches = _train(tmp_path, monkeypatch, static_cache=True, sampling_correction=False, num_iterations=2)
    assert not trainer.sampling_correction and not trainer.use_vllm
    for out, saved, kept in batches:
        assert "importance_sampling_ratio" not in out and "sampling_per_token_logps" not in out
        on = saved["completion_mask"].bool()
        recorded = torch.tensor([lp for s in kept for lp in s.logprobs])
        assert not torch.equal(saved["old_per_token_logps"][on], recorded)


def test_the_off_policy_mask_measures_against_the_recorded_log_probs(tmp_path, monkeypatch):
    from trl import GRPOTrainer

    trainer, batches = _train(tmp_path, monkeypatch, static_cache=False, off_policy_mask_threshold=0.5)
    assert trainer.off_policy_mask_threshold == 0.5 and not trainer.sampling_correction
    assert 'inputs.get("sampling_per_token_logps"' in inspect.getsource(GRPOTrainer._compute_loss)
    for out, saved, kept in batches:
        on = saved["completion_mask"].bool()
        assert torch.allclose(saved["sampling_per_token_logps"][on], torch.tensor([lp for s in kept for lp in s.logprobs]))


def test_the_kept_mass_of_a_truncating_sampler_is_its_filters():
    from arena.correction import kept_log_mass

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])) / 1.0
    assert kept_log_mass(logits, top_p=0.6).exp().tolist() == pytest.approx([0.8, 0.8])  # 0.2 falls out
    assert kept_log_mass(logits, top_k=1).exp().tolist() == pytest.approx([0.5, 0.5])
    assert kept_log_mass(logits, min_p=0.5).exp().tolist() == pytest.approx([0.8, 0.8])  # below 0.25
    assert kept_log_mass(logits).tolist() == [0.0, 0.0]
    # the order matters: min-p 0.5 first (vLLM) keeps 0.5 and 0.3, renormalised 0.625 and 0.375, of which
    # top-p 0.6 keeps 0.625 alone; top-p first (transformers) keeps 0.5 and 0.3, and min-p then keeps both
    assert kept_log_mass(logits[:1], min_p=0.5, top_p=0.6, order="vllm").exp().item() == pytest.approx(0.5)
    assert kept_log_mass(logits[:1], min_p=0.5, top_p=0.6, order="hf").exp().item() == pytest.approx(0.8)
    assert kept_log_mass(torch.full((1, 3), float("-inf")), top_p=0.5).tolist() == [0.0]  # padding


@pytest.mark.parametrize("truncation", [{"top_p": 0.5}, {"min_p": 0.6}], ids=["top_p", "min_p"])
def test_a_truncating_samplers_kept_mass_is_not_taken_for_mismatch(tmp_path, monkeypatch, truncation):
    """The trained model samples (exact, on CPU), truncated, with the correction on: its
    recorded log-probs are the truncated distribution's, the loss's the whole one's. With
    the kept mass added back the weights are 1 and the logged gap is 0; compared as they
    are (as TRL does), every weight was the kept mass and the gap was logged as drift."""
    trainer, batches = _train(tmp_path, monkeypatch, static_cache=False, sampling_correction=True, temperature=0.7,
                              **truncation)
    assert trainer.sampler_exact and trainer.sampling_correction
    truncated = 0.0
    for _, saved, kept in batches:
        on = saved["completion_mask"].bool()
        recorded = torch.tensor([lp for s in kept for lp in s.logprobs])
        adjusted = saved["sampling_per_token_logps"][on]
        truncated += float((recorded - adjusted).sum())  # -log Z >= 0 at each token
        assert torch.allclose(adjusted, saved["old_per_token_logps"][on], atol=1e-4)
        weights = saved["importance_sampling_ratio"]
        assert torch.allclose(weights, torch.ones_like(weights), atol=1e-3)
    assert truncated > 0.5  # the filters did cut: the test compares something
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").read_text().splitlines()))
    assert all(float(r["sampling/sampling_logp_difference/mean"]) < 1e-4 for r in rows)


def test_bad_settings_are_one_line_naming_the_fix(tmp_path, monkeypatch):
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.flags import parse_args

    for bad, message in (({"sampling_correction_mode": "token_trunc"}, "did you mean 'token_truncate'"),
                         ({"sampling_correction_min": 2.0, "sampling_correction_max": 1.0}, "must not exceed"),
                         ({"sampling_correction_max": 0.0}, "--sampling-correction-max > 0"),
                         ({"off_policy_mask_threshold": 0.0}, "--off-policy-mask-threshold is a KL")):
        with pytest.raises(ArenaError, match=message):
            TrainConfig(**bad)
    with pytest.raises(ArenaError, match="that is TRL's name; arena's is --sampling-correction-mode"):
        parse_args(["--vllm-importance-sampling-mode", "token_mask"])
    with pytest.raises(ArenaError, match="--loss-type vespo weighs whole sequences itself"):
        _train(tmp_path, monkeypatch, static_cache=True, loss_type="vespo")
