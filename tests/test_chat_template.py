"""Chat templates in training. `--chat-template-kwargs` (TRL's `chat_template_kwargs`): the
template's own variables, such as Qwen3's `enable_thinking`, reach every prompt the model is
asked, in training, in the run's episodes, and wherever the run's model plays again (`arena
eval RUN`, `hf:RUN`). `--chat-template chatml|FILE`: a base model without a template trains,
and its run's model keeps the template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from arena.agents.hf import HFPolicy, check_chat_template_kwargs, load_model, make_hf_agent
from arena.envs.spiral.kuhn_poker import info_state_request
from thinking_template import THINK_TEMPLATE

from arena.errors import ArenaError
from arena.flags import parse_args
from arena.policy import Request

NO_THINKING = {"enable_thinking": False}


@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory) -> Path:
    """The tiny model saved with a template that takes `enable_thinking`."""
    model, tokenizer = load_model("tiny", device="cpu")
    tokenizer.chat_template = THINK_TEMPLATE
    folder = tmp_path_factory.mktemp("thinking") / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def kuhn_request() -> Request:
    return info_state_request("K")  # the first mover holding the king


def think_ids(tokenizer) -> list[int]:
    return list(tokenizer("<think>\n\n</think>\n\n", add_special_tokens=False).input_ids)


def test_the_policy_prompts_with_the_templates_arguments(thinking_model):
    model, tokenizer = load_model(str(thinking_model), device="cpu")
    request = kuhn_request()
    plain = HFPolicy(model, tokenizer, constrain=True).encode(request)
    switched = HFPolicy(model, tokenizer, constrain=True, chat_template_kwargs=NO_THINKING).encode(request)
    assert switched[:len(plain)] == plain and switched[len(plain):] == think_ids(tokenizer)


@pytest.mark.parametrize("bad, named", [({"tokenize": False}, "'tokenize' is apply_chat_template's own argument"),
                                        ({"add_generation_prompt": False}, "'add_generation_prompt'")])
def test_what_the_template_cannot_take_is_one_line(bad, named):
    with pytest.raises(ArenaError, match=named) as err:
        parse_args(["--chat-template-kwargs", json.dumps(bad)])
    assert "\n" not in str(err.value) and "enable_thinking" in str(err.value)


@pytest.mark.parametrize("bad", ["{enable_thinking: false}", "[1]"])
def test_a_flag_that_is_no_json_object_says_how_to_write_one(bad):
    with pytest.raises(ArenaError, match="is not a JSON object .*single quotes"):
        parse_args(["--chat-template-kwargs", bad])
    with pytest.raises(ArenaError, match="takes a JSON object"):  # the policy, built in code
        check_chat_template_kwargs([1], "chat_template_kwargs")


def test_a_run_trains_evaluates_and_plays_again_with_them(thinking_model, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "arena.cli", "train", "--model", str(thinking_model), "--constrain",
         "--chat-template-kwargs", json.dumps(NO_THINKING), "--steps", "1", "--episodes-per-step", "4",
         "--eval-every", "0", "--save-every", "1", "--out", str(run)],
        check=False, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    _, tokenizer = load_model(str(thinking_model), device="cpu")
    tail = think_ids(tokenizer)
    turns = [t for line in (run / "episodes.jsonl").read_text().splitlines() for t in json.loads(line)["turns"]]
    assert turns and all(t["prompt_ids"][-len(tail):] == tail for t in turns)
    # the run's model plays again as it trained: `hf:RUN` and `arena eval RUN` build their policy so
    again = make_hf_agent(f"hf:{run}")
    assert again.chat_template_kwargs == NO_THINKING and again.encode(kuhn_request())[-len(tail):] == tail


def test_kuhn_exploitability_reads_the_policys_own_prompts(thinking_model):
    """The exact table is computed on the prompts the policy samples from: the template's
    arguments change the (untrained) model's probabilities, and the table follows them."""
    from arena.evaluate import kuhn_exploitability

    model, tokenizer = load_model(str(thinking_model), device="cpu")
    plain = kuhn_exploitability(HFPolicy(model, tokenizer, constrain=True))[1]
    switched = kuhn_exploitability(HFPolicy(model, tokenizer, constrain=True, chat_template_kwargs=NO_THINKING))[1]
    assert plain != switched


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    """The tiny model saved without a chat template, as a base model comes."""
    model, tokenizer = load_model("tiny", device="cpu")
    base = tmp_path_factory.mktemp("base") / "model"
    model.save_pretrained(base)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    return base


def arena_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "arena.cli", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdin=subprocess.DEVNULL)


def test_a_base_model_without_a_template_trains_with_one_given(tmp_path, base_model):
    base = base_model
    _, tokenizer = load_model(str(base), device="cpu", chat_template="chatml")
    template = tmp_path / "plain.jinja"
    template.write_text(THINK_TEMPLATE.replace("assistant", "player"))
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "arena.cli", "train", "--model", str(base), "--constrain", "--chat-template",
         str(template), "--steps", "1", "--episodes-per-step", "4", "--eval-every", "0", "--save-every", "1",
         "--out", str(run)],
        check=False, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (base / "chat_template.jinja").exists()  # the base model's folder is left as it was
    for saved in (run / "model", run / "checkpoints" / "checkpoint-1"):  # what plays the run's model again
        assert load_model(str(saved), device="cpu")[1].chat_template == template.read_text()
    header = tokenizer("<|im_start|>player\n", add_special_tokens=False).input_ids
    turn = json.loads((run / "episodes.jsonl").read_text().splitlines()[0])["turns"][0]
    assert turn["prompt_ids"][-len(header):] == header


def test_eval_takes_a_template_and_its_arguments(tmp_path, base_model, thinking_model):
    result = arena_cmd("eval", base_model, "--env", "spiral/KuhnPoker-v0", "-n", "2", "--constrain")
    assert result.returncode == 2 and "arena eval" not in result.stdout
    assert "no chat template" in result.stderr and "--chat-template chatml" in result.stderr
    out = tmp_path / "eval.json"
    result = arena_cmd("eval", base_model, "--env", "spiral/KuhnPoker-v0", "-n", "2", "--constrain",
                       "--chat-template", "chatml", "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["chat_template"] == "chatml"
    result = arena_cmd("eval", thinking_model, "--env", "spiral/KuhnPoker-v0", "-n", "2", "--constrain",
                       "--chat-template-kwargs", json.dumps(NO_THINKING), "--json", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.with_name("eval-2.json").read_text())["chat_template_kwargs"] == NO_THINKING  # the first kept
    for bad, says in (("{enable_thinking: false}", "is not a JSON object"), ('{"tokenize": false}', "'tokenize'")):
        result = arena_cmd("eval", thinking_model, "--env", "spiral/KuhnPoker-v0", "--chat-template-kwargs", bad)
        line, = result.stderr.strip().splitlines()
        assert result.returncode == 2 and says in line


def test_a_template_file_travels_to_rays_actors_as_text(tmp_path):
    """A cluster's node has no copy of the driver's file: the actors get the template itself,
    which `--chat-template` (and a YAML config) takes as well."""
    from arena.agents.loading import read_chat_template

    from arena.config import TrainConfig
    from arena.ray_rollout import RayRollout

    template = tmp_path / "t.jinja"
    template.write_text(THINK_TEMPLATE)
    rollout = RayRollout.__new__(RayRollout)  # no cluster needed to build what is sent
    rollout.config = TrainConfig(chat_template=str(template))
    sent = rollout._actor_config()
    assert sent["chat_template"] == THINK_TEMPLATE and read_chat_template(sent["chat_template"]) == THINK_TEMPLATE
    assert TrainConfig(**sent).chat_template == THINK_TEMPLATE  # as the actor rebuilds it, the file gone
    rollout.config = TrainConfig(chat_template="chatml")
    assert rollout._actor_config()["chat_template"] == read_chat_template("chatml")


def test_a_model_agents_spec_switches_thinking_off(thinking_model, tmp_path):
    """`hf:PATH:enable_thinking=no` (and `vllm:`, `openai:`): the template's switch as an agent
    option, merged over a run's own chat template arguments."""
    from arena.agents.loading import agent_kwargs, decoding_options

    from arena.config import TrainConfig, save_config

    _, tokenizer = load_model(str(thinking_model), device="cpu")
    agent = make_hf_agent(f"hf:{thinking_model}:enable_thinking=no")
    assert agent.chat_template_kwargs == NO_THINKING and agent.encode(kuhn_request())[-len(think_ids(tokenizer)):] == think_ids(tokenizer)
    assert decoding_options("hf:x:enable_thinking=yes", "hf")[1] == {"chat_template_kwargs": {"enable_thinking": True}}
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    save_config(TrainConfig(out=str(run), chat_template_kwargs={"lang": "fr"}), run / "config.yaml")
    _, options = decoding_options(f"hf:{run}:enable_thinking=no", "hf")
    assert agent_kwargs(str(run), options)["chat_template_kwargs"] == {"lang": "fr", "enable_thinking": False}
    assert agent_kwargs(str(run), {})["chat_template_kwargs"] == {"lang": "fr"}
