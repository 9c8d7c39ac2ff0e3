"""The trainer: TRL's seam pinned, samples and batches, checkpoints, resume after SIGKILL."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

trl = pytest.importorskip("trl")


# -- the seam: a TRL upgrade that moves it must fail here, not train silently wrong ---------
def test_trl_is_the_pinned_version():
    assert trl.__version__ == "1.16.0", "arena overrides private GRPOTrainer methods: re-check the seam before moving the pin"


def test_arena_checks_the_loss_types_trl_supports():
    import re

    from trl import GRPOConfig

    from arena.config import LOSS_TYPES

    help_text = GRPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    supported = help_text.split("Supported values are", 1)[1].split(".", 1)[0]
    assert set(re.findall(r"'(\w+)'", supported)) == set(LOSS_TYPES), supported


def test_grpo_trainer_seam_is_where_arena_expects_it():
    from trl import GRPOTrainer

    prepare = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._generate_and_score_completions(" in prepare, "TRL no longer generates through _generate_and_score_completions"
    assert "split_tensor_dict" in prepare and "shuffle_sequence_dict" in prepare
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._compute_loss).parameters) == ["self", "model", "inputs"]
    params = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters
    for name in ("model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy"):
        assert name in params
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    assert "self._get_per_token_logps_and_entropies(" in loss


def test_the_loss_reads_only_keys_arena_provides():
    """Every `inputs[...]` key TRL's loss reads is one arena's batch carries (or one TRL
    treats as optional, read with `.get`)."""
    from trl import GRPOTrainer

    source = inspect.getsource(GRPOTrainer._compute_loss)
    required = set(re.findall(r'inputs\["(\w+)"\]', source))
    provided = {"prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages",
                "num_items_in_batch", "old_per_token_logps", "ref_per_token_logps"}
    # read only under a guard: tool calls (arena's batches never meet it), and the sampler
    # correction (arena sets `use_vllm` exactly when its batches carry the ratio)
    guarded = {"tool_mask": '"tool_mask" not in inputs',
               "importance_sampling_ratio": "self.use_vllm and self.vllm_importance_sampling_correction"}
    for key, guard in guarded.items():
        assert guard in source, f"TRL's guard on inputs[{key!r}] moved: check SelfPlayTrainer._batch"
    missing = required - provided - set(guarded)
    assert not missing, f"TRL's loss now reads {sorted(missing)}: add them to SelfPlayTrainer._batch"


def test_trl_own_entropy_bonus_stays_off_and_arena_bonus_is_applied_once(tmp_path):
    """TRL 1.16 has an `entropy_coef` of its own (every completion token, the whole vocabulary
    on unconstrained rows); arena's bonus over the legal actions lives under another name,
    so TRL's loss never adds a second one."""
    from arena.config import TrainConfig
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                out=str(tmp_path / "run")))
    assert trainer.args.entropy_coef == 0.0 and not trainer.use_adaptive_entropy
    assert trainer._entropy_bonus_enabled is False, "TRL's entropy bonus is on: arena's would be added twice"
    assert trainer.legal_entropy_coef == TrainConfig().entropy_coef_at(0) == 1.0


@pytest.mark.parametrize("frozen_before", [False, True])
def test_the_heap_is_frozen_while_training_and_as_it_was_after(tmp_path, monkeypatch, frozen_before):
    """Garbage collections skip the start-up heap while training runs (`_frozen_heap`); a
    caller that froze its own heap keeps it frozen, and one that did not gets it back thawed."""
    import gc

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer
    from arena.training import train

    seen, thawed = [], []
    batch_of = SelfPlayTrainer._batch
    monkeypatch.setattr(SelfPlayTrainer, "_batch", lambda self, kept: seen.append(gc.get_freeze_count()) or batch_of(self, kept))
    unfreeze = gc.unfreeze
    monkeypatch.setattr(gc, "unfreeze", lambda: thawed.append(1) or unfreeze())
    if frozen_before:
        gc.freeze()
    try:
        train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                          out=str(tmp_path / "run")))
        after = gc.get_freeze_count()
    finally:
        unfreeze()
    assert len(seen) == 1 and seen[0] > 100_000  # torch, transformers and the model, at the least
    assert (after > 0) == frozen_before and thawed == ([] if frozen_before else [1])


# -- batch construction -------------------------------------------------------------------
def test_pad_left_and_right():
    from arena.batch import pad_left, pad_right

    ids, mask = pad_left([[1, 2, 3], [4]], pad=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_right([[5], [6, 7], []], pad=0)
    assert ids.tolist() == [[5, 0], [6, 7], [0, 0]] and mask.tolist() == [[1, 0], [1, 1], [0, 0]]


def _run(args: list[str], cwd: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "arena.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


STEPS = 10
TRAIN = ["train", "--env", "spiral/KuhnPoker-v0", "--episodes-per-step", "8", "--save-every", "2", "--save-total-limit", "10",
         "--eval-every", "0", "--seed", "3", "--report-to", "none"]


def _indices(run: Path) -> list[int]:
    from arena.store import read_episodes

    return [ep.metadata["index"] for ep in read_episodes(run)]


def _state(run: Path, step: int) -> dict:
    return json.loads((run / "checkpoints" / f"checkpoint-{step}" / "arena_state.json").read_text())


@pytest.mark.slow
def test_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path):
    """A real SIGKILL mid-run, then `--resume`: the episodes before the checkpoint are kept
    exactly once, those after it are moved aside and played again, and the RAE baselines
    and episodes equal those of the same run never interrupted."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _run([*TRAIN, "--steps", str(STEPS), "--out", str(killed)], tmp_path)
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "checkpoint-4" / "arena_state.json").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint-4 within 300 s"
        time.sleep(0.02)
    # kill as soon as checkpoint-4 is complete: the run is then somewhere in steps 5-10
    # (possibly past checkpoint-6 or -8 on a fast machine: resume takes the newest)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((killed / "run.json").read_text())["status"] == "running"  # a SIGKILL leaves no word

    out = _run(["train", "--resume", str(killed)], tmp_path).communicate(timeout=600)[0]
    assert "Traceback" not in out, out
    assert "missing keys" not in out, out  # the tied lm_head is in the checkpoint, as the embedding
    assert _indices(killed) == list(range(STEPS * 8))
    ref = _run([*TRAIN, "--steps", str(STEPS), "--out", str(clean)], tmp_path).communicate(timeout=600)[0]
    assert "Traceback" not in ref, ref
    assert _state(killed, 4)["baselines"] == _state(clean, 4)["baselines"]
    assert _state(killed, STEPS)["baselines"] == _state(clean, STEPS)["baselines"]
    from arena.store import read_episodes

    played = [[t.completion for t in ep.turns] for ep in read_episodes(killed)]
    assert played == [[t.completion for t in ep.turns] for ep in read_episodes(clean)]


def test_a_typo_in_an_env_id_fails_before_the_run_folder_exists(tmp_path):
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.training import prepare_run

    run = tmp_path / "run"
    with pytest.raises(ArenaError, match="did you mean 'spiral/KuhnPoker-v0'"):
        prepare_run(TrainConfig(env=["spiral/KuhnPokr-v0"], out=str(run)))
    with pytest.raises(ArenaError, match="not one of the --env ids"):
        prepare_run(TrainConfig(env=["spiral/KuhnPoker-v0"], env_kwargs={"spiral/TicTacToe-v0": {}}, out=str(run)))
    assert not run.exists()  # nothing to block the corrected command


def test_a_second_run_started_on_the_same_new_folder_removes_nothing_of_the_first(tmp_path, monkeypatch):
    """Two `arena train --out X` at once both found X free; the one whose episode writer
    then found the folder locked removed, as its failed start's leftovers, the (still
    empty) episode file the other was writing into: that run lost every episode. The other
    run is played here by a writer that starts right after this one's check."""
    from arena import training
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.store import EpisodeWriter

    run = tmp_path / "run"
    other = []
    check = training.refuse_existing_run

    def then_the_other_starts(run_dir):
        check(run_dir)
        if not other:
            other.append(EpisodeWriter(run_dir))  # the folder, its lock and an empty episodes.jsonl

    monkeypatch.setattr(training, "refuse_existing_run", then_the_other_starts)
    try:
        with pytest.raises(ArenaError, match=r"is being written by another arena command"):
            training.train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                       out=str(run)))
        assert (run / "episodes.jsonl").is_file() and other[0].path == run / "episodes.jsonl"
    finally:
        other[0].close()


def test_a_run_still_before_its_first_checkpoint_is_said_to_be_training(tmp_path):
    """A second `--out X` while X trained (no checkpoint yet) was told X "holds a run that
    stopped before its first checkpoint", and to remove it."""
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.store import EpisodeWriter
    from arena.training import prepare_run

    run = tmp_path / "run"
    with EpisodeWriter(run):
        (run / "config.yaml").write_text("env: [spiral/KuhnPoker-v0]\n")
        with pytest.raises(ArenaError, match=r"is being written by another arena command: wait for it to end"):
            prepare_run(TrainConfig(env=["spiral/KuhnPoker-v0"], out=str(run)))
    with pytest.raises(ArenaError, match=r"holds a run .*before its first checkpoint"):
        prepare_run(TrainConfig(env=["spiral/KuhnPoker-v0"], out=str(run)))


def test_resuming_a_finished_run_says_so_and_touches_nothing(tmp_path):
    """`--resume RUN` with --steps at or below the last checkpoint's step is one line naming
    the fix (TRL would have trained one step past the end)."""
    import json

    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.store import EPISODES_FILE
    from arena.training import prepare_run

    ckpt = tmp_path / "checkpoints" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "arena_state.json").write_text(json.dumps({"episodes_written": 1}))
    (tmp_path / EPISODES_FILE).write_text('{"index": 0}\n{"index": 1}\n')
    for steps in (2, 3):
        with pytest.raises(ArenaError, match=r"last checkpoint is step 3 and --steps is \d, so there is nothing to "
                                             r"train; give --steps N with N > 3"):
            prepare_run(TrainConfig(resume=str(tmp_path), steps=steps))
    assert (tmp_path / EPISODES_FILE).read_text() == '{"index": 0}\n{"index": 1}\n'  # nothing moved aside
    assert prepare_run(TrainConfig(resume=str(tmp_path), steps=4)) == (tmp_path, ckpt)


def test_a_step_with_nothing_to_train_on_makes_no_update_and_three_in_a_row_stop(tmp_path):
    """Every model turn masked as infra (a sandbox outage): no update and no NaN for the
    first empty steps, then a one-line error instead of training on nothing for ever."""
    import torch
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.trainer import MAX_EMPTY_STEPS, SelfPlayTrainer, local_rollout

    def broken_sandbox(trainer, start_index, metadata):
        episodes = local_rollout(trainer, start_index, metadata)
        for ep in episodes:
            for turn in ep.turns:
                turn.info["infra"] = True
        return episodes

    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=MAX_EMPTY_STEPS + 1, episodes_per_step=4, eval_every=0,
                      save_every=100, out=str(tmp_path / "run"))
    model, tokenizer = load_model("tiny", device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = HFPolicy(model, tokenizer, constrain=True)
    trainer = SelfPlayTrainer(cfg, model, tokenizer, policy, tmp_path / "run", rollout=broken_sandbox)
    with pytest.raises(ArenaError, match=f"{MAX_EMPTY_STEPS} steps in a row had nothing to train on.*infra"):
        trainer.train()
    from transformers.trainer_callback import ProgressCallback

    bars = [c for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)]
    assert bars and bars[0].training_bar is not None  # left open by the error
    trainer.close_progress()  # as arena.training.train does: no bar redrawn after the error line
    assert bars[0].training_bar is None
    trainer.writer.close()
    assert trainer.state.global_step == MAX_EMPTY_STEPS - 1
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), f"{name} changed in a step with nothing to train on"

    # after a real step too: Adam's momentum moved the weights on a zero gradient (a review of the math)
    seen = {}

    def broken_at_step_1(trainer, start_index, metadata):
        if trainer.state.global_step == 0:
            return local_rollout(trainer, start_index, metadata)
        seen.update({k: v.clone() for k, v in trainer.model.state_dict().items()})  # after step 1's update
        return broken_sandbox(trainer, start_index, metadata)

    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=4, eval_every=0, save_every=100,
                      out=str(tmp_path / "run2"))
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer, constrain=True), tmp_path / "run2",
                              rollout=broken_at_step_1)
    trainer.train()
    trainer.writer.close()
    assert trainer.state.global_step == 2 and seen
    assert any(not torch.equal(seen[k], before[k]) for k in seen)  # step 1 trained
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, seen[name]), f"{name} changed in a step with nothing to train on after a real one"


def test_a_synced_kl_reference_is_checkpointed_and_restored_on_resume(tmp_path):
    """`--sync-ref-model` moves the KL reference with the policy; TRL's checkpoint leaves it
    out, arena saves it beside. A 4-step run cut back to its step-2 checkpoint (as a kill
    leaves it) and resumed ends with the weights of the run never cut: a reference reloaded
    as the starting model would change the KL term of steps 3-4."""
    import shutil

    import torch

    from arena.config import TrainConfig
    from arena.training import train

    def config(out: Path, resume: bool = False) -> TrainConfig:
        return TrainConfig(env=["spiral/KuhnPoker-v0"], steps=4, episodes_per_step=8, save_every=2, eval_every=0,
                           seed=5, beta=0.5, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=0.5,
                           out=str(out), resume=str(out) if resume else None)

    whole = train(config(tmp_path / "whole"))
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "checkpoint-4")
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2" / "ref_model.safetensors").is_file()
    cut = train(config(tmp_path / "cut", resume=True))
    for name, param in whole.model.state_dict().items():
        assert torch.equal(param, cut.model.state_dict()[name]), name
    for name, param in whole.ref_model.state_dict().items():
        assert torch.equal(param, cut.ref_model.state_dict()[name]), name


def test_a_finished_run_trained_further_learns_from_its_first_new_step(tmp_path):
    """The default linear schedule ends at rate 0, which the checkpoint's optimizer keeps; a
    run resumed with a larger --steps takes its first new step at the new schedule's rate
    (1e-3 here: 3e-3 * (3 - 2) / 3), not at 0 (its weights did not move)."""
    import torch

    from arena.config import TrainConfig
    from arena.training import train

    def config(steps: int, resume: bool = False) -> TrainConfig:
        return TrainConfig(env=["spiral/KuhnPoker-v0"], steps=steps, episodes_per_step=4, save_every=2, eval_every=0,
                           learning_rate=3e-3, lr_scheduler_type="linear", out=str(tmp_path),
                           resume=str(tmp_path) if resume else None)

    before = {k: v.clone() for k, v in train(config(2)).model.state_dict().items()}
    after = train(config(3, resume=True))
    assert any(not torch.equal(before[k], v) for k, v in after.model.state_dict().items())
    with open(tmp_path / "metrics.csv", newline="") as f:
        rates = {int(r["step"]): float(r["learning_rate"]) for r in csv.DictReader(f) if r.get("learning_rate")}
    assert rates[3] == pytest.approx(1e-3)


def test_optimizer_flags_given_with_resume_are_the_ones_the_resumed_steps_train_with(tmp_path):
    """transformers' loading restores the checkpoint's parameter groups and base rates: a
    run resumed with --learning-rate, --weight-decay or --adam-beta2 trained on at the old
    values (config.yaml said the new ones). Now they are this session's, the moments go on,
    and --optimizer can switch from AdamW to optimistic AdamW (its first step then a plain
    AdamW step, as its own first step is)."""
    import torch

    from arena.config import TrainConfig
    from arena.training import train

    common = {"env": ["spiral/KuhnPoker-v0"], "episodes_per_step": 4, "save_every": 1, "eval_every": 0,
                  "lr_scheduler_type": "constant", "out": str(tmp_path)}
    train(TrainConfig(steps=2, learning_rate=3e-3, weight_decay=0.1, **common))
    train(TrainConfig(steps=3, learning_rate=1e-3, weight_decay=0.0, adam_beta2=0.99, optimizer="optimistic-adamw",
                      resume=str(tmp_path), **common))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rates = {int(r["step"]): float(r["learning_rate"]) for r in csv.DictReader(f) if r.get("learning_rate")}
    assert rates[2] == pytest.approx(3e-3) and rates[3] == pytest.approx(1e-3)
    saved = torch.load(tmp_path / "checkpoints" / "checkpoint-3" / "optimizer.pt", weights_only=False)
    assert {g["weight_decay"] for g in saved["param_groups"]} == {0.0}
    assert {tuple(g["betas"]) for g in saved["param_groups"]} == {(0.9, 0.99)}
    assert all(int(s["step"]) == 3 and s["prev_update"] is not None for s in saved["state"].values())


def test_ctrl_c_while_a_checkpoint_is_written_stops_once_it_is_complete(tmp_path, monkeypatch, ctrl_c):
    """A Ctrl-C that arrived while a checkpoint was written cut it off (no arena state: not a
    checkpoint); a run stopped so during its last one had nothing to resume or evaluate."""
    import os
    import signal

    from arena.checkpoint import CheckpointState
    from arena.config import TrainConfig
    from arena.run_info import checkpoint_step, last_checkpoint
    from arena.training import train

    real = CheckpointState.save_reference

    def interrupted(self, ckpt):  # Ctrl-C in the middle of writing the checkpoint
        os.kill(os.getpid(), signal.SIGINT)
        real(self, ckpt)

    monkeypatch.setattr(CheckpointState, "save_reference", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=3, episodes_per_step=4, save_every=1, eval_every=0,
                          out=str(tmp_path)))
    assert checkpoint_step(last_checkpoint(tmp_path)) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_evaluating_during_training_changes_nothing_it_trains(tmp_path):
    """Evaluation draws from the policy's RNG and puts it back: a run evaluated at every
    step plays the same episodes and ends with the same weights as one never evaluated."""
    import torch

    from arena.config import TrainConfig
    from arena.training import train

    runs = {}
    for every in (0, 1):
        out = tmp_path / f"every-{every}"
        trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=3, episodes_per_step=8, eval_every=every,
                                    eval_episodes=2, out=str(out)))
        played = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
        runs[every] = (trainer.model.state_dict(), [(e["seed"], [(t["completion"], t["logprobs"]) for t in e["turns"]],
                                                     e["rewards"]) for e in played])
    assert (tmp_path / "every-1" / "eval.jsonl").read_text().count("\n") == 4  # steps 0-3
    assert runs[0][1] == runs[1][1]
    for name, param in runs[0][0].items():
        assert torch.equal(param, runs[1][0][name]), name


def test_evaluations_are_logged_at_the_step_they_score_and_a_resumed_run_reuses_its_starting_one(tmp_path):
    """Each evaluation is logged (metrics.csv, the integrations) at the step whose weights it
    scored, the last step's included; a finished run trained further starts at the step its
    final evaluation scored, which it reuses rather than running and logging it again, unless
    this session evaluates another way (another --eval-episodes): then its new evaluation of
    that step goes to eval.jsonl and the integrations, not to a second metrics.csv row of
    the step (`ArenaCallback.on_train_begin`)."""
    from arena.config import TrainConfig
    from arena.training import train

    def config(steps: int, resume: bool = False, eval_episodes: int = 2) -> TrainConfig:
        return TrainConfig(env=["spiral/KuhnPoker-v0"], steps=steps, episodes_per_step=4, save_every=2, eval_every=2,
                           eval_episodes=eval_episodes, out=str(tmp_path), resume=str(tmp_path) if resume else None)

    def records() -> list[dict]:
        return [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]

    def logged() -> list[tuple[int, float]]:
        with open(tmp_path / "metrics.csv", newline="") as f:
            return [(int(r["step"]), float(r["eval/KuhnPoker-v0/exploitability"]))
                    for r in csv.DictReader(f) if r.get("eval/KuhnPoker-v0/exploitability")]

    def expected() -> list[tuple[int, float]]:
        return [(r["step"], pytest.approx(r["KuhnPoker-v0/exploitability"])) for r in records()]

    train(config(2))
    assert [(r["step"], r["final"]) for r in records()] == [(0, False), (2, True)]
    assert logged() == expected()
    train(config(4, resume=True))
    assert [(r["step"], r["final"]) for r in records()] == [(0, False), (2, True), (4, True)]
    assert logged() == expected()  # step 2 not evaluated nor logged again
    # resumed with another --eval-episodes, the starting step's record (2 episodes) is not
    # what this session would measure: evaluated again, and said so in the record
    train(config(6, resume=True, eval_episodes=4))
    assert [(r["step"], r["final"]) for r in records()] == [(0, False), (2, True), (4, True), (4, False), (6, True)]
    assert logged() == [e for i, e in enumerate(expected()) if i != 3]
    assert [r["episodes"] for r in records()] == [2, 2, 2, 4, 4]
    assert all(r["env"] == ["spiral/KuhnPoker-v0"] for r in records())


def test_lora_training_with_the_cuda_generation_copy_merges_the_adapters_into_it(tmp_path, monkeypatch):
    """On CUDA the policy generates from a bf16 copy made before TRL wraps the model in
    PEFT; each sync fills it by name with the adapters merged in (it used to zip the PEFT
    state dict against the plain one and fail at the first step). Forced here on CPU."""
    import torch
    from arena.agents.hf import HFPolicy

    from arena.config import TrainConfig
    from arena.training import train
    from arena.weights import merged_weights

    monkeypatch.setitem(HFPolicy.__init__.__kwdefaults__, "static_cache", True)  # the CUDA default
    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=4, eval_every=0, lora_r=4,
                                out=str(tmp_path / "run")))
    copy, model = trainer.policy._gen_model, trainer.model
    assert hasattr(model, "peft_config") and not hasattr(copy, "peft_config")
    for module in model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight)  # an adapter that changes the weights
    trainer.policy.sync_weights()
    merged = merged_weights(model)
    assert set(merged) == set(copy.state_dict())
    for key, value in copy.state_dict().items():
        assert torch.equal(value, merged[key].to(torch.bfloat16)), key
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(copy.state_dict()[weight], model.get_base_model().state_dict()[
        weight.replace("q_proj.", "q_proj.base_layer.")].to(torch.bfloat16))  # the adapter is in it
    # a policy handed the PEFT model itself makes a plain merged copy, which syncs the same way
    direct = HFPolicy(model, trainer.processing_class, static_cache=True)
    assert not hasattr(direct._gen_model, "peft_config")
    for sync in (False, True):  # made exact (not a merge of bf16 copies, which rounds twice), and so kept
        if sync:
            direct.sync_weights()
        for key, value in direct._gen_model.state_dict().items():
            assert torch.equal(value, merged[key].to(torch.bfloat16)), key


def test_sync_ref_model_needs_beta_and_full_fine_tuning():
    from arena.config import TrainConfig
    from arena.errors import ArenaError

    with pytest.raises(ArenaError, match="--beta"):
        TrainConfig(sync_ref_model=True)
    with pytest.raises(ArenaError, match="--lora-r"):
        TrainConfig(sync_ref_model=True, beta=0.1, lora_r=8)
    with pytest.raises(ArenaError, match="ref-model-mixup-alpha"):
        TrainConfig(sync_ref_model=True, beta=0.1, ref_model_mixup_alpha=1.5)


def test_adam_betas_reach_the_optimizer_and_are_checked(tmp_path):
    """`--adam-beta1 0` (no momentum) is passed through TRL to the AdamW that steps."""
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, seed=1,
                                adam_beta1=0.0, adam_beta2=0.5, out=str(tmp_path / "run")))
    assert {tuple(group["betas"]) for group in trainer.optimizer.param_groups} == {(0.0, 0.5)}
    for flag, value in (("adam_beta1", 1.0), ("adam_beta2", -0.1)):
        with pytest.raises(ArenaError, match=f"--{flag.replace('_', '-')} must lie in"):
            TrainConfig(**{flag: value})


def test_trl_loss_settings_reach_the_loss_that_trains(tmp_path):
    """Clip-higher, two-sided clipping, GSPO's sequence-level ratio and the 80/20 entropy
    mask are TRL's own: arena passes them through, and TRL's loss reads them where arena's
    batches go (a TRL upgrade that renames them fails here); bad values are one line."""
    from trl import GRPOTrainer

    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=4, eval_every=0,
                                num_iterations=2, epsilon_high=0.28, delta=1.5, loss_type="grpo",
                                importance_sampling_level="sequence", top_entropy_quantile=0.2,
                                use_bias_correction_kl=False, out=str(tmp_path / "run")))
    assert (trainer.epsilon_low, trainer.epsilon_high, trainer.args.delta) == (0.2, 0.28, 1.5)
    assert trainer.args.use_bias_correction_kl is False
    assert (trainer.importance_sampling_level, trainer.top_entropy_quantile) == ("sequence", 0.2)
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    for read in ("self.epsilon_high", "self.args.delta", "self.importance_sampling_level", "self.top_entropy_quantile",
                 "self.args.use_bias_correction_kl"):
        assert read in loss, read
    assert trainer.state.global_step == 2
    for bad, message in (({"importance_sampling_level": "sequense"}, "did you mean 'sequence'"),
                         ({"delta": 1.1}, "--delta caps the ratio above the clip range, so it must be > 1 \\+ --epsilon"),
                         ({"epsilon_high": 0.0}, "--epsilon-high must be > 0"),
                         ({"top_entropy_quantile": 1.5}, "--top-entropy-quantile must lie in")):
        with pytest.raises(ArenaError, match=message):
            TrainConfig(**bad)


def test_optimistic_adamw_is_the_optimizer_that_steps(tmp_path):
    """`--optimizer optimistic-adamw` builds `arena.optim.OptimisticAdamW` through Trainer's
    own `create_optimizer` (its weight-decay groups), and its state goes into the checkpoint."""
    import torch

    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.optim import OptimisticAdamW
    from arena.training import train

    run = tmp_path / "run"
    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=4, eval_every=0, seed=1,
                                save_every=2, optimizer="optimistic-adamw", adam_beta1=0.0, out=str(run)))
    inner = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
    assert isinstance(inner, OptimisticAdamW)
    assert {tuple(group["betas"]) for group in inner.param_groups} == {(0.0, 0.999)}
    saved = torch.load(run / "checkpoints" / "checkpoint-2" / "optimizer.pt", weights_only=False)
    assert all(state["prev_update"] is not None and int(state["step"]) == 2 for state in saved["state"].values())
    with pytest.raises(ArenaError, match="unknown --optimizer 'oadam'"):
        TrainConfig(optimizer="oadam")


def test_transformers_bars_come_back_however_training_ends():
    """`train` turns transformers' own bars off around the loop (no "Writing model shards"
    inside the training bar); a library caller gets them back, after an error too."""
    from transformers.utils import logging as hf_logging

    from arena.training import _no_transformers_bars

    assert hf_logging.is_progress_bar_enabled()
    with pytest.raises(RuntimeError), _no_transformers_bars():
        assert not hf_logging.is_progress_bar_enabled()
        raise RuntimeError("a step failed")
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a caller who had them off keeps them off
    try:
        with _no_transformers_bars():
            pass
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()


def test_the_progress_bar_shows_an_evaluation_at_once_and_keeps_it_until_the_next():
    import io

    from tqdm.auto import tqdm
    from transformers import TrainerState

    from arena.callbacks import ProgressBar

    out = io.StringIO()
    bar = ProgressBar()
    bar.training_bar = tqdm(total=4, file=out, mininterval=0)
    state = TrainerState()
    bar.on_log(None, state, None, logs={"eval_KuhnPoker-v0/exploitability": 0.4567})  # step 0's evaluation
    assert "exploitability=0.457" in out.getvalue()  # drawn now, not with the next tick
    bar.training_bar.update(1)
    bar.on_log(None, state, None, logs={"loss": 0.125, "entropy": 1.0})
    assert bar.training_bar.postfix == "loss=0.125, entropy=1, exploitability=0.457"
    bar.on_log(None, state, None, logs={"loss": 0.25, "eval_KuhnPoker-v0/exploitability": 0.1})
    assert out.getvalue().rstrip().endswith("loss=0.25, exploitability=0.100]")
    bar.training_bar.close()


def test_mask_truncated_completions_leaves_cut_completions_out_of_the_loss_and_counts_them(tmp_path):
    """At most 3 new tokens under the constraint: a Kuhn Poker action (`[bet]`: 2 tokens and
    EOS) finishes, a TicTacToe one (`[4]`: 3 tokens and EOS) is cut before its EOS. Each
    stored turn says which (`finish_reason`), and with the flag exactly the cut ones leave
    the loss; the truncated rate is logged per env and role."""
    from arena.config import TrainConfig
    from arena.store import read_episodes
    from arena.training import train

    train(TrainConfig(env=["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"], steps=2, episodes_per_step=6,
                      eval_every=0, save_every=100, max_new_tokens=3, mask_truncated_completions=True,
                      out=str(tmp_path)))
    turns = {env: [t for ep in read_episodes(tmp_path) if ep.env_id == env for t in ep.turns]
             for env in ("spiral/KuhnPoker-v0", "spiral/TicTacToe-v0")}
    assert not any(t.info.get("finish_reason") for t in turns["spiral/KuhnPoker-v0"])
    cut = turns["spiral/TicTacToe-v0"]
    assert cut and all(t.info["finish_reason"] == "length" and len(t.token_ids) == 3 for t in cut)
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("samples/trained")]
    assert len(rows) == 2
    assert sum(int(float(r["samples/dropped_truncated"])) for r in rows) == len(cut)
    assert sum(int(float(r["samples/trained"])) for r in rows) == len(turns["spiral/KuhnPoker-v0"])
    for r in rows:
        assert float(r["KuhnPoker-v0/player_0/truncated_rate"]) == 0.0
        assert float(r["TicTacToe-v0/player_0/truncated_rate"]) == 1.0


@pytest.mark.parametrize("truncation", [{"top_p": 0.5}, {"top_k": 2}, {"min_p": 0.9}], ids=["top_p", "top_k", "min_p"])
def test_old_log_probs_of_nucleus_samples_are_the_loss_distributions_not_the_sampled_ones(tmp_path, monkeypatch,
                                                                                         truncation):
    """With --top-p < 1 (or --top-k, --min-p) and more than one pass over a batch, the PPO
    ratio's old log-probs are the whole (temperature-scaled) distribution's, as the loss
    scores it and as TRL computes them, not the truncated one the tokens were sampled from
    (which would put the first pass's ratio at the kept mass, about 0.5 at --top-p 0.5)."""
    import torch

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer
    from arena.training import train

    checked = []
    batch_of = SelfPlayTrainer._batch

    def spy(self, kept):
        out = batch_of(self, kept)
        ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
        mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
        width = out["completion_ids"].size(1)
        with torch.no_grad():  # the model's own forward, position by position
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, -width - 1:-1].float() / 0.7
            expected = logits.log_softmax(-1).gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)
        on = out["completion_mask"].bool()
        assert torch.allclose(out["old_per_token_logps"][on], expected[on], atol=1e-4)
        sampled = torch.tensor([lp for s in kept for lp in s.logprobs])
        assert sampled.sum() > expected[on].sum() + 0.3 * len(sampled)  # the nucleus' own were higher
        checked.append(len(kept))
        return out

    monkeypatch.setattr(SelfPlayTrainer, "_batch", spy)
    train(TrainConfig(env=["spiral/TicTacToe-v0"], steps=4, episodes_per_step=4, eval_every=0, save_every=100,
                      constrain=False, max_new_tokens=4, temperature=0.7, num_iterations=2, **truncation,
                      gradient_accumulation_steps=2, out=str(tmp_path)))  # the forward in two chunks
    assert len(checked) == 2 and all(checked)  # two rollouts, each trained on twice


def test_no_grad_log_probs_in_micro_batch_chunks_equal_one_forward(tmp_path, monkeypatch):
    """The reference's (and the nucleus runs' old) log-probs are taken in as many chunks as
    the loss has micro-batches, constrained rows too: the same values as one forward."""
    import torch

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer
    from arena.training import train

    compared = []
    batch_of = SelfPlayTrainer._batch

    def spy(self, kept):
        out = batch_of(self, kept)
        assert self.args.steps_per_generation == 2 and "allowed" in out
        chunked = self._no_grad_logps(self.model, out)
        monkeypatch.setattr(self.args, "steps_per_generation", 1)
        whole = self._no_grad_logps(self.model, out)
        monkeypatch.setattr(self.args, "steps_per_generation", 2)
        on = out["completion_mask"].bool()
        assert torch.allclose(chunked[on], whole[on], atol=1e-5) and torch.equal(out["ref_per_token_logps"], chunked)
        compared.append(int(on.sum()))
        return out

    monkeypatch.setattr(SelfPlayTrainer, "_batch", spy)
    train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=8, eval_every=0, save_every=100,
                      beta=0.1, gradient_accumulation_steps=2, out=str(tmp_path)))
    assert compared and compared[0] > 8


def test_dtype_loads_the_weights_in_it_and_the_run_saves_them_so(tmp_path):
    """`--dtype bfloat16` (TRL's --dtype): the trained weights and the saved model are bf16,
    and the sampler is then corrected for (a cached bf16 decode is not the loss's forward)."""
    import json

    import torch

    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.flags import parse_args
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                dtype="bfloat16", out=str(tmp_path / "run")))
    assert {p.dtype for p in trainer.model.parameters()} == {torch.bfloat16}
    assert trainer.state.global_step == 1 and trainer.sampling_correction
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    auto = TrainConfig(dtype="auto")
    assert auto.torch_dtype() == "auto" and TrainConfig().torch_dtype() is torch.float32
    with pytest.raises(ArenaError, match="unknown --dtype 'bfloat'; did you mean 'bfloat16'"):
        TrainConfig(dtype="bfloat")
    with pytest.raises(ArenaError, match="--dtype sets its weights' dtype"):
        parse_args(["--model-init-kwargs", '{"dtype": "bfloat16"}'])


def test_cast_lm_head_to_fp32_reaches_trls_cast(tmp_path):
    """With bf16 weights the loss's head runs in fp32 (TRL's own cast at build time); the
    constrained and the shared-prefix forwards go through it."""
    import torch

    from arena.config import TrainConfig
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                dtype="bfloat16", cast_lm_head_to_fp32=True, out=str(tmp_path / "run")))
    model = trainer.model
    assert model.lm_head.weight.dtype == torch.float32 and model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    ids = torch.tensor([[1, 2, 3]])
    assert model(input_ids=ids).logits.dtype == torch.float32 and trainer.state.global_step == 1


@pytest.mark.parametrize("lora_r", [0, 4], ids=["full", "lora"])
def test_bf16_training_with_the_cuda_generation_copy_lends_it_the_weights(tmp_path, monkeypatch, lora_r):
    """`--dtype bfloat16` on CUDA (forced here on CPU): the generation module holds views of
    the trained bf16 weights, not a second copy of them; the head TRL casts to fp32 after the
    policy was made (`--cast-lm-head-to-fp32`) is the one weight copied (and the embedding
    tied to it). With LoRA the base
    weights stay the loaded ones and the adapted ones are a merged copy."""
    import torch
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.training import train
    from arena.weights import merged_weights

    monkeypatch.setitem(HFPolicy.__init__.__kwdefaults__, "static_cache", True)  # the CUDA default
    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=4, eval_every=0,
                                dtype="bfloat16", cast_lm_head_to_fp32=not lora_r, lora_r=lora_r,
                                out=str(tmp_path / "run")))
    policy, model = trainer.policy, trainer.model
    trainer.sync_policy()
    copy = policy._gen_model.state_dict()
    merged = merged_weights(model)
    assert set(copy) == set(merged) and {v.dtype for v in copy.values()} == {torch.bfloat16}
    for key, value in copy.items():
        assert torch.equal(value, merged[key].to(torch.bfloat16)), key
    if lora_r:
        assert policy._views and not any("proj" in key for key in policy._views)  # embeddings, norms: lent
        loaded, _ = load_model("tiny", device="cpu", dtype=torch.bfloat16)
        base = {key.replace(".base_layer", ""): p for key, p in model.get_base_model().named_parameters()
                if ".lora_" not in key}
        assert set(base) == set(dict(loaded.named_parameters()))
        for name, p in loaded.named_parameters():
            assert torch.equal(base[name], p), name
    else:
        assert model.lm_head.weight.dtype == torch.float32
        bf16 = {key for key, value in model.state_dict().items() if value.dtype == torch.bfloat16}
        assert set(policy._views) == bf16 and "lm_head.weight" not in bf16  # (tied: the embedding is fp32 too)
        assert len(bf16) == len(copy) - 2
        trained = dict(model.named_parameters())
        for key in policy._views:
            assert copy[key].data_ptr() == trained[key].data_ptr(), key


def test_illegal_mask_rules_out_all_but_the_allowed_ids_where_a_row_has_them():
    import torch

    from arena.constrained_loss import illegal_mask

    allowed = [[[1, 2], [0]], None, [[3], [1, 3], [2]]]  # row 2's third list lies past the 2 kept positions
    mask = illegal_mask(allowed, torch.Size([3, 2, 4]), torch.device("cpu"))
    expected = torch.zeros(3, 2, 4, dtype=torch.bool)
    for i, per_token in enumerate(allowed):  # the plain construction, one position at a time
        for t, ids in enumerate((per_token or [])[:2]):
            expected[i, t, :] = True
            expected[i, t, ids] = False
    assert torch.equal(mask, expected) and not mask[1].any() and mask[0, 0].tolist() == [True, False, False, True]


def test_sapo_and_vespo_shapes_are_trls_defaults_and_reach_the_loss(tmp_path):
    import dataclasses

    from trl import GRPOConfig, GRPOTrainer

    from arena.config import LOSS_SHAPES, TrainConfig
    from arena.errors import ArenaError
    from arena.training import train

    trl_defaults = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
    assert {n: getattr(TrainConfig(), n) for n in LOSS_SHAPES} == {n: trl_defaults[n] for n in LOSS_SHAPES}
    loss = inspect.getsource(GRPOTrainer._compute_loss)
    assert all(f"self.args.{n}" in loss for n in LOSS_SHAPES)
    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                loss_type="sapo", sapo_temperature_neg=1.3, out=str(tmp_path / "run")))
    assert trainer.args.sapo_temperature_neg == 1.3 and trainer.state.global_step == 1
    with pytest.raises(ArenaError, match="--vespo-k-pos must be > 0"):
        TrainConfig(vespo_k_pos=0.0)


def test_legal_entropy_bonus_leaves_out_free_text_rows_of_a_mixed_batch(tmp_path, arena_cache):
    """A batch mixing a game's constrained rows with an env's free-text rows: the bonus is
    the entropy over the legal actions of the constrained tokens only, never the whole
    vocabulary's entropy of a free-text row (it would pay the model to babble)."""
    import torch
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.trainer import SelfPlayTrainer

    model, tokenizer = load_model("tiny", device="cpu")
    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, out=str(tmp_path))
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer, constrain=True), tmp_path)
    try:
        trainer.share_prefix = False
        ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 10, 11]])
        mask = torch.ones_like(ids)
        trainer._allowed = [[[8, 12], [9, 13, 14]], None]  # row 0 constrained, row 1 free text
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 2, compute_entropy=True)
        assert entropies[0].max() <= torch.log(torch.tensor(3.0)) + 1e-5  # over 2 and 3 legal tokens
        assert entropies[1].min() > 3.0  # the whole vocabulary's
        # H_0 + H_1 + H_1 log pi(y_0) (`entropy_bonus_tokens`: the later entropy on the earlier token's log-prob)
        row = entropies[0].sum() + entropies[0, 1] * logps[0, 0].detach()
        torch.testing.assert_close(trainer._entropy_tokens.detach().sum(-1), torch.stack([row, torch.tensor(0.0)]))
    finally:
        trainer._allowed = None
        trainer.writer.close()


def test_the_entropy_bonus_follows_the_entropy_of_the_action_not_of_each_token():
    """Actions `[a1]`, `[a2]` (two tokens: a branch, then a second one), `[b]`, `[c]` (one):
    the expected gradient of the bonus's terms over every path, each weighted by its
    probability, is the gradient of the actions' entropy. With each token's entropy alone it
    was not (its fixed point is uniform per branching token: 1/3 for `[b]`, not 1/4)."""
    import torch

    from arena.constrained_loss import entropy_bonus_tokens

    torch.manual_seed(0)
    first = torch.randn(3, requires_grad=True)  # a, b, c
    second = torch.randn(2, requires_grad=True)  # a1, a2 after a
    p1, p2 = torch.log_softmax(first, -1), torch.log_softmax(second, -1)
    h1, h2 = -(p1.exp() * p1).sum(), -(p2.exp() * p2).sum()
    paths = [(p1[0], p2[0], h2), (p1[0], p2[1], h2), (p1[1], torch.tensor(0.0), torch.tensor(0.0)),
             (p1[2], torch.tensor(0.0), torch.tensor(0.0))]  # (log pi of each token, the second token's entropy)

    def expected(per_token):
        return sum((a + b).exp().detach() * per_token(a, b, h).sum() for a, b, h in paths)

    mask = torch.ones(1, 2)
    bonus = expected(lambda a, b, h: entropy_bonus_tokens(torch.stack([h1, h]).unsqueeze(0), torch.stack([a, b]).unsqueeze(0), mask))
    action_logps = torch.stack([a + b for a, b, _ in paths])
    exact = -(action_logps.exp() * action_logps).sum()
    grads = torch.autograd.grad(bonus, (first, second), retain_graph=True)
    torch.testing.assert_close(grads, torch.autograd.grad(exact, (first, second), retain_graph=True))
    per_token = expected(lambda a, b, h: torch.stack([h1, h]))
    assert not torch.allclose(torch.autograd.grad(per_token, first)[0], grads[0], atol=1e-3)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
def test_the_entropy_bonus_weighs_against_the_policy_term_alike_in_any_mix(tmp_path, arena_cache, loss_type):
    """The bonus over the legal actions is reduced as the loss type reduces its per-token loss
    (`reduce_like_loss`): against the policy term of the same constrained row, it weighs the
    same whether the batch holds that row alone or a free-text row too. Divided by the
    batch's tokens under every loss type, grpo's bonus fell to 2/3 of its weight in this mix,
    and dr_grpo's was max_completion_length / 2 times too large in either."""
    from arena.agents.hf import HFPolicy, load_model

    from arena.config import TrainConfig
    from arena.samples import Sample
    from arena.trainer import SelfPlayTrainer

    model, tokenizer = load_model("tiny", device="cpu")
    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, out=str(tmp_path),
                      loss_type=loss_type, entropy_coef=1.0, entropy_coef_final=1.0)
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer, constrain=True), tmp_path)
    try:
        trainer.share_prefix = False
        trainer.current_gradient_accumulation_steps = 1
        model.train()

        def row(completion, allowed):
            return Sample(env_id="spiral/KuhnPoker-v0", role="player_0", episode=0, prompt_ids=[5, 6, 7],
                          completion_ids=completion, logprobs=[-1.0] * len(completion), reward=1.0, allowed=allowed)

        def terms(rows):  # (bonus, policy term of the constrained row) of the batch's loss
            losses = []
            for advantage in (0.0, 1.0):
                rows[0].advantage, rows[1:] = advantage, [dataclasses.replace(r, advantage=0.0) for r in rows[1:]]
                losses.append(trainer._compute_loss(model, trainer._batch(rows)).item())  # the bonus: with grad
            return -losses[0], losses[1] - losses[0]

        game = row([8, 9], [[8, 12], [9, 13, 14]])
        bonus, policy = terms([game])
        mixed_bonus, mixed_policy = terms([game, row([10, 11, 12, 13], None)])
        assert bonus > 0 and policy < 0 and mixed_bonus > 0
        assert bonus / -policy == pytest.approx(mixed_bonus / -mixed_policy, rel=1e-4)
        if loss_type == "dr_grpo":  # against the policy term, as under dapo: the row's entropy per token
            assert bonus / -policy < 1.2
    finally:
        trainer.writer.close()


@pytest.mark.parametrize("shuffle", [None, 1, 2])
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo"])
def test_filler_rows_do_not_shrink_the_loss(tmp_path, arena_cache, loss_type, shuffle):
    """Five kept rows over four micro-batches: the batch is padded with three empty rows.
    The row-averaged losses (grpo, dr_grpo) would count them (5/8 of the loss), and bnpo a
    micro-batch of fillers alone as one of its four means; scaled back, every loss type sums
    over its micro-batches to what the kept rows alone give, in order and shuffled as TRL
    shuffles before it splits. Then as two processes, each with its share of seven rows:
    their average is the one process's loss (each row weighs the same in either share)."""
    import torch
    from arena.agents.hf import HFPolicy, load_model
    from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

    from arena.config import TrainConfig
    from arena.samples import Sample
    from arena.trainer import SelfPlayTrainer

    model, tokenizer = load_model("tiny", device="cpu")
    cfg = TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0, out=str(tmp_path),
                      loss_type=loss_type, gradient_accumulation_steps=4, entropy_coef=0.0)
    trainer = SelfPlayTrainer(cfg, model, tokenizer, HFPolicy(model, tokenizer), tmp_path)
    try:
        kept = [Sample(env_id="spiral/KuhnPoker-v0", role="player_0", episode=i, prompt_ids=[5, 6, 7],
                       completion_ids=[8, 9], logprobs=[-1.0, -1.0], reward=1.0, advantage=1.0) for i in range(5)]
        batch = trainer._batch(kept)
        assert batch["completion_ids"].size(0) == 8
        trainer.current_gradient_accumulation_steps = 4
        model.train()

        def summed(batch: dict) -> float:
            if shuffle is not None:
                torch.manual_seed(shuffle)
                batch = shuffle_sequence_dict(batch)
            return sum(trainer._compute_loss(model, part).item() for part in split_tensor_dict(batch, 4))

        # ratio 1, advantage 1: each kept token's loss is -1
        expected = -2 / trainer.max_completion_length if loss_type == "dr_grpo" else -1.0
        assert summed(batch) == pytest.approx(expected, rel=1e-5)
        if loss_type == "dapo":  # normalised by the whole batch's tokens (num_items), not by rows
            return
        rows = [*kept, *kept[:2]]  # seven rows: shares of four and three, each padded to four
        for sample, advantage in zip(rows, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], strict=True):
            sample.advantage = advantage
        one = summed(trainer._batch(rows))
        shares = [trainer._batch(share, min_rows=4, kept_total=7, processes=2) for share in (rows[:4], rows[4:])]
        assert sum(summed(b) for b in shares) / 2 == pytest.approx(one, rel=1e-5)
    finally:
        trainer.writer.close()


def test_a_resumed_run_plays_the_fixed_opponents_moves_of_the_uncut_run(tmp_path):
    """The opponent's sampling stream restarts from the step's first episode index: it is in
    no checkpoint, so a resumed run's `random` opponent once played other moves (20 of 32
    episodes the same over 4 steps) and trained to other weights than the run never cut."""
    import shutil

    import torch

    from arena.config import TrainConfig
    from arena.store import read_episodes
    from arena.training import train

    def config(out, resume=False):
        return TrainConfig(env=["spiral/KuhnPoker-v0"], steps=2, episodes_per_step=8, save_every=1, eval_every=0,
                           seed=5, opponent="random", out=str(out),
                           resume=str(out) if resume else None)

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    uncut = train(config(whole)).model.state_dict()
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "checkpoints" / "checkpoint-2")
    resumed = train(config(cut, resume=True)).model.state_dict()

    def played(run):
        return [(ep.seed, [(t.agent, t.completion) for t in ep.turns]) for ep in read_episodes(run)]

    assert played(cut) == played(whole)
    assert all(torch.equal(value, resumed[name]) for name, value in uncut.items())


def test_evaluating_a_trainer_that_evaluates_nothing_is_one_line(tmp_path):
    """With eval_every 0 the returned trainer's run_evaluation was "'NoneType' object is not callable"."""
    from arena.config import TrainConfig
    from arena.errors import ArenaError
    from arena.training import train

    trainer = train(TrainConfig(env=["spiral/KuhnPoker-v0"], steps=1, episodes_per_step=4, eval_every=0,
                                out=str(tmp_path)))
    with pytest.raises(ArenaError, match=r"evaluates nothing \(eval_every 0.*arena.evaluate.evaluate"):
        trainer.run_evaluation(final=True)
