"""Training on the proposer / solver / verifier envs: `arena train` end to end with the tiny
model on `azr/Mixed-v0` (TRR++, its default) and `spice/Corpus-v0` (GRPO, its default), each
also with the other estimator; and the sample path (per-attempt rewards, task-type keys,
infra masking) on scripted episodes, which reach the solver and verifier turns that the
untrained tiny model never does (its proposals are all refused).

Infra masking end to end (a real sandbox whose interpreter is missing gives `infra`, and
`samples.collect` gives reward None) is `tests/test_absolute_zero.py::
test_infra_failure_is_masked_never_scored`; the estimators' masking is in
`tests/test_advantages.py`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arena.agents import make_agent

from arena.rollout import play
from arena.samples import assign_advantages, collect, keep_for_loss

ROLES = {"azr/Mixed-v0": ("proposer", "solver", "verifier"), "spice/Corpus-v0": ("challenger", "reasoner", "verifier")}
KWARGS = {"azr/Mixed-v0": {"n": 2, "sandbox": "process"}, "spice/Corpus-v0": {"n": 2}}


def arena_cmd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "arena.cli", *map(str, args)], check=False, capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("env_id, estimator", [("azr/Mixed-v0", None), ("spice/Corpus-v0", None),
                                               ("azr/Mixed-v0", "grpo"), ("spice/Corpus-v0", "trr++")])
def test_train_runs_end_to_end_with_the_tiny_model(tmp_path, env_id, estimator):
    out = tmp_path / "run"
    # the default-estimator runs also evaluate (at steps 0 and 2, and the final one): with no
    # opponent's seat the model plays every role (`arena.evaluate.play_alone`); this crashed
    # on "2 agents given for 3 roles" before
    extra = ["--estimator", estimator, "--eval-every", "0"] if estimator else ["--eval-every", "2", "--eval-episodes", "4"]
    res = arena_cmd("train", "--env", env_id, "--steps", "2", "--episodes-per-step", "4",
                    "--max-new-tokens", "16", "--out", out, "--env-kwargs", json.dumps({env_id: KWARGS[env_id]}), *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    name = env_id.split("/")[1]
    if not estimator:
        evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
        assert len(evals) >= 2
        for role in ROLES[env_id]:  # outcomes only for a role scored in some episode (the tiny model's tasks are refused)
            for e in evals:
                scored = e[f"{name}/self/{role}/episodes"] > 0
                assert (f"{name}/self/{role}/mean_return" in e) == scored, e
                assert (f"{name}/self/{role}/mean_return_se" in e) == scored, e  # the table's "± s.e." had none
            assert evals[-1][f"{name}/self/{ROLES[env_id][0]}/episodes"] == 4
        assert f"self ({ROLES[env_id][0]})" in res.stdout + res.stderr  # the final evaluation's table
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    if not estimator:  # the starting model's evaluation is logged at step 0, a row of its own
        assert rows[0]["step"] == "0" and not rows[0]["loss"]
        assert any(rows[0][k] for k in rows[0] if k.startswith(f"eval/{name}/self/"))
        rows = rows[1:]
    assert len(rows) == 2
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["env_id"] == env_id for line in lines)
    acted = {t["role"] for line in lines for t in json.loads(line)["turns"]}
    assert ROLES[env_id][0] in acted
    for role in ROLES[env_id]:  # a role that never acted (the tiny model's tasks are refused) logs no 0 and draw
        logged = {f"{name}/{role}/mean_return", f"{name}/{role}/win_rate"} & {k for r in rows for k in r if r[k]}
        assert logged == (set() if role not in acted else {f"{name}/{role}/mean_return", f"{name}/{role}/win_rate"})
    assert f"{name}/{ROLES[env_id][0]}/invalid_move_rate" in rows[0]
    assert "samples/dropped_infra" in rows[0] and "samples/trained" in rows[0]
    assert all(float(r["samples/trained"]) > 0 for r in rows)
    assert all(r["loss"] not in ("", "nan") for r in rows)
    assert not any(r.get("entropy_coef") for r in rows)  # the bonus is over legal actions: free text has none
    if env_id.startswith("azr/"):  # one task buffer for the run, in its folder (not one per env object)
        assert {(k["store"], k["buffer_path"]) for k in (json.loads(line)["env_kwargs"] for line in lines)} == \
            {("run:run", str(out.absolute() / "env-state" / "azr"))}


@pytest.mark.slow
def test_an_azr_runs_buffer_grows_over_its_steps_and_a_resume_goes_on_from_its_checkpoint(tmp_path, monkeypatch):
    """A real training run's proposers see the tasks proposed in earlier steps, and a run
    resumed from a checkpoint has the uncut run's buffer and plays its episodes. The tiny
    model's proposals are all refused, so the env reads each as a valid scripted proposal
    drawn from its text (the model's own completion is still what is trained)."""
    import shutil
    import zlib

    import numpy as np
    from arena.envs.absolute_zero.env import AbsoluteZero

    from arena.config import TrainConfig
    from arena.store import read_episodes
    from arena.training import train

    parse = AbsoluteZero._parse_proposal
    monkeypatch.setattr(AbsoluteZero, "_parse_proposal", lambda self, text: parse(
        self, self.scripted_proposal(np.random.default_rng(zlib.crc32(text.encode())))))

    def config(out, resume=False):
        return TrainConfig(env=["azr/Deduction-v0"], steps=2, episodes_per_step=4, save_every=1, eval_every=0, seed=3,
                           max_new_tokens=16, out=str(out), resume=str(out) if resume else None,
                           env_kwargs={"azr/Deduction-v0": {"n": 2, "sandbox": "process"}})

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(config(whole))
    episodes = list(read_episodes(whole))
    proposed = {ep.outcome.get("task_id") for ep in episodes[:4]} - {None}
    assert proposed and {r["id"] for ep in episodes[4:] for r in ep.options["references"]} & proposed
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-2")
    train(config(cut, resume=True))
    tasks = Path("env-state") / "azr" / "azr_tasks.jsonl"
    assert (cut / tasks).read_text() == (whole / tasks).read_text()
    assert (cut / tasks.with_name("azr_tasks.after-checkpoint.jsonl")).read_text().count("\n") == 4

    def played(run):
        return [(ep.options, [t.completion for t in ep.turns]) for ep in read_episodes(run)]

    assert played(cut) == played(whole)


# -- the sample path on scripted episodes ------------------------------------------------------------

def _tokenised(episodes):
    """Give every turn tokens, as a model's turns have (the agent made them by script)."""
    for ep in episodes:
        for t in ep.turns:
            t.prompt_ids, t.token_ids, t.logprobs = [1, 2, 3], [4, 5], [-0.1, -0.2]
    return episodes


def test_azr_samples_are_keyed_by_task_type_with_per_attempt_rewards():
    agent = make_agent("scripted:noisy=0.5", seed=0)
    episodes = _tokenised(play("azr/Mixed-v0", [agent], 8, seed=0, env_kwargs={"n": 4, "sandbox": "process"}))
    samples = collect(episodes, agent.name)
    assert {s.key[:2] for s in samples} == {("azr/Mixed-v0", r) for r in ROLES["azr/Mixed-v0"]}
    assert all(len(s.key) == 3 and s.key[2] in ("deduction", "abduction", "induction") for s in samples)
    solver = [s for s in samples if s.role == "solver"]
    assert {s.reward for s in solver} == {1.0, -0.5}  # each attempt its own reward, not the role's mean
    for estimator in ("trr++", "grpo"):
        assign_advantages(samples, {"azr/Mixed-v0": estimator}, {})
        assert any(s.advantage > 0 for s in solver) and any(s.advantage < 0 for s in solver)
        by_reward = {s.reward: s.advantage for s in solver if s.key == solver[0].key}
        if len(by_reward) == 2:
            assert by_reward[1.0] > by_reward[-0.5]


def test_spice_samples_and_an_infra_turn_is_masked():
    agent = make_agent("scripted:noisy=0.5", seed=0)
    episodes = _tokenised(play("spice/Corpus-v0", [agent], 6, seed=0, env_kwargs={"n": 4}))
    episodes[0].turns[1].info["infra"] = True  # one reasoner attempt whose check failed for infra reasons
    samples = collect(episodes, agent.name)
    assert samples[1].reward is None and {s.key for s in samples} == {("spice/Corpus-v0", r) for r in ROLES["spice/Corpus-v0"]}
    assign_advantages(samples, {"spice/Corpus-v0": "grpo"}, {})
    kept, dropped = keep_for_loss(samples, filter_zero_advantage=False)
    assert dropped["infra"] == 1 and samples[1] not in kept and len(kept) == len(samples) - 1
