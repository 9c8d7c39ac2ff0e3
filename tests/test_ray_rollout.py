"""Rollout workers on Ray (`arena.ray_rollout`): a short `--ray-address` training run, the
weight broadcast, a worker killed mid-step, and mixed-env shares.

One local Ray instance (2 CPUs, as `--ray-address local` starts it) serves the module:
starting Ray and its actors costs seconds, so the tests share it and one set of actors.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from collections import defaultdict
from pathlib import Path

import pytest

try:
    import ray
except ImportError:
    pytest.skip("ray is not installed (pip install 'selfplay-arena[ray]')", allow_module_level=True)

pytest.importorskip("trl")

from arena.config import TrainConfig
from arena.store import EpisodeWriter, read_episodes

KUHN, TTT = "spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"
pytestmark = pytest.mark.slow


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


@pytest.fixture(scope="module")
def local_ray(arena_cache):
    """`connect("local")` once for the module; its session files in a short temporary
    folder (Ray's socket paths must stay under 108 characters), removed afterwards."""
    from arena.ray_rollout import connect

    if ray.is_initialized():
        yield
        return
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp
    try:
        handler = _raise_keyboard_interrupt  # the CLI's SIGTERM handler is of this kind
        before = signal.signal(signal.SIGTERM, handler)
        try:
            assert connect("local")
            assert signal.getsignal(signal.SIGTERM) is handler  # not ray.init's sys.exit(15)
        finally:
            signal.signal(signal.SIGTERM, before)
        yield
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old
        shutil.rmtree(temp, ignore_errors=True)


def _trainer(model, run: Path) -> types.SimpleNamespace:
    """What a `Rollout` reads from the trainer: the trained model, the writer, the run folder
    and its env state."""
    run.mkdir(parents=True, exist_ok=True)
    return types.SimpleNamespace(model=model, writer=EpisodeWriter(run), run_dir=run, env_state_dir=run / "env-state",
                                 _metrics={"train": defaultdict(list)})


MIXED = TrainConfig(env=[KUHN, TTT], env_weights=[1.0, 2.0], episodes_per_step=12, ray_address="local",
                    ray_workers=2, seed=5)


@pytest.fixture(scope="module")
def mixed(local_ray):
    """Two actors playing a Kuhn Poker + TicTacToe mix, and the learner's model."""
    from arena.agents.hf import load_model

    from arena.ray_rollout import RayRollout

    model, _ = load_model("tiny", device="cpu")
    rollout = RayRollout(MIXED)
    try:
        yield rollout, model
    finally:
        rollout.close()


def test_train_on_two_ray_workers_stores_every_episode_once_in_order(local_ray, tmp_path):
    from arena.training import train

    run = tmp_path / "run"
    trainer = train(TrainConfig(env=[KUHN], steps=2, episodes_per_step=16, ray_address="local", ray_workers=2,
                                out=str(run), eval_every=0, save_every=2, report_to="none", seed=3))
    assert trainer.state.global_step == 2
    assert [ep.metadata["index"] for ep in read_episodes(run)] == list(range(32))
    assert [ep.metadata["step"] for ep in read_episodes(run)] == [0] * 16 + [1] * 16
    assert "ray/worker1_seconds" in (run / "metrics.csv").read_text().splitlines()[0]
    env = {**os.environ, "COLUMNS": "160"}
    verified = subprocess.run([sys.executable, "-m", "arena.cli", "replay", str(run), "--verify"],
                              check=False, capture_output=True, text=True, env=env, timeout=300)
    assert verified.returncode == 0 and "verified 32 episodes: all replay exactly" in verified.stdout, verified.stdout + verified.stderr



def test_actors_play_azr_with_the_drivers_task_buffer(local_ray, tmp_path):
    """Ray actors play AZR with a mirror of the driver's task buffer (`arena.env_state`), sent
    before each step (before: each actor kept its own, of its share's proposals only, and a
    replaced actor or a resumed run's started again from the seed). With at most k tasks,
    every episode's references are the whole buffer. (Before the `mixed` actors take the CPUs.)"""
    from arena.agents import HeuristicAgent
    from arena.agents.hf import load_model

    from arena.env_state import fold_episodes
    from arena.ray_rollout import RayRollout
    from arena.rollout import play, run_env_kwargs

    env, kw = "azr/Deduction-v0", {"n": 2, "sandbox": "process"}
    run = tmp_path / "run"
    trainer = _trainer(load_model("tiny", device="cpu")[0], run)
    writer = run_env_kwargs([env], [kw], run.name, trainer.env_state_dir)
    scripted = play(env, [HeuristicAgent(seed=0)], 3, seed=0, env_kwargs=writer, run_state=False)
    fold_episodes([env], writer, scripted)  # the driver's buffer after a step
    tasks = ["seed-deduction", *dict.fromkeys(t.info["task"]["id"] for ep in scripted for t in ep.turns
                                              if t.role == "proposer")]
    mirrors = set(Path(tempfile.gettempdir()).glob("arena-env-state-*"))
    rollout = RayRollout(TrainConfig(env=[env], env_kwargs={env: kw}, episodes_per_step=4, max_new_tokens=16,
                                     ray_address="local", ray_workers=2, seed=1))
    try:
        episodes = rollout(trainer, 3, {"step": 1})
        assert len(set(Path(tempfile.gettempdir()).glob("arena-env-state-*")) - mirrors) == 2  # one per actor
    finally:
        rollout.close()
    assert set(Path(tempfile.gettempdir()).glob("arena-env-state-*")) <= mirrors  # removed: ray.kill runs no atexit
    assert len(tasks) > 1
    assert [[r["id"] for r in ep.options["references"]] for ep in episodes] == [tasks] * 4


def test_the_actors_hold_the_trained_weights_after_an_optimizer_step(mixed, tmp_path):
    import torch

    from arena.ray_rollout import policy_weights, weights_digest

    rollout, model = mixed
    initial = weights_digest(policy_weights(model))
    trainer = _trainer(model, tmp_path / "run")
    rollout(trainer, 0, {"step": 0})
    assert rollout.digests() == [initial, initial]

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    trained = weights_digest(policy_weights(model))
    assert trained != initial
    rollout(trainer, MIXED.episodes_per_step, {"step": 1})
    assert rollout.digests() == [trained, trained]
    # the sampled log-probs are the trained model's: recompute one turn's with the learner
    ep = next(e for e in read_episodes(tmp_path / "run") if e.metadata["step"] == 1)
    turn = ep.turns[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([turn.prompt_ids + turn.token_ids])).logits[0]
    allowed = turn.info["allowed_token_ids"][0]
    step0 = logits[len(turn.prompt_ids) - 1, allowed].log_softmax(-1)[allowed.index(turn.token_ids[0])]
    assert abs(float(step0) - turn.logprobs[0]) < 1e-4


def test_mixed_env_shares_play_the_whole_steps_schedule(mixed, tmp_path):
    from arena.rollout import env_schedule
    from arena.trainer import rollout_seed

    rollout, model = mixed
    episodes = rollout(_trainer(model, tmp_path / "run"), 24, {"step": 2})
    schedule = env_schedule(MIXED.env, MIXED.env_weights, MIXED.episodes_per_step, rollout_seed(MIXED))
    assert [ep.env_id for ep in episodes] == [MIXED.env[k] for k in schedule]
    assert sorted(schedule) == [0] * 4 + [1] * 8
    assert [ep.seed for ep in episodes] == [rollout_seed(MIXED) + i for i in range(24, 36)]


def test_a_worker_killed_mid_step_is_replaced_and_its_share_played_again(mixed, tmp_path, monkeypatch):
    from arena.errors import ArenaError

    rollout, model = mixed
    options = rollout._options
    start = 5 * MIXED.episodes_per_step
    reference = rollout(_trainer(model, tmp_path / "reference"), start, {"step": 5})

    victim = rollout.pids()[0]
    submit = rollout._submit
    killed = []

    def submit_then_kill(share, *args):
        ref = submit(share, *args)
        if not killed and share.worker == 0:  # the first share is in flight: kill its actor
            os.kill(victim, signal.SIGKILL)
            killed.append(share)
        return ref

    rollout._submit = submit_then_kill
    try:
        run = tmp_path / "killed"
        restarts = rollout.restarts
        episodes = rollout(_trainer(model, run), start, {"step": 5})
        assert killed and rollout.restarts == restarts + 1 and victim not in rollout.pids()
        indices = list(range(start, start + MIXED.episodes_per_step))
        assert [ep.metadata["index"] for ep in episodes] == indices
        assert [ep.metadata["index"] for ep in read_episodes(run)] == indices  # stored once each, in order
        # the share played again is the one the dead worker would have played: same seeds, same samples
        assert [[t.completion for t in ep.turns] for ep in episodes] == [[t.completion for t in ep.turns] for ep in reference]

        rollout.retries, killed[:] = 0, []  # no retry left: a clear error, nothing stored
        victim = rollout.pids()[0]
        run = tmp_path / "failed"
        with pytest.raises(ArenaError, match=r"worker 0 died playing episodes 60-65 .*--resume"):
            rollout(_trainer(model, run), start, {"step": 5})
        assert list(read_episodes(run)) == []

        # a replacement Ray cannot place (here: it asks for more CPUs than there are) is one
        # line once READY_TIMEOUT_S has passed, not a step waiting for it forever
        rollout.retries, rollout._options = 1, {**options, "num_cpus": 10_000}
        monkeypatch.setattr("arena.ray_rollout.READY_TIMEOUT_S", 2.0)
        with pytest.raises(ArenaError, match=r"worker 0 died and could not be replaced: Ray did not start 1"):
            rollout(_trainer(model, tmp_path / "unplaced"), start, {"step": 5})
    finally:  # worker 0 stays dead: this is the last test of the `mixed` actors
        rollout._submit = submit
        rollout.retries, rollout._options = 2, options


def test_bad_addresses_a_missing_ray_and_the_vllm_backend_fail_in_one_line(monkeypatch):
    from arena.errors import ArenaError
    from arena.ray_rollout import _check_reachable, _import_ray

    with pytest.raises(ArenaError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1 .*ray start --head"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(ArenaError, match="give local, auto, or HOST:PORT"):
        _check_reachable("nonsense")
    from arena.ray_rollout import RayRollout

    with pytest.raises(ArenaError, match="--backend vllm cannot run there yet"):
        RayRollout(TrainConfig(ray_address="local", backend="vllm"))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as when it is not installed
    with pytest.raises(ArenaError, match=r"--ray-address needs Ray: pip install 'selfplay-arena\[ray\]'"):
        _import_ray()


def test_lora_weights_are_broadcast_merged():
    """With --lora-r the actors get plain weights: the base plus the adapter, as PEFT's own
    merge computes them, under the base model's keys (the trained model is left unmerged)."""
    import copy

    import torch

    peft = pytest.importorskip("peft")
    from arena.agents.hf import load_model

    from arena.ray_rollout import policy_weights

    model, _ = load_model("tiny", device="cpu")
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                      task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_()
    weights = policy_weights(lora)
    merged = copy.deepcopy(lora).merge_and_unload().state_dict()
    assert sorted(weights) == sorted(merged)
    assert all(torch.allclose(weights[k], merged[k], atol=1e-6) for k in weights)
    plain, _ = load_model("tiny", device="cpu")
    plain.load_state_dict(weights)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(plain(ids).logits, lora(ids).logits, atol=1e-4)
