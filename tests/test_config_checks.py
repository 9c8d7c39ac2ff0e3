"""`TrainConfig`'s checks and the YAML loader: bad values are one line before the run starts,
not a traceback from torch, numpy or vLLM later (or a setting silently dropped)."""

from __future__ import annotations

import dataclasses

import pytest
from _cli_support import arena_cmd, one_line_error

from arena.config import TrainConfig, _base_type, _field_types, _flag
from arena.errors import ArenaError
from arena.flags import load_yaml, parse_args

FLOAT_FIELDS = [name for name, tp in _field_types().items() if _base_type(tp)[0] in (float, list[float])]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_every_float_flag_refuses_inf_and_nan(name, value):
    """`--learning-rate inf` and `--beta inf` passed `not value >= 0` and crashed in torch."""
    flag = f"--{_flag(name)}"
    with pytest.raises(ArenaError, match=rf"^{flag} must be a finite number, got {value}$"):
        parse_args([flag, value])


def test_float_fields_are_found():
    assert {"learning_rate", "beta", "env_weights", "sampling_correction_max", "delta"} <= set(FLOAT_FIELDS)


def test_learning_rate_inf_is_one_line_from_the_command():
    line = one_line_error(arena_cmd("train", "--learning-rate", "inf", "--steps", "1"))
    assert line == "error: --learning-rate must be a finite number, got inf", line


@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999"])
def test_seed_outside_numpys_range_is_refused(seed):
    """numpy's ValueError traceback (or an overflow one) at the run's start, before."""
    with pytest.raises(ArenaError, match=rf"^--seed must lie in \[0, 2\*\*32 - 1\], got {seed}$"):
        parse_args(["--seed", seed])


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seed_range_ends_are_accepted(seed):
    assert TrainConfig(seed=seed).seed == seed


def test_estimators_key_not_an_env_of_the_run_names_the_close_match():
    """A misspelt env id was ignored: the env trained with its default estimator."""
    with pytest.raises(ArenaError, match=r"^--estimators names 'spiral/KuhnPokr-v0', which is not one of the --env "
                                         r"ids \(spiral/KuhnPoker-v0\); did you mean 'spiral/KuhnPoker-v0'\?$"):
        parse_args(["--estimators", '{"spiral/KuhnPokr-v0": "grpo"}'])
    config = parse_args(["--estimators", '{"spiral/KuhnPoker-v0": "grpo"}'])
    assert config.estimators == {"spiral/KuhnPoker-v0": "grpo"}


def test_estimators_key_without_a_close_match():
    with pytest.raises(ArenaError, match=r"^--estimators names 'x', which is not one of the --env ids "
                                         r"\(spiral/KuhnPoker-v0, spiral/TicTacToe-v0\)$"):
        TrainConfig(env=["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0"], estimators={"x": "rae"})


def test_vllm_model_length_is_checked_only_with_the_vllm_backend():
    """The hf backend blamed --vllm-max-model-length, a flag it does not use."""
    assert TrainConfig(max_new_tokens=100_000_000).max_new_tokens == 100_000_000
    with pytest.raises(ArenaError, match=r"^--vllm-max-model-length \(4096\) must exceed --max-new-tokens"):
        TrainConfig(backend="vllm", max_new_tokens=100_000_000)


def test_duplicate_yaml_key_names_the_key_and_its_lines(tmp_path):
    """PyYAML kept the last `steps`, silently."""
    config = tmp_path / "c.yaml"
    config.write_text("steps: 3\nlearning_rate: 0.01\nsteps: 4\n")
    with pytest.raises(ArenaError, match=r"c\.yaml: line 3: key 'steps' is already set on line 1; keep one$"):
        load_yaml(config)
    with pytest.raises(ArenaError, match="line 3: key 'steps'"):
        parse_args(["--config", str(config)])


@pytest.mark.parametrize("text, message", [
    ("env_kwargs:\n  spiral/KuhnPoker-v0:\n    rounds: 1\n    rounds: 3\n",
     r"line 4: key 'rounds' is already set on line 3; keep one$"),  # in a nested mapping
    ("max_new_tokens: 8\nmax-new-tokens: 16\n",
     r"keys 'max_new_tokens' and 'max-new-tokens' set the same field; keep one$"),  # two spellings of one key
])
def test_one_key_given_twice_in_other_forms_is_refused(tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ArenaError, match=message):
        load_yaml(config)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("env_kwargs:\n  spiral/KuhnPoker-v0:\n    <<: {rounds: 1}\n    rounds: 3\n")
    assert load_yaml(config)["env_kwargs"] == {"spiral/KuhnPoker-v0": {"rounds": 3}}


def test_a_config_without_duplicates_still_loads(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 3\nenv: [spiral/KuhnPoker-v0]\n")
    assert load_yaml(config) == {"steps": 3, "env": ["spiral/KuhnPoker-v0"]}
    assert dataclasses.asdict(parse_args(["--config", str(config)]))["steps"] == 3


def test_an_opponent_with_an_env_of_more_than_two_seats_is_one_line_before_the_run_folder(tmp_path):
    """It failed at the first step ("2 agents given for 3 roles"), after the run folder was made."""
    from arena.config import check_env_ids

    with pytest.raises(ArenaError, match=r"--opponent takes the other seat of a two-seat game, and azr/Deduction-v0 "
                                         r"has 3 roles \(proposer, solver, verifier\)"):
        check_env_ids(TrainConfig(env=["azr/Deduction-v0"], opponent="heuristic", out=str(tmp_path / "run")))
    check_env_ids(TrainConfig(env=["spiral/KuhnPoker-v0"], opponent="heuristic", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flag, value, num_iterations, fix", [
    ("--save-every", "50", "3", "give --save-every 48 or --save-every 51"),
    ("--save-every", "1", "2", "give --save-every 2"),
    ("--steps", "3", "2", "give --steps 2 or --steps 4")])  # the last checkpoint, at --steps
def test_a_checkpoint_between_two_passes_over_one_batch_is_refused(flag, value, num_iterations, fix):
    """TRL keeps a rollout batch's later passes in memory only: a checkpoint between them
    resumed with a new rollout where the uncut run took its second pass."""
    other = {"--save-every": "6", "--steps": "12"}
    args = [flag, value, "--num-iterations", num_iterations, *[x for f, v in other.items() if f != flag for x in (f, v)]]
    with pytest.raises(ArenaError, match=rf"^{flag} \({value}\) must be a multiple of --num-iterations "
                                         rf"\({num_iterations}\).*; {fix}$"):
        parse_args(args)
    parse_args(["--save-every", "4", "--steps", "12", "--num-iterations", "2"])


def test_an_env_given_twice_is_one_line():
    """Each env's samples, metrics and arguments are keyed by its id: a second entry was
    accepted silently."""
    with pytest.raises(ArenaError, match=r"^--env spiral/KuhnPoker-v0 is given twice; give each env once"):
        TrainConfig(env=["spiral/KuhnPoker-v0", "spiral/TicTacToe-v0", "spiral/KuhnPoker-v0"])


@pytest.mark.parametrize("kwargs, message", [
    ({"max_steps": 2}, r"unknown TrainConfig argument 'max_steps': that is TRL's name; arena's is 'steps'"),
    ({"learnig_rate": 1e-3}, r"unknown TrainConfig argument 'learnig_rate'; did you mean 'learning_rate'\?"),
])
def test_a_trl_or_misspelt_name_in_python_is_answered_as_the_flag_is(kwargs, message):
    """From Python, a bare TypeError ("unexpected keyword argument 'max_steps'")."""
    with pytest.raises(ArenaError, match=message):
        TrainConfig(**kwargs)


def test_paths_in_a_runs_config_are_absolute(tmp_path, monkeypatch):
    """config.yaml kept `corpus: corp.jsonl` as typed: a run resumed (or evaluated) from another
    folder read that folder's corp.jsonl, another corpus, without a word (a new user's review)."""
    from arena.config import check_env_ids

    monkeypatch.chdir(tmp_path)
    doc = "A paragraph long enough to be a document of the corpus, about rivers and their deltas. " * 4
    (tmp_path / "corp.jsonl").write_text(f'{{"text": "{doc}"}}\n')
    (tmp_path / "base").mkdir()
    config = TrainConfig(env=["spice/Corpus-v0", "azr/Deduction-v0"], model="base", opponent=None,
                         env_kwargs={"spice/Corpus-v0": {"corpus": "corp.jsonl", "n": 2},
                                     "azr/Deduction-v0": {"buffer_path": "buf", "sandbox": "process"}})
    check_env_ids(config)
    assert config.env_kwargs == {"spice/Corpus-v0": {"corpus": str(tmp_path / "corp.jsonl"), "n": 2},
                                 "azr/Deduction-v0": {"buffer_path": str(tmp_path / "buf"), "sandbox": "process"}}
    assert config.model == str(tmp_path / "base")
    assert TrainConfig(env=["spiral/KuhnPoker-v0"], opponent="random").opponent == "random"  # agents stay names
