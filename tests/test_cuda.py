"""The CUDA path on a GPU: what the CPU suite forces there (the bf16 generation copy, the
static cache, the shared context written into it, the copy's sync after each step, TRL's
bf16 autocast) run where it is meant to run, with torch.compile's CUDA graphs, the CUDA
RNG and checkpoints made on the device.

Skipped without a CUDA device. On a GPU machine: `python -m pytest tests/test_cuda.py`, or
`bash scripts/gpu_bench.sh cuda-tests` (the same, from the wheels `prepare` brings).
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil

import pytest
import torch
from test_hf_agent import GAMES, action_seqs, constrained_logprobs, game_requests

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def tiny_cuda():
    """(model, tokenizer): the tiny model in fp32 on the GPU, as `arena train` loads it there."""
    from arena.agents.hf import load_model

    model, tokenizer = load_model("tiny", device="cuda")
    model.eval()
    return model, tokenizer


def test_generation_runs_from_a_bf16_copy_through_the_compiled_static_cache(tiny_cuda):
    """The CUDA default: a bf16 copy on the GPU generates through the static cache; legal
    actions only, log-probs of the constrained distribution (within bf16 rounding of the
    fp32 model's own), the shared context's `StaticCache` reused in place (the addresses
    the CUDA graphs were recorded against), and no new graph compiled once every bucket of
    a rollout's batch sizes was seen."""
    from arena.agents.hf import HFPolicy
    from torch._dynamo.utils import counters

    from arena.rollout import play

    model, tokenizer = tiny_cuda
    policy = HFPolicy(model, tokenizer, constrain=True, temperature=0.7, seed=2)
    assert policy.static_cache and not policy.generates_with_model
    assert {(p.dtype, p.device.type) for p in policy._gen_model.parameters()} == {(torch.bfloat16, "cuda")}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    requests = [r for env_id in GAMES for r in game_requests(env_id, 4, seed=5)]
    random.Random(0).shuffle(requests)
    requests = requests[:11]  # a bucket of 16 rows
    completions = policy.act(requests)
    for request, c in zip(requests, completions):
        assert c.text in request.legal_actions and c.token_ids == policy.action_ids(c.text)
        ref = constrained_logprobs(model, c.prompt_ids, c.token_ids, action_seqs(tokenizer, request.legal_actions), 0.7)
        assert c.logprobs == pytest.approx(ref, abs=0.1)
    assert policy.get_rng_state().get("cuda") is not None  # sampled on the GPU, from the policy's own stream
    (key, cache), = policy._static_caches.items()
    addresses = [layer.keys.data_ptr() for layer in cache.layers]
    policy.act(requests[:9])  # the same buckets
    assert policy._static_caches[key] is cache and [layer.keys.data_ptr() for layer in cache.layers] == addresses

    def rollouts(seed: int) -> list:
        return [e for c in (8, 64, 3, 1) for e in play("spiral/KuhnPoker-v0", [policy], 16, seed=seed + c,
                                                       concurrency=c)]

    rollouts(0)  # every bucket of these rollouts compiled (and its CUDA graphs recorded) here
    graphs = counters["stats"]["unique_graphs"]
    episodes = rollouts(100)
    assert counters["stats"]["unique_graphs"] == graphs
    assert all(t.legal for e in episodes for t in e.turns)


def test_a_model_that_only_generates_loads_once_in_bf16():
    """`arena eval`, `hf:` agents and a fixed opponent load with `generation_only`: on the GPU
    one bf16 set of weights, lent to the generation module (not fp32 weights beside a copy)."""
    from arena.agents.hf import load_model, make_hf_agent

    agent = make_hf_agent("tiny", device="cuda")
    assert {(p.dtype, p.device.type) for p in agent.model.parameters()} == {(torch.bfloat16, "cuda")}
    assert set(agent._views) == set(agent.model.state_dict())
    model, _ = load_model("tiny", device="cuda", generation_only=True)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    trained, _ = load_model("tiny", device="cuda")
    assert {p.dtype for p in trained.parameters()} == {torch.float32}


def test_a_bf16_model_lends_its_weights_to_the_compiled_generation(tiny_cuda):
    """`--dtype bfloat16`: the generation module's weights are views of the trained ones (one
    set in GPU memory); the CUDA graphs recorded against them read an optimizer step's
    in-place change with no copy: after it the policy decodes what a fresh policy on the
    changed weights decodes."""
    import copy

    from arena.agents.hf import HFPolicy

    model, tokenizer = tiny_cuda
    trained = copy.deepcopy(model).to(torch.bfloat16)
    policy = HFPolicy(trained, tokenizer, constrain=True, temperature=0.0)
    gen = policy._gen_model
    assert [p.data_ptr() for p in gen.parameters()] == [p.data_ptr() for p in trained.parameters()]
    requests = [r for env_id in GAMES for r in game_requests(env_id, 4, seed=5)][:8]
    before = policy.act(requests)  # compiled, graphs recorded
    with torch.no_grad():  # an optimizer step, in effect
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    policy.sync_weights()
    after = policy.act(requests)
    expected = HFPolicy(copy.deepcopy(trained), tokenizer, constrain=True, temperature=0.0).act(requests)
    assert [c.token_ids for c in after] == [c.token_ids for c in expected]
    for a, e in zip(after, expected):
        assert a.logprobs == pytest.approx(e.logprobs, abs=1e-2)
    assert any(b.logprobs != pytest.approx(a.logprobs, abs=1e-2) for b, a in zip(before, after))


def test_a_run_trains_on_the_gpu_checkpoints_and_resumes(tmp_path):
    """`arena train` on the GPU: TRL's bf16 autocast, the bf16 copy sampling with its
    log-probs corrected against the trained model's, the copy synced to the trained
    weights, an exact Kuhn evaluation, a checkpoint that holds the CUDA RNG; the run cut
    back to its step-2 checkpoint (as a kill leaves it) resumes to the same episode count
    with nothing lost or duplicated, and every episode replays exactly."""
    from arena.config import TrainConfig
    from arena.replay import verify
    from arena.store import read_episodes
    from arena.training import train

    def config(out, resume: bool = False) -> TrainConfig:
        return TrainConfig(env=["spiral/KuhnPoker-v0"], steps=4, episodes_per_step=16, save_every=2, eval_every=4,
                           eval_episodes=2, out=str(out), resume=str(out) if resume else None)

    run = tmp_path / "run"
    trainer = train(config(run))
    policy = trainer.policy
    assert policy.device.type == "cuda" and policy.static_cache
    assert trainer.args.bf16 == torch.cuda.is_bf16_supported()
    assert trainer.sampling_correction and not trainer.sampler_exact
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("loss")]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    assert all(0 < float(r["sampling/sampling_logp_difference/mean"]) < 0.1 for r in rows)
    evaluated = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert 0 <= evaluated[-1]["KuhnPoker-v0/exploitability"] <= 0.5
    state = json.loads((run / "checkpoints" / "checkpoint-2" / "arena_state.json").read_text())
    assert state["policy_rng"].get("cuda") is not None

    policy.sync_weights()  # what the next step's rollout would see
    copy, trained = policy._gen_model.state_dict(), trainer.model.state_dict()
    for key, value in copy.items():
        assert torch.equal(value, trained[key].to(torch.bfloat16)), key

    episodes = list(read_episodes(run))
    assert [e.metadata["index"] for e in episodes] == list(range(64))
    assert all(not verify(e) for e in episodes)

    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-4")
    train(config(cut, resume=True))
    resumed = list(read_episodes(cut))
    assert [e.metadata["index"] for e in resumed] == list(range(64))
    assert [e.seed for e in resumed[:32]] == [e.seed for e in episodes[:32]]  # kept from before the checkpoint
    assert all(not verify(e) for e in resumed)
    assert json.loads((cut / "run.json").read_text())["status"] == "complete"
