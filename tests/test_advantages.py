"""Advantage estimators against hand-computed values."""

from __future__ import annotations

import math

import pytest

from arena.advantages import default_estimator, grpo, rae, trr_pp


def test_rae_reads_the_baseline_before_updating_it():
    baselines: dict = {}
    keys = [("kuhn", "player_0"), ("kuhn", "player_1"), ("kuhn", "player_0"), ("kuhn", "player_0")]
    adv = rae([1.0, -1.0, 1.0, -2.0], keys, baselines, alpha=0.9)
    # player_0: b=0 -> A=1, b=0.1; A=1-0.1=0.9, b=0.09+0.1=0.19; A=-2-0.19=-2.19, b=0.171-0.2=-0.029
    assert adv == pytest.approx([1.0, -1.0, 0.9, -2.19])
    assert baselines[("kuhn", "player_0")] == pytest.approx(-0.029)
    assert baselines[("kuhn", "player_1")] == pytest.approx(-0.1)


def test_rae_masks_infra_samples_without_touching_the_baseline():
    baselines = {("g", "p"): 0.5}
    adv = rae([None, 1.0], [("g", "p"), ("g", "p")], baselines, alpha=0.5)
    assert adv == [None, 0.5]
    assert baselines[("g", "p")] == pytest.approx(0.75)


def test_grpo_group_of_equal_rewards_is_zero_and_std_is_unbiased():
    adv = grpo([1.0, 1.0, 1.0, 0.0, 1.0], ["a", "a", "a", "b", "b"])
    assert adv[:3] == [0.0, 0.0, 0.0]
    std = math.sqrt(0.5)  # unbiased std of (0, 1)
    assert adv[3:] == pytest.approx([-0.5 / (std + 1e-4), 0.5 / (std + 1e-4)])
    assert grpo([2.0, 0.0], ["g", "g"], scale=False) == [1.0, -1.0]
    # exactly 0, not rounding error: the sum of six -0.1s over 6 is not -0.1 (-1.4e-17 each, which
    # --filter-zero-advantage kept and the empty-step check counted as trained)
    for scale in ("group", "batch", "none"):
        assert grpo([-0.1] * 6, ["g"] * 6, scale=scale) == [0.0] * 6
    assert trr_pp([-0.1] * 6, ["k"] * 6) == [0.0] * 6
    assert grpo([0.7] * 3 + [0.1, 0.2], ["a"] * 3 + ["b"] * 2, scale="batch")[:3] == [0.0] * 3


def test_grpo_infra_sample_is_left_out_of_the_group_statistics():
    adv = grpo([None, 1.0, 0.0], ["g", "g", "g"], scale=False)
    assert adv == [None, 0.5, -0.5]  # mean over the two real samples, not (0 + 1 + 0) / 3


def test_grpo_lone_samples_are_compared_with_the_other_lone_samples_of_their_batch():
    # "c1".."c3": prompts seen once (SPICE's challenger, a document each); "r": a shared prompt
    rewards = [0.2, 0.6, 1.0, 1.0, 0.0, 0.5, None]
    groups = ["c1", "c2", "c3", "r", "r", "v1", "v2"]
    batches = ["challenger", "challenger", "challenger", "reasoner", "reasoner", "verifier", "verifier"]
    adv = grpo(rewards, groups, scale="none", batches=batches)
    assert adv[:3] == pytest.approx([-0.4, 0.0, 0.4])  # R - mean of (0.2, 0.6, 1.0), not 0 each
    assert adv[3:5] == [0.5, -0.5]  # a real group keeps its own mean
    assert adv[5:] == [0.0, None]  # the verifier's only unmasked lone sample: nothing to compare with
    std = math.sqrt(0.16)  # unbiased std of (0.2, 0.6, 1.0)
    assert grpo(rewards, groups, batches=batches)[:3] == pytest.approx([-0.4 / (std + 1e-4), 0.0, 0.4 / (std + 1e-4)])


def test_rae_updates_once_per_seat_but_once_per_turn_for_turns_with_their_own_reward():
    from arena.samples import Sample, assign_advantages

    def sample(env_id, episode, role, reward):
        return Sample(env_id=env_id, role=role, episode=episode, prompt_ids=[1], completion_ids=[5],
                      logprobs=[-0.1], reward=reward)

    # a game's seat: its two turns share its return; SPICE: four attempts, each its own reward
    # (turn credit), the second masked as infra; then four attempts that happen to be equal
    kuhn, spice = "spiral/KuhnPoker-v0", "spice/Corpus-v0"
    samples = [sample(kuhn, 0, "player_0", 1.0), sample(kuhn, 0, "player_0", 1.0),
               sample(spice, 1, "reasoner", 1.0), sample(spice, 1, "reasoner", None), sample(spice, 1, "reasoner", 0.0),
               sample(spice, 1, "reasoner", 0.0)]
    baselines: dict = {}
    assign_advantages(samples, {kuhn: "rae", spice: "rae"}, baselines, rae_alpha=0.5)
    assert [s.advantage for s in samples[:2]] == [1.0, 1.0]
    assert baselines[f"{kuhn}|player_0"] == pytest.approx(0.5)  # one update, not two
    # reasoner: b=0 -> A=1, b=0.5; masked; A=0-0.5, b=0.25; A=0-0.25, b=0.125
    assert [s.advantage for s in samples[2:]] == pytest.approx([1.0, None, -0.5, -0.25])
    assert baselines[f"{spice}|reasoner"] == pytest.approx(0.125)
    # equal rewards are still four attempts: four updates (once merged into one by their value)
    equal = [sample(spice, 2, "reasoner", 1.0) for _ in range(4)]
    assign_advantages(equal, {spice: "rae"}, baselines, rae_alpha=0.5)
    assert baselines[f"{spice}|reasoner"] == pytest.approx(1 - 0.875 / 16)


def test_trr_pp_normalises_per_key():
    adv = trr_pp([1.0, 3.0, 5.0, 5.0, None], ["x", "x", "y", "y", "x"])
    assert adv[:2] == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])
    assert adv[2:4] == [0.0, 0.0]
    assert adv[4] is None


def test_default_estimators_by_family():
    assert default_estimator("spiral/KuhnPoker-v0") == "rae"
    assert default_estimator("azr/Deduction-v0") == "trr++"
    assert default_estimator("spice/Corpus-v0") == "grpo"


def test_assign_advantages_grpo_scale_off_is_dr_grpo():
    from arena.samples import Sample, assign_advantages

    def sample(reward, prompt):
        return Sample(env_id="spiral/KuhnPoker-v0", role="player_0", episode=int(reward * 10), prompt_ids=prompt,
                      completion_ids=[5], logprobs=[-0.1], reward=reward)

    samples = [sample(2.0, [1]), sample(0.0, [1]), sample(1.0, [2])]
    assign_advantages(samples, {"spiral/KuhnPoker-v0": "grpo"}, {}, grpo_scale=False)
    assert [s.advantage for s in samples] == [1.0, -1.0, 0.0]  # R - mean of the same prompt's group
    assign_advantages(samples, {"spiral/KuhnPoker-v0": "grpo"}, {})
    std = math.sqrt(2.0)  # unbiased std of (2, 0)
    assert [s.advantage for s in samples] == pytest.approx([1 / (std + 1e-4), -1 / (std + 1e-4), 0.0])


def test_spice_challengers_are_one_group_however_their_documents_repeat():
    """SPICE's challenger reads a document drawn with replacement: per-prompt groups gave two
    invalid tasks on one document advantage 0 (no penalty) and the other samples the lone
    samples' mean. One group per role (`grpo_pooled_roles`): R - mean over the step's
    challengers, whichever documents repeat; the reasoner's n answers stay per question."""
    from arena.samples import Sample, assign_advantages

    def sample(role, reward, prompt):
        return Sample(env_id="spice/Corpus-v0", role=role, episode=0, prompt_ids=prompt, completion_ids=[5],
                      logprobs=[-0.1], reward=reward)

    challengers = [sample("challenger", r, p) for r, p in [(-0.1, [9, 7]), (-0.1, [9, 7]), (1.0, [9, 1]), (0.2, [9, 2])]]
    reasoners = [sample("reasoner", r, p) for r, p in [(1.0, [3]), (0.0, [3]), (1.0, [4]), (1.0, [4])]]
    assign_advantages(challengers + reasoners, {}, {})
    assert [s.advantage for s in challengers] == pytest.approx([-0.35, -0.35, 0.75, -0.05])  # mean 0.25, no std
    assert [s.advantage for s in reasoners] == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_truncated_samples_keep_their_advantage_and_leave_the_loss_only_when_asked():
    from arena.samples import Sample, assign_advantages, keep_for_loss

    def sample(reward, truncated=False):
        return Sample(env_id="spiral/KuhnPoker-v0", role="player_0", episode=0, prompt_ids=[1],
                      completion_ids=[5], logprobs=[-0.1], reward=reward, truncated=truncated)

    samples = [sample(2.0, truncated=True), sample(0.0), sample(1.0), sample(None, truncated=True), sample(1.0, True)]
    assign_advantages(samples, {"spiral/KuhnPoker-v0": "grpo"}, {}, grpo_scale=False)
    assert [s.advantage for s in samples] == [1.0, -1.0, 0.0, None, 0.0]  # the cut ones still in the group mean
    kept, dropped = keep_for_loss(samples, filter_zero_advantage=False)
    assert kept == [samples[i] for i in (0, 1, 2, 4)] and dropped == {"infra": 1}
    kept, dropped = keep_for_loss(samples, filter_zero_advantage=True, mask_truncated=True)
    assert kept == [samples[1]]  # each left-out sample counted once, under its first reason
    assert dropped == {"infra": 1, "truncated": 2, "zero_advantage": 1}


def test_entropy_schedule_holds_then_moves_linearly():
    from arena.config import TrainConfig

    cfg = TrainConfig(steps=100, entropy_coef=1.0, entropy_coef_final=0.2, entropy_hold=0.2)
    assert [cfg.entropy_coef_at(s) for s in (0, 20)] == [1.0, 1.0]
    assert cfg.entropy_coef_at(60) == pytest.approx(0.6)  # halfway from step 20 to 100
    assert cfg.entropy_coef_at(100) == pytest.approx(0.2)
    default = TrainConfig(steps=100, entropy_coef=1.0)  # hold 15%, then to a twentieth
    assert default.entropy_coef_at(15) == 1.0 and default.entropy_coef_at(100) == pytest.approx(0.05)


def test_entropy_schedule_geometric_takes_the_same_factor_every_step():
    from arena.config import TrainConfig
    from arena.errors import ArenaError

    cfg = TrainConfig(steps=100, entropy_coef=1.0, entropy_coef_final=0.01, entropy_hold=0.2, entropy_decay="geometric")
    assert [cfg.entropy_coef_at(s) for s in (0, 20)] == [1.0, 1.0]
    assert cfg.entropy_coef_at(60) == pytest.approx(0.1)  # halfway from step 20 to 100: sqrt(1.0 * 0.01)
    assert cfg.entropy_coef_at(40) / cfg.entropy_coef_at(30) == pytest.approx(cfg.entropy_coef_at(90) / cfg.entropy_coef_at(80))
    assert cfg.entropy_coef_at(100) == pytest.approx(0.01)
    to_zero = TrainConfig(steps=100, entropy_coef=1.0, entropy_coef_final=0.0, entropy_hold=0.0, entropy_decay="geometric")
    assert to_zero.entropy_coef_at(50) == pytest.approx(0.5) and to_zero.entropy_coef_at(100) == 0.0  # linear to 0
    with pytest.raises(ArenaError, match="unknown --entropy-decay 'geometrc'; did you mean 'geometric'"):
        TrainConfig(entropy_decay="geometrc")


def test_entropy_schedule_reaches_its_final_value_at_decay_end_and_stays():
    from arena.config import TrainConfig
    from arena.errors import ArenaError

    cfg = TrainConfig(steps=100, entropy_coef=1.0, entropy_coef_final=0.2, entropy_hold=0.2, entropy_decay_end=0.6)
    assert cfg.entropy_coef_at(20) == 1.0 and cfg.entropy_coef_at(40) == pytest.approx(0.6)  # halfway from 20 to 60
    assert [cfg.entropy_coef_at(s) for s in (60, 80, 100)] == pytest.approx([0.2, 0.2, 0.2])
    step = TrainConfig(steps=100, entropy_coef=1.0, entropy_coef_final=0.1, entropy_hold=0.5, entropy_decay_end=0.5)
    assert (step.entropy_coef_at(50), step.entropy_coef_at(51)) == (1.0, pytest.approx(0.1))  # a step change
    with pytest.raises(ArenaError, match="--entropy-decay-end .0.1. must not come before --entropy-hold"):
        TrainConfig(entropy_hold=0.15, entropy_decay_end=0.1)


@pytest.mark.parametrize("field", ["entropy_hold", "entropy_decay_end", "rae_alpha"])
def test_shares_outside_zero_one_are_refused(field):
    from arena.config import TrainConfig
    from arena.errors import ArenaError

    with pytest.raises(ArenaError, match=f"--{field.replace('_', '-')} must lie in"):
        TrainConfig(**{field: 1.5})


def test_grpo_batch_scale_divides_the_group_advantage_by_the_batchs_std():
    """TRL's scale_rewards="batch" (Lite PPO): the group's mean, the batch's std; arena's
    batch is the step's samples of one env and role (`assign_advantages`)."""
    from arena.samples import Sample, assign_advantages

    std = math.sqrt(2 / 3)  # unbiased std of (2, 0, 1, 1) around 1
    adv = grpo([2.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"], scale="batch")
    assert adv == pytest.approx([1 / (std + 1e-4), -1 / (std + 1e-4), 0.0, 0.0])
    assert grpo([2.0, 0.0], ["g", "g"], scale="none") == grpo([2.0, 0.0], ["g", "g"], scale=False) == [1.0, -1.0]
    assert grpo([2.0, 0.0], ["g", "g"], scale="group") == grpo([2.0, 0.0], ["g", "g"], scale=True)
    with pytest.raises(ValueError, match="unknown grpo scale 'batc'"):
        grpo([1.0], ["g"], scale="batc")

    def sample(role, reward, prompt):
        return Sample(env_id="spiral/KuhnPoker-v0", role=role, episode=0, prompt_ids=prompt,
                      completion_ids=[5], logprobs=[-0.1], reward=reward)

    # player_0's batch (2, 0, 1, 1) as above; player_1's (4, 0): its own std, sqrt(8)
    samples = [sample("player_0", r, p) for r, p in ((2.0, [1]), (0.0, [1]), (1.0, [2]), (1.0, [2]))]
    samples += [sample("player_1", 4.0, [3]), sample("player_1", 0.0, [3])]
    assign_advantages(samples, {"spiral/KuhnPoker-v0": "grpo"}, {}, grpo_scale="batch")
    expected = [1 / (std + 1e-4), -1 / (std + 1e-4), 0.0, 0.0, 2 / (math.sqrt(8) + 1e-4), -2 / (math.sqrt(8) + 1e-4)]
    assert [s.advantage for s in samples] == pytest.approx(expected)


def test_grpo_scale_takes_trls_levels_and_the_bools_runs_stored(tmp_path):
    from arena.config import TrainConfig
    from arena.flags import parse_args

    stored = tmp_path / "config.yaml"  # a run saved when the field was a bool
    stored.write_text("grpo_scale: false\n")
    assert parse_args(["--config", str(stored)]).grpo_scale == "none"

    assert parse_args(["--grpo-scale", "batch"]).grpo_scale == "batch"
    assert parse_args(["--no-grpo-scale"]).grpo_scale == "none"
    assert parse_args(["--grpo-scale"]).grpo_scale == parse_args(["--grpo-scale", "--steps", "3"]).grpo_scale == "group"
    assert TrainConfig(grpo_scale=True).grpo_scale == "group" and TrainConfig(grpo_scale=False).grpo_scale == "none"
