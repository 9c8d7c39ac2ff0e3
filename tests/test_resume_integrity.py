"""What a user stored survives a failed, killed or resumed run, and a wrong setting is one
line before anything is written: metrics and evaluations after the checkpoint moved aside,
flags given with --resume written to the run's config.yaml, damaged checkpoints named, runs
that stopped early marked so."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from _cli_support import arena_cmd, one_line_error

from arena.config import TrainConfig
from arena.errors import ArenaError


def config(out: Path, **kw: object) -> TrainConfig:
    return TrainConfig(**{"env": ["spiral/KuhnPoker-v0"], "episodes_per_step": 4, "eval_every": 0, "out": str(out),
                          **kw})


def steps_of(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f)]


def fake_run(run: Path, steps: int, checkpoints: tuple[int, ...]) -> None:
    """A run folder with complete checkpoints (arena's state only), enough for `--resume`'s checks."""
    from arena.config import save_config

    for step in checkpoints:
        ckpt = run / "checkpoints" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "arena_state.json").write_text(json.dumps({"episodes_written": 0, "rollouts": 0, "baselines": {}}))
    save_config(TrainConfig(out=str(run), steps=steps), run / "config.yaml")


def test_resume_moves_metrics_and_evaluations_after_the_checkpoint_aside(tmp_path):
    """Killed after step 3 with its last checkpoint at 2: the resumed run logs step 3 again,
    so metrics.csv reads 1..4 once; the rows and records it replaces are kept aside."""
    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=3, save_every=2))
    shutil.rmtree(run / "checkpoints" / "checkpoint-3")  # as the kill left it: step 3 logged, not saved
    (run / "eval.jsonl").write_text('{"step": 0}\n{"step": 2}\n{"step": 3}\n')
    train(config(run, steps=4, save_every=2, resume=str(run)))
    assert steps_of(run / "metrics.csv") == [1, 2, 3, 4]
    assert steps_of(run / "metrics.after-checkpoint.csv") == [3]
    assert (run / "eval.jsonl").read_text() == '{"step": 0}\n{"step": 2}\n'  # the checkpoint's own is reused
    assert (run / "eval.after-checkpoint.jsonl").read_text() == '{"step": 3}\n'


def test_flags_given_with_resume_are_written_to_the_runs_config(tmp_path):
    from arena.flags import load_yaml, parse_args
    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=2, save_every=2))
    before = (run / "config.yaml").read_text()
    result = arena_cmd("train", "--resume", run, "--env", "spiral/TicTacToe-v0", "--steps", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("resuming with --env spiral/TicTacToe-v0 --steps 3 (was --env spiral/KuhnPoker-v0 --steps 2)"
            in result.stderr)
    saved = load_yaml(run / "config.yaml")
    assert saved["env"] == ["spiral/TicTacToe-v0"] and saved["steps"] == 3 and saved["resume"] is None
    assert (run / "config.before-resume-1.yaml").read_text() == before  # the previous config is kept
    again = parse_args(["--resume", str(run)])  # the next plain --resume goes on the same way
    assert again.env == ["spiral/TicTacToe-v0"] and again.steps == 3


def test_out_with_resume_is_refused(tmp_path):
    from arena.flags import parse_args

    with pytest.raises(ArenaError, match="a resumed run stays in its own folder; drop --out"):
        parse_args(["--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other")])
    assert parse_args(["--resume", str(tmp_path), "--out", str(tmp_path)]).out == str(tmp_path)  # its own folder


def test_out_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.touch()
    line = one_line_error(arena_cmd("train", "--out", afile, "--steps", "1"))
    assert f"{afile} is a file, not a run folder" in line
    assert afile.is_file() and afile.read_text() == ""


def test_a_bad_env_argument_fails_before_the_run_folder_exists(tmp_path):
    from arena.training import prepare_run

    run = tmp_path / "run"
    bad = config(run, env=["spiral/KuhnPoker-v1"], env_kwargs={"spiral/KuhnPoker-v1": {"rounds": 2.5}})
    with pytest.raises(ArenaError, match="argument rounds must be an integer, got 2.5"):
        prepare_run(bad)
    assert not run.exists()


@pytest.mark.parametrize(("raised", "status"), [(RuntimeError("env broke"), "failed"),
                                                (KeyboardInterrupt(), "interrupted")])
def test_a_run_stopped_before_its_first_checkpoint_says_so(tmp_path, monkeypatch, raised, status):
    """run.json says how it stopped, and the same --out, or --resume, names a fix that works."""
    from arena.checkpoint import resume_point
    from arena.run_info import refuse_existing_run
    from arena.trainer import SelfPlayTrainer
    from arena.training import train

    def stop(self, *args, **kwargs):
        raise raised

    monkeypatch.setattr(SelfPlayTrainer, "train", stop)
    run = tmp_path / "run"
    with pytest.raises(type(raised)):
        train(config(run, steps=2))
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == status and info["step"] == 0
    with pytest.raises(ArenaError, match="holds a run that stopped before its first checkpoint, so there is nothing "
                                         "to resume: train with another --out, or remove .* first$"):
        refuse_existing_run(run)
    with pytest.raises(ArenaError, match="stopped before its first checkpoint, so there is nothing to resume"):
        resume_point(run, 2)


def test_a_run_whose_checkpoints_are_gone_is_not_said_to_have_none_and_its_episodes_are_counted(tmp_path):
    """With its checkpoints deleted, a run of 2 steps was said to have stopped before its first
    one, and "remove it" was advised without a word of its episodes."""
    from arena.checkpoint import resume_point
    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=2, save_every=50))  # saved once, at the end of the run
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(ArenaError, match=r"whose checkpoints are gone, so there is nothing to resume: train with "
                                         r"another --out, or remove .* first \(removing it deletes its 8 episodes\)"):
        resume_point(run, 3)


def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_the_older_one(tmp_path):
    run = tmp_path / "run"
    fake_run(run, steps=6, checkpoints=(2, 4))
    state = run / "checkpoints" / "checkpoint-4" / "arena_state.json"
    state.write_text("{\n")
    line = one_line_error(arena_cmd("train", "--resume", run))
    assert line.startswith(f"error: {state} is damaged (")
    assert line.endswith("remove that checkpoint (" + str(state.parent) + ") to resume from checkpoint-2")
    assert state.read_text() == "{\n"  # nothing skipped over nor removed


def test_a_checkpoint_state_that_does_not_load_lets_go_of_the_run(tmp_path):
    """A state that reads as JSON but lacks a field fails once the trainer is built: its
    writer (the run folder's lock) and workers are closed, so the same process can go on."""
    import os

    from arena.store import lock_run
    from arena.training import train

    run = tmp_path / "run"
    fake_run(run, steps=2, checkpoints=(1,))
    (run / "checkpoints" / "checkpoint-1" / "arena_state.json").write_text(json.dumps({"episodes_written": 0}))
    with pytest.raises(ArenaError, match=r"arena_state\.json is damaged \(KeyError"):
        train(config(run, steps=2, resume=str(run)))
    os.close(lock_run(run))


def test_a_truncated_safetensors_file_is_named(tmp_path):
    import torch
    from safetensors.torch import save_file

    from arena.checkpoint import resume_point

    run = tmp_path / "run"
    fake_run(run, steps=6, checkpoints=(4,))
    weights = run / "checkpoints" / "checkpoint-4" / "model.safetensors"
    save_file({"w": torch.zeros(256)}, str(weights))
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    with pytest.raises(ArenaError, match=r"model\.safetensors is damaged \(.*\): there is no older checkpoint"):
        resume_point(run, 6)


def test_the_python_api_takes_what_a_flag_takes():
    cfg = TrainConfig(env="spiral/TicTacToe-v0", steps="3", learning_rate="1e-3", env_weights="1",
                      constrain="none", eval_every="0")
    assert cfg.env == ["spiral/TicTacToe-v0"] and cfg.steps == 3 and cfg.learning_rate == pytest.approx(1e-3)
    assert cfg.env_weights == [1.0] and cfg.constrain is None and cfg.eval_every == 0
    with pytest.raises(ArenaError, match="--steps: 'many' is not a valid int"):
        TrainConfig(steps="many")


def test_a_device_this_machine_lacks_is_one_line_before_the_run_folder(tmp_path, monkeypatch):
    import torch

    from arena.training import prepare_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = tmp_path / "run"
    with pytest.raises(ArenaError, match=r"^--device cuda: no CUDA device here \(.*\); use --device cpu$"):
        prepare_run(config(run, device="cuda"))
    with pytest.raises(ArenaError, match="--device 'gpu' is not a torch device: use --device cpu"):
        prepare_run(config(run, device="gpu"))
    assert not run.exists()


def test_a_resumed_run_without_evaluation_labels_the_runs_last_one_and_its_session(tmp_path):
    """Resumed with --eval-every 0, the run's last evaluation is an older step's: shown as
    such, not as this step's; the time is the run's and this session's."""
    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=1, save_every=1, eval_every=1, eval_episodes=4))
    result = arena_cmd("train", "--resume", run, "--steps", "2", "--eval-every", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "latest evaluation of the run, at step 1 (none since" in result.stdout
    assert "evaluation at step 1 (" not in result.stdout
    assert "over the run, " in result.stdout and " this session" in result.stdout


def test_evaluation_turned_on_at_resume_adds_no_second_row_of_the_step(tmp_path):
    """`--eval-every 2` given at a resume from step 2 evaluated the checkpoint's weights and
    logged them as a second `step 2` row of metrics.csv; they go to eval.jsonl."""
    import json

    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=2, save_every=2))
    train(TrainConfig.resume_run(run, steps=3, eval_every=2, eval_episodes=4))
    assert steps_of(run / "metrics.csv") == [1, 2, 3]
    records = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3]


def test_episodes_moved_aside_by_two_resumes_stay_one_record_a_line(tmp_path):
    """A torn last line moved aside by one resume does not swallow the first line the next
    resume moves: every record moved aside reads back."""
    from arena.resume import cut_episodes_after

    path = tmp_path / "episodes.jsonl"
    path.write_bytes(b"".join(b'{"seed": %d}\n' % i for i in range(5)) + b'{"seed": 5, "tor')
    assert cut_episodes_after(tmp_path, 3) == 3
    with open(path, "ab") as f:
        f.write(b'{"seed": 3}\n{"seed": 4}\n')
    assert cut_episodes_after(tmp_path, 4) == 1
    aside = (tmp_path / "episodes.after-checkpoint.jsonl").read_bytes().splitlines()
    assert aside == [b'{"seed": 3}', b'{"seed": 4}', b'{"seed": 5, "tor', b'{"seed": 4}']
    assert path.read_bytes().splitlines() == [b'{"seed": %d}' % i for i in range(4)]


def test_a_lost_episode_file_stops_the_resume(tmp_path):
    """With episodes.jsonl gone, a resume started a new file at the checkpoint's index: the
    episodes before it were lost without a word."""
    from arena.resume import cut_episodes_after

    with pytest.raises(ArenaError, match=r"episodes.jsonl is missing but the checkpoint expects 48 episodes in it: "
                                         "restore the file to resume the run"):
        cut_episodes_after(tmp_path, 48)
    assert cut_episodes_after(tmp_path, 0) == 0  # a checkpoint before any episode: nothing to lose
    (tmp_path / "episodes.jsonl").write_bytes(b'{"seed": 0}\n')
    with pytest.raises(ArenaError, match=r"holds 1 episodes but the checkpoint expects 2: the run folder was changed; "
                                         "restore the file"):
        cut_episodes_after(tmp_path, 2)


def test_a_resume_killed_while_moving_episodes_aside_keeps_them_once(tmp_path, monkeypatch):
    """Killed after the episodes were appended to episodes.after-checkpoint.jsonl and before
    episodes.jsonl was cut, the next resume moved the same episodes aside a second time."""
    import os

    from arena.resume import cut_episodes_after

    path = tmp_path / "episodes.jsonl"
    path.write_bytes(b"".join(b'{"seed": %d}\n' % i for i in range(5)))

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cut_episodes_after(tmp_path, 3)
    monkeypatch.undo()
    assert len(path.read_bytes().splitlines()) == 5 and [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []
    assert cut_episodes_after(tmp_path, 3) == 2
    assert (tmp_path / "episodes.after-checkpoint.jsonl").read_bytes() == b'{"seed": 3}\n{"seed": 4}\n'


def test_a_resume_touches_no_file_of_the_users_and_no_read_only_one(tmp_path):
    """The cut files were written through `episodes.tmp` (a user's file of that name was
    replaced, then gone), and a read-only episodes.jsonl was swapped for a writable one."""
    import stat

    from arena.resume import cut_episodes_after, cut_evals_after, cut_metrics_after

    for name in ("episodes.tmp", "metrics.tmp", "eval.tmp"):
        (tmp_path / name).write_text("mine")
    (tmp_path / "episodes.jsonl").write_bytes(b"".join(b'{"seed": %d}\n' % i for i in range(4)))
    (tmp_path / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n")
    (tmp_path / "eval.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    assert (cut_episodes_after(tmp_path, 2), cut_metrics_after(tmp_path, 1), cut_evals_after(tmp_path, 1)) == (2, 1, 1)
    assert all((tmp_path / name).read_text() == "mine" for name in ("episodes.tmp", "metrics.tmp", "eval.tmp"))
    assert steps_of(tmp_path / "metrics.csv") == [1] and (tmp_path / "eval.jsonl").read_text() == '{"step": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        "episodes.tmp", "metrics.tmp", "eval.tmp", "episodes.jsonl", "metrics.csv", "eval.jsonl",
        "episodes.after-checkpoint.jsonl", "metrics.after-checkpoint.csv", "eval.after-checkpoint.jsonl"])

    path = tmp_path / "episodes.jsonl"
    path.chmod(0o444)
    before = path.read_bytes()
    with pytest.raises(ArenaError, match=r"episodes.jsonl is read-only and the resumed run writes to it: make it "
                                         r"writable \(chmod u\+w\)"):
        cut_episodes_after(tmp_path, 1)
    assert path.read_bytes() == before and stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (tmp_path / "episodes.after-checkpoint.jsonl").read_bytes().count(b"\n") == 2  # nothing moved twice
    path.chmod(0o640)
    assert cut_episodes_after(tmp_path, 1) == 1 and stat.S_IMODE(path.stat().st_mode) == 0o640  # its mode kept


def test_a_run_resumed_with_another_batch_size_resumes_again_with_every_index_once(tmp_path):
    """The checkpoint counted its episodes as rollouts x --episodes-per-step of the session
    that saved it: resumed with 8 after 2 steps of 4, it said 24 where 16 were written, and
    the next --resume refused the run ("the run folder was changed"); the next step's first
    index was 16 = 2 x 8 only by luck (with 2 instead, it restarted inside the written ones)."""
    from arena.store import read_episodes
    from arena.training import train

    run = tmp_path / "run"
    train(config(run, steps=2, save_every=1))
    train(config(run, steps=3, save_every=1, episodes_per_step=8, resume=str(run)))
    train(config(run, steps=4, save_every=1, episodes_per_step=2, resume=str(run)))
    indices = [ep.metadata["index"] for ep in read_episodes(run)]
    assert indices == list(range(4 + 4 + 8 + 2))
    assert len({ep.seed for ep in read_episodes(run)}) == len(indices)  # no deal played twice


def test_a_new_run_refuses_a_folder_holding_what_training_writes_but_not_an_empty_one(tmp_path):
    """model/ of the user's was deleted whole, run.json replaced, metrics.csv merged into; an
    empty checkpoints/ (a failed start's) holds nothing and does not block the retry."""
    from arena.run_info import refuse_existing_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    refuse_existing_run(run)
    (run / "model").mkdir()
    (run / "model" / "notes.txt").write_text("mine")
    (run / "metrics.csv").write_text("my,notes\n")
    with pytest.raises(ArenaError, match=r"holds model, metrics.csv, which a training run writes: choose another --out"):
        refuse_existing_run(run)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my: settings\n")  # was "a run that stopped ...: remove it first"
    with pytest.raises(ArenaError, match=r"holds a config.yaml but no run \(no run.json, no episodes.jsonl\): "
                                         r"choose another --out \(a new or empty folder\)$"):
        refuse_existing_run(mine)


def test_env_state_files_are_cut_back_to_the_checkpoint_and_the_rest_kept_aside(tmp_path):
    """What envs append to the run's env-state/ after a checkpoint (AZR's tasks of episodes
    played again) is moved beside each file; a file made after it goes whole; the files
    moved aside are no state of the run (a later resume leaves them alone)."""
    from arena.resume import cut_env_state_after, env_state_sizes

    state = tmp_path / "env-state"
    (state / "azr").mkdir(parents=True)
    (state / "azr" / "tasks.jsonl").write_bytes(b'{"a": 1}\n')
    checkpoint = env_state_sizes(tmp_path)
    assert checkpoint == {"azr/tasks.jsonl": 9}
    with open(state / "azr" / "tasks.jsonl", "ab") as f:
        f.write(b'{"b": 2}\n{"c"')  # a line after the checkpoint, and one torn by a kill
    (state / "new.jsonl").write_bytes(b'{"d": 4}\n')
    assert cut_env_state_after(tmp_path, checkpoint) == 2
    assert (state / "azr" / "tasks.jsonl").read_bytes() == b'{"a": 1}\n'
    assert (state / "azr" / "tasks.after-checkpoint.jsonl").read_bytes() == b'{"b": 2}\n{"c"\n'
    assert (state / "new.jsonl").read_bytes() == b"" and (state / "new.after-checkpoint.jsonl").read_bytes() == b'{"d": 4}\n'
    assert env_state_sizes(tmp_path) == {"azr/tasks.jsonl": 9, "new.jsonl": 0}
    assert cut_env_state_after(tmp_path, checkpoint) == 0  # nothing after it any more
    (state / "azr" / "tasks.jsonl").write_bytes(b"")  # a buffer lost: the run would resume without it, silently
    with pytest.raises(ArenaError, match=r"tasks.jsonl holds 0 bytes but the checkpoint recorded 9: the run folder "
                                         r"was changed; restore the file to resume the run$"):
        cut_env_state_after(tmp_path, checkpoint)


def test_a_lost_env_state_file_stops_the_resume_before_any_episode_is_moved(tmp_path):
    from arena.training import prepare_run

    run = tmp_path / "run"
    fake_run(run, steps=4, checkpoints=(2,))
    state_file = run / "checkpoints" / "checkpoint-2" / "arena_state.json"
    state_file.write_text(json.dumps({"episodes_written": 1, "rollouts": 1, "baselines": {},
                                      "env_state": {"azr/azr_tasks.jsonl": 9}}))
    (run / "episodes.jsonl").write_text('{"index": 0}\n{"index": 1}\n')
    with pytest.raises(ArenaError, match="azr_tasks.jsonl holds 0 bytes but the checkpoint recorded 9"):
        prepare_run(TrainConfig(resume=str(run), steps=4))
    assert (run / "episodes.jsonl").read_text() == '{"index": 0}\n{"index": 1}\n'  # nothing moved aside
    assert not (run / "episodes.after-checkpoint.jsonl").exists()


def test_the_final_model_replaces_the_previous_one_but_never_a_users_file(tmp_path, caplog):
    """A finished run trained further deleted RUN/model whole, with a user's NOTES.md in it."""
    import types

    from arena.training import save_final_model

    def trainer(weights: str):
        def save_model(path):
            Path(path).mkdir(parents=True, exist_ok=True)
            (Path(path) / "model.safetensors").write_text(weights)

        tokenizer = types.SimpleNamespace(save_pretrained=lambda path: (Path(path) / "tokenizer.json").write_text("t"))
        return types.SimpleNamespace(save_model=save_model, processing_class=tokenizer)

    save_final_model(trainer("first"), tmp_path)
    save_final_model(trainer("second"), tmp_path)  # the same files: replaced, nothing kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model" / "model.safetensors").read_text() == "second"
    (tmp_path / "model" / "NOTES.md").write_text("mine")
    with caplog.at_level("WARNING"):
        save_final_model(trainer("third"), tmp_path)
    assert (tmp_path / "model" / "model.safetensors").read_text() == "third"
    kept = tmp_path / "model.before-resume-1"
    assert (kept / "NOTES.md").read_text() == "mine" and (kept / "model.safetensors").read_text() == "second"
    assert "model.before-resume-1: it holds NOTES.md, which the new model does not" in caplog.text


def test_a_new_run_inside_a_run_folder_is_refused(tmp_path):
    """`--out RUN/model` was a new run nested in RUN, deleted with RUN/model by RUN's resume."""
    from arena.training import prepare_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    prepare_run(config(run / "plays"))  # a folder of `arena play`'s: nothing of it is replaced
    (run / "config.yaml").write_text("steps: 3\n")
    with pytest.raises(ArenaError, match=r"run/model is inside the run folder .*run, which writes there: choose an "
                                         "--out outside it"):
        prepare_run(config(run / "model"))
    assert not (run / "model").exists()
    prepare_run(config(tmp_path / "beside"))
    from arena.store import open_run  # nor `arena play --out RUN/model`

    with pytest.raises(ArenaError, match=r"run/model is inside the training run folder .*run, which writes there"):
        open_run(run / "model", mode="new", info={})
    assert not (run / "model").exists()


@pytest.mark.parametrize("status, newest", [("complete", "model"), ("interrupted", "checkpoint-45"),
                                            ("running", "checkpoint-45"), (None, "model")])
def test_a_run_trained_further_is_evaluated_at_its_newest_weights(tmp_path, status, newest):
    """A finished 10-step run resumed to 60 and stopped at 48 kept its step-10 model/:
    `arena eval RUN` evaluated it, not checkpoint-45."""
    from arena.run_info import newest_model, write_run_info

    fake_run(tmp_path, steps=60, checkpoints=(40, 45))
    for folder in (tmp_path / "model", *(tmp_path / "checkpoints").iterdir()):
        folder.mkdir(exist_ok=True)
        (folder / "config.json").write_text("{}")
    if status is not None:
        write_run_info(tmp_path, {"command": "train", "status": status})
    assert newest_model(tmp_path).name == newest


def test_a_resume_of_a_run_being_written_says_only_that(tmp_path):
    """Refused by the folder's lock, a resume first said "resuming with --learning-rate ...;
    config.yaml will say so", though it wrote nothing."""
    from arena.store import EpisodeWriter

    run = tmp_path / "run"
    fake_run(run, steps=4, checkpoints=(2,))
    with EpisodeWriter(run):  # another command writing the run now
        result = arena_cmd("train", "--resume", run, "--steps", "4", "--learning-rate", "0.001")
    line = one_line_error(result)
    assert "is being written by another arena command" in line and "resuming" not in result.stderr + result.stdout
    new = tmp_path / "new"  # a new run training before its first checkpoint: not one that "stopped"
    with EpisodeWriter(new):
        (new / "config.yaml").write_text("steps: 4\n")
        line = one_line_error(arena_cmd("train", "--out", new, "--steps", "1"))
    assert "is being written by another arena command" in line
