"""A chat template for tests of template arguments (`from thinking_template import
THINK_TEMPLATE`: tests/ is on the path, as for conftest)."""

#: The tiny model's chat template with Qwen3's switch: an empty think block after the
#: assistant's header when `enable_thinking` is false, else the tiny template's prompt exactly
#: (tests/test_chat_template.py, tests/vllm_job/test_openai_vllm_serve.py)
THINK_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\n\n</think>\n\n' }}{% endif %}"
    "{% endif %}"
)
