"""`arena train` launched as two processes (torchrun, Gloo on CPU): one run, not two.

The processes share each step's episodes and its loss (`arena.data_parallel`): the store
holds every episode once, in index order, and the step's loss and gradient norm are the ones
a single process computes on the same episodes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arena.data_parallel import DataParallel, check_launch, merge_metrics, share_of
from arena.errors import ArenaError
from arena.flags import parse_args
from arena.ray_rollout import split

# two envs: each process plays its slice of the step's mixed schedule, and TicTacToe's rows
# share prompt prefixes in varied groups (the loss through DDP's wrapper must not depend on them)
TRAIN = ["--env", "spiral/KuhnPoker-v0", "--env", "spiral/TicTacToe-v0", "--episodes-per-step", "16",
         "--eval-every", "0", "--save-every", "1"]


def launch(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`arena` on two processes, as `torchrun --standalone --nproc-per-node 2 -m arena.cli` runs it."""
    env = {**os.environ, "COLUMNS": "160", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "arena.cli", *map(str, args)], check=False, capture_output=True, text=True,
                          env=env, timeout=300, stdin=subprocess.DEVNULL, cwd=cwd)


def episodes_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]


def metrics_of(run: Path) -> dict[int, dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return {int(row["step"]): row for row in csv.DictReader(f)}


@pytest.mark.parametrize("count", [0, 1, 7, 16, 17])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_shares_cover_the_items_once_in_order(count, size):
    parts = [share_of(count, rank, size) for rank in range(size)]
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(count))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert [(s.start, s.count) for s in split(100, count, size)] == [(100 + p.start, p.stop - p.start)
                                                                     for p in parts if p.stop > p.start]


def test_each_processs_metrics_merge_by_kind():
    parts = [{"x/mean": 1.0, "x/max": 3.0, "x/min": 0.5}, {"x/mean": 2.0, "x/max": 2.0, "x/min": 0.1, "y/mean": 4.0}]
    assert merge_metrics(parts) == {"x/mean": 1.5, "x/max": 3.0, "x/min": 0.1, "y/mean": 4.0}


def test_one_process_is_not_data_parallel(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert DataParallel.start(parse_args(["--env", "spiral/KuhnPoker-v0"])) is None


@pytest.mark.parametrize("flags, named", [(["--backend", "vllm"], "--backend vllm"),
                                          (["--ray-address", "local"], "--ray-address")])
def test_what_cannot_run_on_several_processes_is_one_line(monkeypatch, flags, named):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ArenaError, match=named) as err:
        DataParallel.start(parse_args(["--env", "spiral/KuhnPoker-v0", *flags]))
    assert "\n" not in str(err.value) and "2 were launched" in str(err.value)


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("variable, named", [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")])
def test_a_launch_that_shards_the_model_is_one_line(monkeypatch, processes, variable, named):
    """accelerate launched with FSDP or DeepSpeed: the trainer would shard the model the
    policy generates from; refused on any number of processes, before anything loads."""
    monkeypatch.setenv("WORLD_SIZE", processes)
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ArenaError, match=f"launched with {named},") as err:
        check_launch(parse_args(["--env", "spiral/KuhnPoker-v0"]))
    assert "\n" not in str(err.value) and "--multi_gpu" in str(err.value)
    monkeypatch.setenv(variable, "false")  # what accelerate sets when it is off
    check_launch(parse_args(["--env", "spiral/KuhnPoker-v0"]))


@pytest.mark.parametrize("args", [["play", "spiral/KuhnPoker-v0", "--out", "{tmp}/store"],
                                  ["eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--json", "{tmp}/eval.json"]])
def test_other_commands_on_several_processes_are_one_line(tmp_path, args):
    """Under a launcher every process would play or evaluate the same thing and write it
    (twice the episodes in one store, eval-final.json and eval-final-2.json): refused."""
    args = [a.format(tmp=tmp_path) for a in args]
    said = {}
    for rank in ("0", "1"):
        result = subprocess.run([sys.executable, "-m", "arena.cli", *args], check=False, capture_output=True,
                                text=True, timeout=300, env={**os.environ, "WORLD_SIZE": "2", "RANK": rank},
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 2, result.stderr
        said[rank] = result.stderr.strip()
    line, = said["0"].splitlines()
    assert f"arena {args[0]} runs in one process (2 were launched)" in line and "arena train" in line
    assert said["1"] == ""  # process 0 says it for both
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dp") / "run"
    result = launch("train", *TRAIN, "--steps", "1", "--out", run)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("for 1 step on 2 processes") == 1, result.stderr
    assert result.stdout.count("done: 1 step") == 1, result.stdout  # process 0 speaks for the run
    return run


def test_two_processes_store_each_episode_once(two_process_run):
    from arena.rollout import env_schedule
    from arena.trainer import rollout_seed

    episodes = episodes_of(two_process_run)
    assert [e["metadata"]["index"] for e in episodes] == list(range(16))
    seed = rollout_seed(parse_args(TRAIN))
    assert [e["seed"] for e in episodes] == [seed + i for i in range(16)]
    config = parse_args(TRAIN)
    assert [config.env.index(e["env_id"]) for e in episodes] == env_schedule(config.env, None, 16, seed)
    assert sorted(metrics_of(two_process_run)) == [1]
    assert (two_process_run / "model" / "config.json").is_file()
    assert {p.name for p in (two_process_run / "checkpoints" / "checkpoint-1").glob("rng_state_*.pth")} == {
        "rng_state_0.pth", "rng_state_1.pth"}


def test_two_processes_train_as_one_on_the_same_episodes(two_process_run, tmp_path, monkeypatch):
    """The loss (mean over the processes, as transformers logs it) and the gradient norm (after
    DDP's all-reduce) of the step equal one process's on the same 16 episodes: each process's
    share is normalised by the whole batch's tokens, and its advantages are the whole batch's.
    (One process shares prompt prefixes in the loss, the two do not: the same numbers.)"""
    from arena import trainer as trainer_module
    from arena.episode import Episode
    from arena.training import train

    played = [Episode.from_dict(e) for e in episodes_of(two_process_run)]

    def the_same_episodes(trainer, start_index, metadata):
        trainer.writer.write(played)
        return played

    monkeypatch.setattr(trainer_module, "local_rollout", the_same_episodes)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = tmp_path / "one"
    train(parse_args([*TRAIN, "--steps", "1", "--out", str(one)]))
    two, single = metrics_of(two_process_run)[1], metrics_of(one)[1]
    for key in ("loss", "grad_norm", "KuhnPoker-v0/player_0/advantage_mean", "TicTacToe-v0/player_1/advantage_mean",
                "samples/trained"):
        assert float(two[key]) == pytest.approx(float(single[key]), rel=1e-4, abs=1e-7), key
    assert abs(float(single["loss"])) > 1e-3 and float(single["grad_norm"]) > 1e-3  # not trivially equal
    state = "checkpoints/checkpoint-1/arena_state.json"
    baselines = [json.loads((run / state).read_text())["baselines"] for run in (two_process_run, one)]
    assert baselines[0] == pytest.approx(baselines[1])


def test_who_prints_an_error_every_process_meets(monkeypatch):
    """Before the process group is up each machine's first process says it (a file missing on
    one machine is still said there); process 0's failure handed to all, process 0 alone."""
    from arena.data_parallel import said_by_process_zero

    handed = ArenaError("refused")
    handed.every_process = True
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not said_by_process_zero(ArenaError("x")) and not said_by_process_zero(handed)
    monkeypatch.setenv("WORLD_SIZE", "16")
    for rank, local, before, after_handed in [(0, 0, False, False), (3, 3, True, True), (8, 0, False, True)]:
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(local))
        assert said_by_process_zero(ArenaError("x")) is before
        assert said_by_process_zero(handed) is after_handed


@pytest.mark.parametrize("args", [["train", "--stepz", "1"], ["train", "--steps"], ["play", "nope/Env-v0"], ["replay"]])
def test_a_process_that_leaves_the_error_to_another_waits_for_it(monkeypatch, capsys, args):
    """torchrun stops every process once one fails: a quiet one that exited at once stopped the
    one that prints the error before it had (a launch with no error shown, 1 run in 9 here).
    It waits instead (torchrun stops it once the other has printed and exited)."""
    import signal
    import time

    from arena.cli import QUIET_EXIT_WAIT_S, main

    waited = []
    monkeypatch.setattr(time, "sleep", waited.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_:
            main(args)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert exit_.value.code == 2 and waited == [QUIET_EXIT_WAIT_S]
    assert "error" not in capsys.readouterr().err.lower()


@pytest.mark.parametrize("args, said", [(["--stepz", "1"], "unknown flag --stepz; did you mean --steps?"),
                                        ([], "already holds a run")])
def test_an_error_every_process_meets_is_printed_once(two_process_run, args, said):
    """A usage error (before the process group is up) and process 0's refusal handed to all
    (`DataParallel.on_main`: here a run folder that exists) are one line, not one per process."""
    result = launch("train", *TRAIN, "--steps", "1", "--out", two_process_run, *args)
    assert result.returncode != 0
    assert result.stderr.count("error:") == 1 and said in result.stderr, result.stderr[-3000:]


def test_a_two_process_run_resumes_where_it_stopped(two_process_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_process_run, run)
    result = launch("train", "--resume", run, "--steps", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    assert [e["metadata"]["index"] for e in episodes_of(run)] == list(range(32))
    assert sorted(metrics_of(run)) == [1, 2]
    verify = subprocess.run([sys.executable, "-m", "arena.cli", "replay", str(run), "--verify"], capture_output=True,
                            text=True, timeout=300, check=False)
    assert verify.returncode == 0 and "all replay exactly" in verify.stdout, verify.stdout + verify.stderr


SCRIPTED_AZR = """
import zlib

import numpy as np
from arena.envs.absolute_zero.env import AbsoluteZero

from arena import register


class ScriptedProposals(AbsoluteZero):
    \"\"\"AZR whose proposer's text is read as a valid scripted proposal drawn from it (the tiny
    model's own are all refused; its completion is still what is trained).\"\"\"

    def _parse_proposal(self, text):
        return super()._parse_proposal(self.scripted_proposal(np.random.default_rng(zlib.crc32(text.encode()))))


register("test/ScriptedDeduction-v0", ScriptedProposals, kwargs={"task_type": "deduction", "n": 2, "sandbox": "process"})
"""


@pytest.mark.slow
def test_every_process_proposes_from_the_whole_runs_azr_buffer(tmp_path):
    """AZR's task buffer is one for the run in every process: process 1 plays step 2 with the
    tasks of all of step 1's episodes (its mirror of process 0's buffer, `arena.env_state`),
    not only those of its own share as before. With at most k tasks in the buffer, every
    episode's references are the whole buffer: the seed, then step 1's tasks in index order.
    A resume from step 1's checkpoint plays step 2 as the run did (process 1 started from
    the seed again before)."""
    (tmp_path / "scripted_azr.py").write_text(SCRIPTED_AZR)
    result = launch("train", "--env", "scripted_azr:test/ScriptedDeduction-v0", "--steps", "2", "--episodes-per-step",
                    "4", "--max-new-tokens", "16", "--eval-every", "0", "--save-every", "1", "--out", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    episodes = episodes_of(tmp_path / "run")
    assert [e["metadata"]["index"] for e in episodes] == list(range(8))
    proposed = list(dict.fromkeys(t["info"]["task"]["id"] for e in episodes[:4] for t in e["turns"]
                                  if t["role"] == "proposer"))
    assert len(proposed) >= 2
    for e in episodes[:4]:
        assert [r["id"] for r in e["options"]["references"]] == ["seed-deduction"]
    for e in episodes[4:]:  # episodes 6 and 7 played by process 1
        assert [r["id"] for r in e["options"]["references"]] == ["seed-deduction", *proposed], e["metadata"]
    # resumed from step 1's checkpoint, both processes play step 2 again as the run did
    shutil.copytree(tmp_path / "run", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "checkpoint-2")
    result = launch("train", "--resume", "cut", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    def played(run):
        return [(e["options"], [t["completion"] for t in e["turns"]]) for e in episodes_of(tmp_path / run)]

    assert played("cut") == played("run")
