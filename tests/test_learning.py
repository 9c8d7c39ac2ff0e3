"""Self-play learns: a short seeded run of the tiny model on Kuhn Poker lowers the exact
exploitability of its policy (a real drop from the untrained model's, not a timing)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")


@pytest.mark.slow
def test_kuhn_self_play_lowers_exploitability(tmp_path):
    from arena.config import TrainConfig
    from arena.training import train

    run = tmp_path / "kuhn"
    # the README's defaults, shortened to 100 steps with a constant learning rate and entropy
    # bonus (the default schedules decay both over the run; at 100 steps they would decay
    # before the model has learnt to read its card)
    config = TrainConfig(env=["spiral/KuhnPoker-v0"], out=str(run), steps=100, episodes_per_step=64, entropy_coef_final=1.0,
                         lr_scheduler_type="constant", eval_every=10, eval_episodes=4, save_every=1000, seed=0)
    train(config)
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    values = [e["KuhnPoker-v0/exploitability"] for e in evals]
    start, late = values[0], min(values[len(values) // 2:])
    assert start > 0.35, values  # the untrained tiny model plays close to uniform (0.458)
    assert late < 0.30, values  # the bar; uniform random is 0.458, card-blind play 1/3
    assert late < start - 0.1, values
    # every episode of every step is in the run's store, in index order
    from arena.store import read_episodes

    indices = [ep.metadata["index"] for ep in read_episodes(run)]
    assert indices == list(range(100 * config.episodes_per_step))
