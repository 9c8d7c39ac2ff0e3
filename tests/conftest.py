"""Session fixtures shared by every test module.

`ARENA_CACHE` points at a temporary folder for the whole session (unless it is already
set), so the tiny model and anything else arena caches are built there and the user's
`~/.cache/arena` is never touched.
"""

from __future__ import annotations

import os

import pytest

#: the tiny model's chat template with Qwen3's switch: an empty think block after the
#: assistant's header when `enable_thinking` is false, else the tiny template's prompt exactly
#: (tests/test_chat_template.py, tests/vllm_job/test_openai_vllm_serve.py: `from conftest import`)
THINK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="session", autouse=True)
def arena_cache(tmp_path_factory):
    """A session-wide `ARENA_CACHE` (the tiny model is built once per session into it)."""
    if os.environ.get("ARENA_CACHE"):
        yield os.environ["ARENA_CACHE"]
        return
    path = str(tmp_path_factory.mktemp("arena-cache"))
    os.environ["ARENA_CACHE"] = path
    try:
        yield path
    finally:
        os.environ.pop("ARENA_CACHE", None)
