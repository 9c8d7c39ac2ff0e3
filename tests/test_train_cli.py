"""`arena train`, `arena eval`, `arena report` through the real command (a subprocess).

The tiny model is built once per session into the session's `ARENA_CACHE`
(tests/conftest.py); the subprocesses inherit it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_support import arena_cmd, one_line_error

from arena.errors import ArenaError

PNG = b"\x89PNG\r\n\x1a\n"


# -- arena train: flags, help, errors ---------------------------------------------------------
def test_train_help_lists_every_field_with_its_default():
    from arena.flags import fields_help

    result = arena_cmd("train", "--help")
    assert result.returncode == 0, result.stderr
    assert "--steps" in result.stdout and "--learning-rate" in result.stdout
    for flag, default, _ in fields_help():
        assert flag in result.stdout, flag
    assert "--config" in result.stdout and "--resume" in result.stdout
    from arena.config import TrainConfig

    assert repr(TrainConfig().learning_rate) in result.stdout  # the learning rate's default


def test_train_misspelled_flag_is_one_line_naming_the_close_match():
    line = one_line_error(arena_cmd("train", "--stesp", "3"))
    assert "did you mean --steps" in line


def test_play_and_evals_kw_flag_in_train_names_env_kwargs():
    line = one_line_error(arena_cmd("train", "--env", "spiral/KuhnPoker-v1", "--kw", "rounds=3"))
    assert "unknown flag --kw; training takes env arguments per env as --env-kwargs JSON" in line, line


def test_an_unknown_flag_or_key_without_a_close_match_is_one_line(tmp_path):
    """It was an IndexError traceback (the hint read the first close match of none)."""
    from arena.flags import parse_args

    line = one_line_error(arena_cmd("train", "--frobnicate", "3"))
    assert line.startswith("error: unknown flag --frobnicate (see `arena train --help`)"), line
    config = tmp_path / "c.yaml"
    config.write_text("frobnicate: 3\n")
    with pytest.raises(ArenaError, match=r"^unknown key in .*c.yaml: 'frobnicate' \(see"):
        parse_args(["--config", str(config)])


@pytest.mark.parametrize(("typed", "named"), [
    (["--num-generations", "8"], "--estimator grpo groups the samples that share a prompt"),
    (["--per-device-train-batch-size", "8"], "split it with --gradient-accumulation-steps"),
    (["--logging-steps", "5"], "every step is logged"),
    (["--bf16"], "bf16 autocast on a CUDA device"),
])
def test_a_trl_setting_arena_has_no_counterpart_for_says_why(typed, named):
    line = one_line_error(arena_cmd("train", *typed))
    assert "TRL's setting has no counterpart here" in line and named in line


@pytest.mark.parametrize(("typed", "named"), [
    (["--save-steps", "5"], "arena's is --save-every"),
    (["--max-steps", "5"], "arena's is --steps"),
    (["--use-vllm"], "arena's is --backend vllm"),
    (["--output-dir", "x"], "arena's is --out"),
])
def test_a_trl_flag_name_is_one_line_naming_arenas(typed, named):
    line = one_line_error(arena_cmd("train", *typed))
    assert "TRL's name" in line and named in line


def test_trl_names_map_to_fields_that_exist_and_are_not_fields_themselves():
    from transformers import TrainingArguments
    from trl import GRPOConfig

    from arena.config import TrainConfig
    from arena.trl_names import TRL_NAMES, TRL_WITHOUT

    fields = set(TrainConfig.__dataclass_fields__)
    assert set(TRL_NAMES.values()) <= fields and not set(TRL_NAMES) & fields
    trl = set(GRPOConfig.__dataclass_fields__) | set(TrainingArguments.__dataclass_fields__)
    assert set(TRL_WITHOUT) <= trl and not set(TRL_WITHOUT) & (fields | set(TRL_NAMES))


def test_train_bad_yaml_key_is_one_line(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("env: [spiral/KuhnPoker-v0]\nlearning_rat: 0.001\n")
    line = one_line_error(arena_cmd("train", "--config", config, "--out", tmp_path / "run"))
    assert "learning_rat" in line and "learning_rate" in line
    assert not (tmp_path / "run").exists()
    config.write_text("steps: [1, 2\nenv: x\n")  # a YAML syntax error is said with its place
    line = one_line_error(arena_cmd("train", "--config", config, "--out", tmp_path / "run"))
    assert line == f"error: {config}: not valid YAML: line 2, column 4: expected ',' or ']', but got ':' (while parsing a flow sequence)"


def test_train_bad_value_is_one_line():
    line = one_line_error(arena_cmd("train", "--steps", "many"))
    assert "--steps" in line


def test_resume_starts_from_the_runs_own_config(tmp_path):
    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args

    save_config(TrainConfig(env=["spiral/TicTacToe-v0"], steps=7, out=str(tmp_path)), tmp_path / "config.yaml")
    config = parse_args(["--resume", str(tmp_path)])
    assert config.env == ["spiral/TicTacToe-v0"] and config.steps == 7 and config.resume == str(tmp_path)
    config = parse_args([f"--resume={tmp_path}", "--steps", "9"])
    assert config.steps == 9 and config.env == ["spiral/TicTacToe-v0"]
    save_config(TrainConfig(env=["spiral/TicTacToe-v0", "spiral/KuhnPoker-v0"], out=str(tmp_path)), tmp_path / "config.yaml")
    config = parse_args(["--env-weights", "3,1", "--resume", str(tmp_path)])  # valid over the run's 2 envs
    assert config.env_weights == [3.0, 1.0] and len(config.env) == 2


def test_python_resumes_a_run_from_its_own_config_as_the_flag_does(tmp_path):
    """`TrainConfig(resume=RUN, steps=N)` took every default (128 episodes a step, no
    TensorBoard, lora_r 0 refused for a LoRA run); `TrainConfig.resume_run` is `--resume`'s."""
    from arena.config import TrainConfig, save_config

    save_config(TrainConfig(out=str(tmp_path), steps=4, episodes_per_step=8, lora_r=4, report_to="tensorboard"),
                tmp_path / "config.yaml")
    config = TrainConfig.resume_run(tmp_path, steps=9)
    assert (config.steps, config.episodes_per_step, config.lora_r, config.report_to) == (9, 8, 4, "tensorboard")
    assert config.resume == str(tmp_path)
    with pytest.raises(ArenaError, match="--episodes-per-step must be >= 1"):
        TrainConfig.resume_run(tmp_path, episodes_per_step=0)  # the changes are checked as the flags are


def test_a_config_file_or_a_lost_config_yaml_does_not_reset_a_resumed_run(tmp_path):
    """`--config FILE --resume RUN`, or a file's `resume:` key, started over from every default
    (128 episodes a step, 1000 steps); so did a run whose config.yaml was lost, though its
    run.json records the config. The run's settings are the base; the file's keys change them."""
    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args
    from arena.run_info import write_run_info

    run = tmp_path / "run"
    run.mkdir()
    mine = TrainConfig(env=["spiral/TicTacToe-v0"], steps=3, episodes_per_step=4, out=str(run))
    save_config(mine, run / "config.yaml")
    (tmp_path / "steps.yaml").write_text("steps: 5\n")
    config = parse_args(["--config", str(tmp_path / "steps.yaml"), "--resume", str(run)])
    assert (config.steps, config.episodes_per_step, config.env) == (5, 4, ["spiral/TicTacToe-v0"])
    (tmp_path / "resume.yaml").write_text(f"resume: {run}\nsteps: 6\n")
    config = parse_args(["--config", str(tmp_path / "resume.yaml")])
    assert (config.steps, config.episodes_per_step, config.resume) == (6, 4, str(run))
    (run / "config.yaml").unlink()
    write_run_info(run, {"command": "train", "config": mine.to_dict(), "status": "interrupted"})
    config = parse_args(["--resume", str(run), "--steps", "7"])
    assert (config.steps, config.episodes_per_step, config.env) == (7, 4, ["spiral/TicTacToe-v0"])
    # the flags given are said and written: config.yaml comes back, from run.json's record and the changes
    from arena.resume import resume_changes, save_resumed_config

    assert resume_changes(config) == {"steps": (3, 7)}
    assert save_resumed_config(config) is None and not list(run.glob("config.before-resume-*"))  # nothing to keep
    assert parse_args(["--resume", str(run)]).to_dict() == config.to_dict() | {"resume": str(run)}
    (run / "config.yaml").unlink()
    write_run_info(run, {"command": "train", "config": {**mine.to_dict(), "steps": "abc"}})
    with pytest.raises(ArenaError, match=r"run.json: config.steps: 'abc' is not a valid int$"):  # not "--steps"
        parse_args(["--resume", str(run)])
    # with run.json gone too, the settings are lost: the run went on with every default (128 episodes a step)
    (run / "run.json").unlink()
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(ArenaError, match=r"has no config.yaml and no readable run.json: the run's settings are lost; "
                                         r"give them with --config FILE \(a copy of its config.yaml\) to resume it$"):
        parse_args(["--resume", str(run), "--steps", "7"])
    write_run_info(run, {"command": "play", "env_id": "spiral/KuhnPoker-v0"})
    with pytest.raises(ArenaError, match=r"holds a run of `arena play`, not a training run: nothing to resume"):
        parse_args(["--resume", str(run)])
    (run / "run.json").unlink()
    save_config(mine, tmp_path / "mine.yaml")
    config = parse_args(["--resume", str(run), "--config", str(tmp_path / "mine.yaml"), "--steps", "7"])
    assert (config.steps, config.episodes_per_step, config.env) == (7, 4, ["spiral/TicTacToe-v0"])


def test_a_model_from_a_training_run_keeps_the_runs_constraint(tmp_path):
    """`--model RUN` goes on from a run's model; decoding defaults to what that run did (a
    tiny-model run is constrained), where a plain model folder defaults to free decoding."""
    from arena.config import TrainConfig, save_config

    for name, constrain in (("tiny-run", None), ("free-run", False)):
        run = tmp_path / name
        (run / "model").mkdir(parents=True)
        (run / "model" / "config.json").write_text("{}")
        save_config(TrainConfig(out=str(run), constrain=constrain), run / "config.yaml")
    assert TrainConfig(model=str(tmp_path / "tiny-run")).resolved_constrain() is True
    assert TrainConfig(model=str(tmp_path / "tiny-run" / "model")).resolved_constrain() is True
    assert TrainConfig(model=str(tmp_path / "free-run")).resolved_constrain() is False
    assert TrainConfig(model=str(tmp_path / "tiny-run"), constrain=False).resolved_constrain() is False
    assert TrainConfig(model="tiny").resolved_constrain() is True
    assert TrainConfig(model="some-org/some-model").resolved_constrain() is False
    from arena.run_info import run_decoding

    child = tmp_path / "child"  # trained on from the tiny-model run: constrained as well, down the chain
    (child / "model").mkdir(parents=True)
    (child / "model" / "config.json").write_text("{}")
    save_config(TrainConfig(out=str(child), model=str(tmp_path / "tiny-run")), child / "config.yaml")
    assert run_decoding(child)["constrain"] is True and TrainConfig(model=str(child)).resolved_constrain() is True


def test_a_model_from_a_training_run_keeps_the_runs_chat_template_arguments(tmp_path):
    """Qwen3 trained with thinking off and trained on with `--model RUN` stays so, unless told."""
    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    save_config(TrainConfig(out=str(run), chat_template_kwargs={"enable_thinking": False}), run / "config.yaml")
    assert parse_args(["--model", str(run)]).chat_template_kwargs == {"enable_thinking": False}
    assert TrainConfig(model=str(run / "model")).chat_template_kwargs == {"enable_thinking": False}
    assert parse_args(["--model", str(run), "--chat-template-kwargs", "{}"]).chat_template_kwargs == {}
    assert TrainConfig().chat_template_kwargs == {} and TrainConfig(model="org/name").chat_template_kwargs == {}


def test_interrupt_message_names_the_step_and_how_to_resume(tmp_path, capsys):
    from arena.store import STATE_FILE, read_run_info, write_run_info
    from arena.train_cli import _interrupted

    write_run_info(tmp_path, {"command": "train", "status": "interrupted", "step": 12})
    _interrupted(tmp_path)
    err = capsys.readouterr().err
    assert "interrupted at step 12" in err and "no checkpoint yet" in err
    ckpt = tmp_path / "checkpoints" / "checkpoint-10"
    ckpt.mkdir(parents=True)
    (ckpt / STATE_FILE).write_text("{}")
    _interrupted(tmp_path)
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"interrupted at step 12; resume with `arena train --resume {tmp_path}` (from checkpoint-10)" in err
    write_run_info(tmp_path, {"command": "train", "status": "interrupted", "step": 10})
    _interrupted(tmp_path, steps=10)  # after the last step's checkpoint: nothing to resume
    err = capsys.readouterr().err.replace("\n", " ")
    assert f"interrupted at step 10, after its last checkpoint: the trained model is in {ckpt}" in err
    assert "resume with" not in err
    write_run_info(tmp_path, {"command": "train", "status": "running"})
    _interrupted(tmp_path)
    assert "interrupted before the first step" in capsys.readouterr().err
    assert read_run_info(tmp_path)["status"] == "interrupted"


def test_ctrl_c_is_held_until_the_work_it_would_cut_is_done_and_twice_stops_at_once(capsys, ctrl_c):
    from arena.errors import interrupts_held

    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_held("writing checkpoint-3"):
        os.kill(os.getpid(), signal.SIGINT)
        done.append(1)
    assert done == [1] and "writing checkpoint-3 before stopping" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), interrupts_held("writing"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        done.append(2)
    assert done == [1] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_held("writing"):
        done.append(3)
    assert done == [1, 3]


# -- arena eval: what it loads ----------------------------------------------------------------
def test_eval_target_resolution(tmp_path):
    from arena.train_cli import resolve_target

    assert resolve_target("tiny") == ("tiny", None)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("steps: 2\n")
    with pytest.raises(ArenaError, match="holds no model yet"):
        resolve_target(str(run))
    from arena.run_info import write_run_info

    write_run_info(run, {"command": "train", "status": "interrupted", "step": 1})
    with pytest.raises(ArenaError, match="the run was interrupted before its first checkpoint; train a new run with "
                                         "another --out$"):  # `arena train --out RUN` refuses it: not suggested
        resolve_target(str(run))
    for step in (2, 10, 12):
        (run / "checkpoints" / f"checkpoint-{step}").mkdir(parents=True)
        (run / "checkpoints" / f"checkpoint-{step}" / "config.json").write_text("{}")
        if step != 12:  # 12 is being saved (or its save was cut): its weights may be half there
            (run / "checkpoints" / f"checkpoint-{step}" / "arena_state.json").write_text("{}")
    assert resolve_target(str(run)) == (str(run / "checkpoints" / "checkpoint-10"), run)  # newest complete, not last by name
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    assert resolve_target(str(run)) == (str(run / "checkpoints" / "checkpoint-10"), run)  # model/ of a session before
    write_run_info(run, {"command": "train", "status": "complete", "step": 10})
    assert resolve_target(str(run)) == (str(run / "model"), run)
    assert resolve_target(str(run / "model")) == (str(run / "model"), run)
    assert resolve_target(str(run / "checkpoints" / "checkpoint-2")) == (str(run / "checkpoints" / "checkpoint-2"), run)
    with pytest.raises(ArenaError, match="neither a run folder"):
        resolve_target(str(tmp_path))
    with pytest.raises(ArenaError, match="no such run or model folder"):  # a typo is not sent to the Hub
        resolve_target(str(tmp_path / "rnu"))
    assert resolve_target("nobody-here/some-model") == ("nobody-here/some-model", None)  # a Hub id
    lora = tmp_path / "lora"
    (lora / "model").mkdir(parents=True)
    (lora / "config.yaml").write_text("lora_r: 8\n")
    (lora / "model" / "adapter_config.json").write_text("{}")
    assert resolve_target(str(lora)) == (str(lora / "model"), lora)  # loaded onto its base, merged


def test_eval_of_a_missing_name_says_it_is_no_run_here(tmp_path, monkeypatch):
    """`arena eval kuhn-selfpaly` (a typo, no folder of that name) read as a Hub id used to
    say only that the Hub was unreachable; now it says the name is not a run here either.
    Paths and invalid ids keep `load_model`'s own line (no Hub check at all)."""
    import huggingface_hub.constants

    from arena.train_cli import _check_hub_target

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port
    for name in ("kuhn-selfpaly", "runs/kuhn"):
        with pytest.raises(ArenaError, match=rf"'{name}' is not a run or model folder here.*unreachable.*arena train --out"):
            _check_hub_target(name)
    for name in ("tiny", "./kuhn", "a/b/c", "bad name"):
        _check_hub_target(name)  # left to load_model
    (tmp_path / "kuhn").mkdir()
    _check_hub_target("kuhn")  # here: resolve_target says what the folder lacks
    line = one_line_error(arena_cmd("eval", "a/b/c", "--env", "spiral/KuhnPoker-v0"))  # run in tmp_path
    assert "no such run or model folder: a/b/c (arena eval takes a run folder" in line  # not a --model flag

def test_a_lora_run_trains_and_evaluates(tmp_path):
    run = tmp_path / "lora"
    result = arena_cmd("train", "--env", "spiral/KuhnPoker-v0", "--lora-r", "4", "--steps", "1",
                       "--episodes-per-step", "8", "--eval-every", "0", "--out", run)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "model" / "adapter_config.json").is_file()
    result = arena_cmd("eval", run, "--env", "spiral/KuhnPoker-v0", "--episodes", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "KuhnPoker-v0/exploitability" in json.loads((run / "eval-final.json").read_text())["results"]
    # on another machine the adapter's base, the tiny model's cache folder here, is elsewhere: the same
    # tiny model (its recipe's fingerprint in the folder name) is used; another missing base is one line
    import torch
    from arena.agents.loading import load_model

    config_file = run / "model" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    here = load_model(str(run / "model"))[0]
    config["base_model_name_or_path"] = "/elsewhere/.cache/arena/models/" + Path(config["base_model_name_or_path"]).name
    config_file.write_text(json.dumps(config))
    moved = load_model(str(run / "model"))[0]
    assert all(torch.equal(a, b) for a, b in zip(here.state_dict().values(), moved.state_dict().values(), strict=True))
    config["base_model_name_or_path"] = "/elsewhere/models/qwen"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ArenaError, match=r"LoRA adapter on the base model /elsewhere/models/qwen, which is not on this "
                                         r"machine: copy that model there, or set base_model_name_or_path in"):
        load_model(str(run / "model"))


def test_eval_unknown_env_is_one_line():
    line = one_line_error(arena_cmd("eval", "tiny", "--env", "spiral/Nope-v0"))
    assert "Nope" in line


def test_eval_tiny_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    result = arena_cmd("eval", "tiny", "--env", "spiral/TicTacToe-v0", "--episodes", "4", "--json", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["model"] == "tiny" and record["envs"] == ["spiral/TicTacToe-v0"] and record["episodes"] == 4 and record["deals"] == "duplicate"
    assert record["constrain"] is True
    for opponent in ("random", "heuristic"):
        for rate in ("win_rate", "draw_rate", "loss_rate", "invalid_move_rate", "mean_return"):
            assert f"TicTacToe-v0/vs_{opponent}/{rate}" in record["results"]
        key = f"TicTacToe-v0/vs_{opponent}"
        total = sum(record["results"][f"{key}/{r}"] for r in ("win_rate", "draw_rate", "loss_rate"))
        assert total == pytest.approx(1.0)
    assert "TicTacToe-v0" in result.stdout and "heuristic" in result.stdout


def test_eval_table_says_when_every_game_ended_alike(capsys):
    from arena.train_cli import _print_results

    row = {"win_rate": 0.0, "draw_rate": 1.0, "loss_rate": 0.0, "invalid_move_rate": 0.0, "mean_return": 0.0}
    results = {f"TicTacToe-v0/vs_heuristic/{k}": v for k, v in row.items()}
    results["TicTacToe-v0/vs_heuristic/mean_return_se"] = 0.0
    results.update({f"TicTacToe-v0/vs_random/{k}": v for k, v in row.items()})
    results["TicTacToe-v0/vs_random/mean_return_se"] = 0.25
    _print_results(results, "eval")
    out = capsys.readouterr().out
    assert "(every deal alike)" in out and "± 0.250" in out and "± 0.000" not in out


# -- arena report -----------------------------------------------------------------------------
def synthetic_run(run: Path, steps: int = 6) -> None:
    run.mkdir(parents=True, exist_ok=True)
    header = ["step", "minutes", "loss", "rollout/seconds", "clip_ratio/low_mean"]
    for role in ("player_0", "player_1"):
        header += [f"KuhnPoker-v0/{role}/{m}" for m in ("win_rate", "draw_rate", "loss_rate", "invalid_move_rate",
                                                         "mean_return", "advantage_mean")]
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for step in range(1, steps + 1):
            row = {k: 0.1 * step for k in header}
            row.update(step=step, minutes=0.5 * step, loss="")  # an empty cell, as append_csv writes NaN
            writer.writerow(row)
    with open(run / "eval.jsonl", "w") as f:
        for step in range(0, steps + 1, 2):
            record = {"step": step, "minutes": 0.5 * step, "final": step == steps,
                      "KuhnPoker-v0/exploitability": 0.4 - 0.05 * step,
                      "KuhnPoker-v0/policy_table": {"J": 0.5},
                      "KuhnPoker-v0/vs_random/win_rate": 0.5, "KuhnPoker-v0/vs_random/invalid_move_rate": 0.0,
                      "KuhnPoker-v0/vs_heuristic/win_rate": 0.4}
            f.write(json.dumps(record) + "\n")
        f.write('{"step": 99, "minu')  # a torn last line of a killed run


def test_report_writes_the_plots(tmp_path):
    run = tmp_path / "run"
    synthetic_run(run)
    result = arena_cmd("report", run)
    assert result.returncode == 0, result.stderr
    expected = ["reward.png", "outcomes.png", "loss.png", "exploitability.png", "eval_win_rates.png"]
    for name in expected:
        path = run / "plots" / name
        assert path.read_bytes()[:8] == PNG, name
        assert str(path) in result.stdout
    result = arena_cmd("report", run, "--out", tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == sorted(expected)


def test_report_without_eval_has_no_eval_plots(tmp_path):
    from arena.report import write_plots

    run = tmp_path / "run"
    synthetic_run(run)
    (run / "eval.jsonl").unlink()
    names = sorted(p.name for p in write_plots(run, run / "plots"))
    assert names == ["loss.png", "outcomes.png", "reward.png"]


def test_report_shows_the_truncated_rate_only_for_a_run_that_had_one(tmp_path):
    from arena.metrics import RATES
    from arena.report import outcome_rates, read_metrics, write_plots

    run = tmp_path / "run"
    synthetic_run(run)
    assert outcome_rates(read_metrics(run / "metrics.csv")) == RATES  # no column: as before
    rows = [{"step": 1, "KuhnPoker-v0/player_0/truncated_rate": 0.0}, {"step": 2, "KuhnPoker-v0/player_0/truncated_rate": ""}]
    assert outcome_rates(rows) == RATES  # never cut (or not logged at a step)
    rows.append({"step": 3, "KuhnPoker-v0/player_0/truncated_rate": 0.25})
    assert outcome_rates(rows) == (*RATES, "truncated_rate")
    with open(run / "metrics.csv", newline="") as f:
        table = list(csv.DictReader(f))
    for i, row in enumerate(table):
        row["KuhnPoker-v0/player_0/truncated_rate"] = 0.5 if i else 0.0
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    assert "outcomes.png" in [p.name for p in write_plots(run, run / "plots")]


def test_report_plots_the_roles_of_an_env_played_alone(tmp_path):
    """Evaluations of an env the model plays alone (`<Env>/self/<role>/...`, azr and spice)
    get `eval_roles.png`, a line per role; none of the opponents' plot."""
    from arena.report import write_plots

    run = tmp_path / "run"
    synthetic_run(run)
    rows = [{"step": s, "minutes": s / 10, **{f"Mixed-v0/self/{role}/{rate}": v for role in ("proposer", "solver")
                                               for rate, v in (("mean_return", s / 4), ("invalid_move_rate", 0.5))}}
            for s in (0, 2, 4)]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    names = sorted(p.name for p in write_plots(run, run / "plots"))
    assert names == ["eval_roles.png", "loss.png", "outcomes.png", "reward.png"]
    assert (run / "plots" / "eval_roles.png").read_bytes().startswith(PNG)


def test_report_smooths_per_step_curves_as_tensorboard_does():
    from arena.report import smooth, smoothing_weight

    # debiased EMA, w = 0.5: m = 0.5, 1.25, 2.125 over 1 - w^t = 0.5, 0.75, 0.875
    assert smooth([1.0, 2.0, 3.0], 0.5) == pytest.approx([1.0, 1.25 / 0.75, 2.125 / 0.875])
    assert smooth([4.0, 4.0, 4.0], 0.9) == pytest.approx([4.0, 4.0, 4.0])  # no pull towards 0
    assert smooth([1.0, -1.0], 0.0) == [1.0, -1.0]
    assert smoothing_weight(10) == smoothing_weight(40) == smoothing_weight(99) == 0.0
    assert smoothing_weight(100) == pytest.approx(1 / 3) and smoothing_weight(1000) == pytest.approx(1 - 2 / 21)
    assert all(0.0 <= smoothing_weight(n) < 1.0 for n in range(0, 100_000, 7))
    with pytest.raises(ArenaError, match=r"in \[0, 1\)"):
        smooth([1.0], 1.0)


def test_report_marks_a_series_of_one_point():
    """A line through one point draws nothing: a 1-step run's plots had axes and no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from arena.report import _step_lines

    fig, ax = plt.subplots()
    _step_lines(ax, [1.0], [0.5], "C0")
    _step_lines(ax, [1.0, 2.0], [0.5, 0.7], "C1")
    assert [line.get_marker() for line in ax.get_lines()] == ["o", "None"]
    plt.close(fig)


def test_report_on_a_folder_without_metrics_is_one_line(tmp_path):
    line = one_line_error(arena_cmd("report", tmp_path))
    assert "metrics.csv" in line and "--out " + str(tmp_path) not in line  # `arena train` refuses a played folder
    line = one_line_error(arena_cmd("report", tmp_path / "missing"))
    assert "no such run folder" in line
    run = tmp_path / "run"
    synthetic_run(run)
    (tmp_path / "taken.png").write_bytes(b"mine")
    line = one_line_error(arena_cmd("report", run, "--out", tmp_path / "taken.png"))
    assert "taken.png is a file: --out takes a folder" in line
    assert (tmp_path / "taken.png").read_bytes() == b"mine"


# -- end to end -------------------------------------------------------------------------------
def test_train_then_eval_then_report(tmp_path):
    run = tmp_path / "run"
    result = arena_cmd("train", "--steps", "2", "--episodes-per-step", "8", "--eval-every", "1",
                       "--eval-episodes", "4", "--save-every", "1", "--report-to", "tensorboard", "--out", run)
    assert result.returncode == 0, result.stderr[-3000:]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    scalars = board.Tags()["scalars"]
    for tag in ("train/KuhnPoker-v0/player_0/rae_baseline", "eval/KuhnPoker-v0/exploitability", "train/loss"):
        assert tag in scalars, sorted(scalars)
    assert not [t for t in scalars if t.startswith("train/eval")], sorted(scalars)
    # each evaluation at the step it scored: the starting model, and the last step's weights
    assert [e.step for e in board.Scalars("eval/KuhnPoker-v0/exploitability")] == [0, 1, 2]
    assert [e.step for e in board.Scalars("train/KuhnPoker-v0/player_1/mean_return")] == [1, 2]
    assert f"model: {run / 'model'}" in result.stdout and "exploitability" in result.stdout
    training = result.stderr[result.stderr.index("| 0/2 ["):]  # from the training bar's start (the tiny model may be built before)
    assert "Writing model shards" not in training  # no transformers bar inside the training bar
    assert (run / "model" / "config.json").is_file()
    evals = [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2] and evals[-1]["final"] is True
    with open(run / "metrics.csv", newline="") as f:
        bonus = [float(r["entropy_coef"]) for r in csv.DictReader(f) if r.get("entropy_coef")]
    from arena.config import TrainConfig

    schedule = TrainConfig(steps=2)
    assert bonus == pytest.approx([schedule.entropy_coef_at(0), schedule.entropy_coef_at(1)])  # each step's bonus
    assert bonus[0] == 1.0 and bonus[1] < 1.0

    result = arena_cmd("eval", run, "--env", "spiral/KuhnPoker-v0", "--episodes", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run / "eval-final.json").read_text())
    assert record["model"] == str(run / "model") and record["constrain"] is True
    # two steps of 8 episodes move the policy anywhere (a near-deterministic policy is
    # exploitable by more than uniform's 0.458); the exact value is a finite NashConv / 2
    assert 0.0 <= record["results"]["KuhnPoker-v0/exploitability"] < 3.0
    assert set(record["results"]["KuhnPoker-v0/policy_table"]) == {
        c + h for h in ("", "p", "b", "pb") for c in "JQK"}
    assert "exploitability" in result.stdout and "Kpb" in result.stdout
    gaps = record["results"]["KuhnPoker-v0/action_gaps"]  # self-play gaps: calling with K earns 3 chips over folding
    assert gaps["Kb"] == pytest.approx(3.0) and "self-play gap" in result.stdout
    result = arena_cmd("eval", run, "--env", "spiral/TicTacToe-v0", "--episodes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "eval-final.json").read_text()) == record  # the first evaluation is kept
    assert json.loads((run / "eval-final-2.json").read_text())["envs"] == ["spiral/TicTacToe-v0"]
    assert f"results written to {run / 'eval-final-2.json'}" in result.stdout

    result = arena_cmd("report", run)
    assert result.returncode == 0, result.stderr
    for name in ("reward.png", "outcomes.png", "exploitability.png", "eval_win_rates.png"):
        assert (run / "plots" / name).read_bytes()[:8] == PNG


@contextlib.contextmanager
def _arena_process(*args: object, env: dict[str, str]):
    """`arena ARGS` running, with Ctrl-C raising KeyboardInterrupt as in a terminal even where
    the suite runs with SIGINT ignored (a background job, CI); killed if the test ends first."""
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from arena.cli import main; main(sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", start, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_stops_training_and_says_how_to_resume(tmp_path, sig, code, said):
    """A real SIGINT (Ctrl-C) or SIGTERM (`kill PID`, pre-emption) after the first checkpoint:
    exit 130 / 143, run.json `interrupted`, the step and the resume command."""
    run = tmp_path / "run"
    env = {**os.environ, "COLUMNS": "160", "TOKENIZERS_PARALLELISM": "false"}
    with _arena_process("train", "--steps", "50", "--episodes-per-step", "4", "--eval-every", "0", "--save-every", "1",
                        "--out", run, env=env) as proc:
        for _ in range(300):
            if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("checkpoint-*/arena_state.json")):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert "Traceback" not in err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert f"{said} at step {info['step']}; resume with `arena train --resume {run}`" in err


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_during_eval_says_so_with_its_exit_code(sig, code, said):
    """typer 0.29 turned an interruption no command caught into a silent exit 130 (SIGTERM's
    143 lost): an interrupted `arena eval` said nothing."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    with _arena_process("eval", "tiny", "--env", "spiral/TicTacToe-v0", "-n", "20000", env=env) as proc:
        first = proc.stderr.readline()  # "evaluating tiny ...": the model is loaded, the episodes start
        assert first.startswith("evaluating tiny"), first
        time.sleep(1.0)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == code and err.strip().splitlines()[-1] == said, err[-2000:]


@pytest.mark.parametrize("args", [
    ("--env", "spiral/KuhnPokr-v0"),
    ("--env", "spiral/KuhnPoker-v0", "--env-kwargs", '{"spiral/TicTacToe-v0": {}}'),
])
def test_a_wrong_env_id_is_one_line_before_training_starts(tmp_path, args):
    """The one line is the error, not "training ..." followed by it; nothing is written."""
    result = arena_cmd("train", *args, "--out", tmp_path / "run")
    line = one_line_error(result)
    assert result.returncode == 2 and line.startswith("error: ") and "spiral/" in line
    assert not (tmp_path / "run").exists()


def test_a_misspelt_opponent_is_one_line_naming_the_agent(tmp_path):
    """It loaded the model, then failed as a Hub id ("the Hub is unreachable")."""
    result = arena_cmd("train", "--opponent", "hueristic", "--out", tmp_path / "run")
    assert one_line_error(result).startswith("error: unknown --opponent 'hueristic': did you mean 'heuristic'?")
    assert result.returncode == 2 and not (tmp_path / "run").exists()


def test_resuming_with_nothing_to_train_is_one_line(tmp_path):
    """Said before "resuming ...", so the error is the only line; the run is untouched."""
    from arena.config import TrainConfig, save_config
    from arena.store import STATE_FILE

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / STATE_FILE).write_text(json.dumps({"episodes_written": 0}))
    save_config(TrainConfig(out=str(run), steps=3), run / "config.yaml")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    line = one_line_error(arena_cmd("train", "--resume", run))
    assert line == (f"error: --resume {run}: its last checkpoint is step 3 and --steps is 3, so there is nothing "
                    "to train; give --steps N with N > 3 to train further")
    line = one_line_error(arena_cmd("train", "--resume", run, "--steps", "5", "--env", "spiral/KuhnPokr-v0"))
    assert "did you mean 'spiral/KuhnPoker-v0'" in line
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.parametrize("flags, said", [
    (["--lora-r", "4"], ("its checkpoint holds fully trained weights and cannot go on as a rank-4 adapter; start a new "
                        "run from its model (`arena train --model {run} --lora-r 4 --out NEW`)")),
    (["--model", "hf:other"], ("a resumed run goes on from the weights in its checkpoint; to train another model, "
                              "start a new run (`arena train --model hf:other --out NEW`)")),
])
def test_a_resume_that_changes_what_the_checkpoint_holds_is_one_line_and_writes_nothing(tmp_path, flags, said):
    """A LoRA rank changed on resume crashed in transformers' optimizer loading after
    config.yaml had taken it (every later plain --resume crashed too)."""
    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args
    from arena.store import STATE_FILE
    from arena.training import prepare_run

    run = tmp_path / "run"
    ckpt = run / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / STATE_FILE).write_text(json.dumps({"episodes_written": 0}))
    save_config(TrainConfig(out=str(run), steps=3), run / "config.yaml")
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    line = one_line_error(arena_cmd("train", "--resume", run, "--steps", "5", *flags))
    assert line.endswith(said.format(run=run)) and line.startswith(f"error: --resume {run} with --")
    with pytest.raises(ArenaError, match="start a new run"):
        prepare_run(parse_args(["--resume", str(run), "--steps", "5", *flags]))
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_a_failed_start_leaves_no_run_to_refuse(tmp_path):
    """A wrong --ray-address fails before anything is written, so the corrected command is
    not refused with "already holds a run"."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'selfplay-arena[ray]')")
    run = tmp_path / "run"
    result = arena_cmd("train", "--env", "spiral/KuhnPoker-v0", "--ray-address", "127.0.0.1:1", "--out", run)
    assert result.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr
    assert not (run / "config.yaml").exists() and not (run / "run.json").exists()


def test_resuming_a_run_saved_before_the_entropy_schedule_fields_keeps_its_schedule(tmp_path):
    import yaml

    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args

    run = tmp_path / "old"
    run.mkdir()
    save_config(TrainConfig(out=str(run)), run / "config.yaml")
    data = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("entropy_hold", "grpo_scale"):  # a config.yaml written before these fields existed
        del data[key]
    data["entropy_coef_final"] = None
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    old = parse_args(["--config", str(run / "config.yaml"), "--resume", str(run)])
    assert old.entropy_hold == 0.5 and old.entropy_coef_final == pytest.approx(0.1)  # then: half-way, to a tenth
    fresh = parse_args(["--config", str(run / "config.yaml")])  # the same file for a new run: today's defaults
    assert fresh.entropy_hold == 0.15 and fresh.entropy_coef_at(fresh.steps) == pytest.approx(0.05)
    assert fresh.gradient_checkpointing is None and fresh.share_prefix is True


def test_resuming_a_run_saved_before_the_shared_prefix_keeps_its_forward_and_schedule(tmp_path):
    import yaml

    from arena.config import TrainConfig, save_config
    from arena.flags import parse_args

    run = tmp_path / "old"
    run.mkdir()
    save_config(TrainConfig(out=str(run)), run / "config.yaml")
    data = yaml.safe_load((run / "config.yaml").read_text())
    for key in ("gradient_checkpointing", "share_prefix", "entropy_decay"):  # written after the entropy schedule, before these
        del data[key]
    (run / "config.yaml").write_text(yaml.safe_dump(data))
    old = parse_args(["--config", str(run / "config.yaml"), "--resume", str(run)])
    assert old.gradient_checkpointing is True and old.share_prefix is False and old.entropy_decay == "linear"
    assert old.entropy_coef_final is None and old.entropy_coef_at(old.steps) == pytest.approx(0.05)  # its own schedule


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--loss-type", "dapoo", "unknown --loss-type 'dapoo'; did you mean 'dapo'?"),
    ("--report-to", "tensorbord", "unknown --report-to 'tensorbord'; did you mean 'tensorboard'?"),
    ("--lr-scheduler-type", "cosin", "unknown --lr-scheduler-type 'cosin'; did you mean 'cosine'?"),
    ("--warmup-steps", "-1", "--warmup-steps must be >= 0, got -1"),
    ("--eval-every", "-1", "--eval-every must be >= 0 (0: never), got -1"),  # was: an evaluation every step
    ("--top-p", "0", "--top-p must lie in (0, 1], got 0.0"),
    ("--save-every", "0", "--save-every must be >= 1, got 0"),
])
def test_a_bad_trl_setting_is_one_line_and_leaves_no_run_behind(tmp_path, flag, value, message):
    run = tmp_path / "run"
    result = arena_cmd("train", "--env", "spiral/KuhnPoker-v0", flag, value, "--steps", "1", "--out", run)
    assert message in one_line_error(result)
    assert not run.exists()  # the corrected command is not refused with "already holds a run"


def test_report_to_a_missing_integration_is_one_line_naming_the_package(tmp_path):
    from transformers.integrations import get_available_reporting_integrations

    if "clearml" in get_available_reporting_integrations():
        pytest.skip("clearml is installed here: the error needs an integration that is not")
    run = tmp_path / "run"
    line = one_line_error(arena_cmd("train", "--report-to", "clearml", "--steps", "1", "--out", run))
    assert "--report-to clearml: the clearml package is not installed (`pip install clearml`" in line
    assert not run.exists()


def test_a_failed_start_removes_only_the_empty_files_it_made(tmp_path):
    from arena.store import EPISODES_FILE
    from arena.training import _remove_unstarted

    made = tmp_path / "made"
    made.mkdir()
    (made / EPISODES_FILE).touch()
    (made / "checkpoints").mkdir()  # transformers' Trainer makes it, empty, when it is built
    _remove_unstarted(made, remove_dir=True)
    assert not made.exists()
    mine = tmp_path / "mine"  # the user's folder, with something in it: only the empty episode file goes
    mine.mkdir()
    (mine / EPISODES_FILE).touch()
    (mine / "notes.txt").write_text("keep")
    _remove_unstarted(mine, remove_dir=False)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    kept = tmp_path / "kept"  # episodes already written are never removed
    kept.mkdir()
    (kept / EPISODES_FILE).write_text('{"index": 0}\n')
    _remove_unstarted(kept, remove_dir=True)
    assert (kept / EPISODES_FILE).read_text() == '{"index": 0}\n'


def test_a_value_after_a_switch_names_the_switch():
    from arena.flags import parse_args

    for words in (["--constrain", "maybe"], ["--no-constrain", "maybe"]):
        with pytest.raises(ArenaError, match=r"^--constrain is a switch and takes no value: --constrain or "
                                             r"--no-constrain \(or --constrain=true / --constrain=false\), not 'maybe'$"):
            parse_args(words)
    with pytest.raises(ArenaError, match=r"^unexpected argument 'maybe'; every train setting is a --flag"):
        parse_args(["--steps", "3", "maybe"])
    assert parse_args(["--constrain=false"]).constrain is False


def test_eval_of_a_missing_folder_says_so_before_asking_for_the_env(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    result = subprocess.run([sys.executable, "-m", "arena.cli", "eval", str(missing)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: no such run or model folder: {missing} (arena eval takes a run folder written by `arena train --out`, "
        "a save_pretrained folder, a Hub id ORG/NAME, or tiny)")


def test_report_names_damaged_files_instead_of_saying_there_are_none(tmp_path, caplog):
    from arena.report import read_jsonl, write_plots

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("ste")  # a header cut by a kill
    (run / "eval.jsonl").write_text('garbage\n{"step": 1, "minutes": 0.1}\n{torn')
    with caplog.at_level("WARNING", logger="arena.report"):
        assert read_jsonl(run / "eval.jsonl") == [{"step": 1, "minutes": 0.1}]  # the torn last line: quiet
    assert "1 unreadable line(s) skipped (line 1)" in caplog.text
    (run / "eval.jsonl").write_text("garbage\n")
    with pytest.raises(ArenaError, match=r"metrics.csv and eval.jsonl hold no readable row to plot \(damaged\?\)"):
        write_plots(run, run / "plots")


def test_a_wrong_type_in_a_config_file_names_the_file_and_key(tmp_path):
    from arena.flags import parse_args

    config = tmp_path / "c.yaml"
    config.write_text("steps: three\n")
    with pytest.raises(ArenaError, match=rf"^{config}: steps: 'three' is not a valid int$"):
        parse_args(["--config", str(config)])
    with pytest.raises(ArenaError, match=r"^--steps: 'three' is not a valid int$"):
        parse_args(["--steps", "three"])


def test_eval_json_never_replaces_a_file_it_did_not_write_and_is_checked_first(tmp_path):
    """`--json RUN/metrics.csv` replaced the run's metrics; a folder or a path under a file
    failed with a traceback after the whole evaluation. One line each, before anything loads."""
    (tmp_path / "metrics.csv").write_text("step,reward\n1,0.5\n")
    line = one_line_error(arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--json", tmp_path / "metrics.csv"))
    assert "exists and is not a result of arena eval" in line
    assert (tmp_path / "metrics.csv").read_text() == "step,reward\n1,0.5\n"
    line = one_line_error(arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--json", tmp_path / "metrics.csv" / "x.json"))
    assert "is a file, not a folder" in line
    line = one_line_error(arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--json", tmp_path))
    assert "is a folder: give a file name" in line


def test_eval_takes_env_arguments_as_play_does(tmp_path):
    """`arena eval` had no way to give an env's arguments but a run's config."""
    line = one_line_error(arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "--kw", "rounds=2.5"))
    assert "spiral/KuhnPoker-v0: argument rounds must be an integer, got 2.5 (env arguments are set with --kw" in line
    out = tmp_path / "e.json"
    result = arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v0", "-n", "2", "--kw", "rounds=2", "--json", out)
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["env_kwargs"] == {"spiral/KuhnPoker-v0": {"rounds": 2}}
    assert not any("exploitability" in key for key in record["results"])  # the standard game's only


def test_eval_of_a_kuhn_poker_of_several_hands_says_why_it_has_no_exploitability(tmp_path):
    """`--kw rounds=5` (or KuhnPoker-v1) left the exploitability out without a word."""
    result = arena_cmd("eval", "tiny", "--env", "spiral/KuhnPoker-v1", "--episodes", "2", "--json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    assert "KuhnPoker-v1: no exploitability: it is computed for one-hand Kuhn Poker" in result.stderr
