"""Special-token text inside a message, broken before the chat template reads it.

A message's text is an env's observation, which carries what other roles wrote: a
Deceiver's message, a SPICE question shown to the verifier, an AZR program shown to the
solver. A tokenizer reads the text of a special or added token (`<|im_end|>`,
`<|im_start|>system`) as that token wherever it stands, so a model could close its
opponent's user turn and open a system turn of its own in the opponent's prompt (a
red-team review: 7 role-marker tokens where an honest turn has 3). Each such text inside a
message gets a zero-width space after its first character: it then tokenises as the plain
text it is, and reads the same to a person. The stored observation is unchanged; only the
prompt the model sees differs, and only where a message held such text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: Put after the first character of a special token's text inside a message.
BREAK = "\u200b"

#: Role markers of the common chat templates, for a server whose tokenizer arena does not
#: hold (the `openai` agent): ChatML and Llama 3 `<|...|>`, DeepSeek's full-width `<｜...｜>`,
#: Gemma's turns and `<bos>`/`<eos>`, Llama 2 and Mistral's `[INST]` and `<<SYS>>`, `<s>`.
GENERIC = re.compile(r"<\|[^|\s<>]{1,64}\|>|<｜[^｜\s<>]{1,64}｜>|<(?:start|end)_of_turn>|<(?:bos|eos)>|</?s>"
                     r"|\[/?INST\]|<</?SYS>>")


def token_pattern(tokenizer: Any) -> re.Pattern[str] | None:
    """The texts `tokenizer` reads as one special token, longest first, as one pattern (None
    when it has none). Added tokens not marked special stay: Qwen3's and R1-Distill's
    `<think>` is one, named in the envs' own instructions, and some tokenizers add `"\n\n"`."""
    texts = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            texts.add(str(token.content))
    texts = {t for t in texts if len(t) > 1 and not t.isspace()}
    if not texts:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


def _break(match: re.Match[str]) -> str:
    text = match.group(0)
    return text[0] + BREAK + text[1:]


def neutralise(messages: Sequence[Any], pattern: re.Pattern[str] | None) -> list[Any]:
    """`messages` with every match of `pattern` in a string content broken (`BREAK`); the
    same message objects where nothing matched."""
    if pattern is None:
        return list(messages)
    out = []
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str) and pattern.search(content):
            m = {**m, "content": pattern.sub(_break, content)}
        out.append(m)
    return out
