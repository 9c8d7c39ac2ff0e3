"""Model text is hostile to the host's parsers too: inputs that made a parser backtrack for
seconds to hours on the training process (found by a red-team review) parse at once and
as before. Each runs in a child process with a liveness bound (a hang fails, it does not
stall the suite); the bound is a minute for work of milliseconds, not a timing."""

from __future__ import annotations

import subprocess
import sys

CASES = r'''
from arena import make
from arena.envs.absolute_zero.tasks import answer_text, fenced_blocks, parse_verdict
from arena.envs.spice import env as spice_env
from arena.envs.spice.answers import letter, number
from arena.protocol import last_boxed

liars = make("spiral/LiarsDice-v0")
print(repr([
    fenced_blocks("<answer>```" + " " * 20000 + "x</answer>")["python"],  # cubic: ~13 minutes at 500 tokens
    fenced_blocks("```" + "a" * 50000),
    fenced_blocks("```python\ndef f(a):\n    return a\n```\n```input\n1, 2\n```"),
    number("1e99_999_999"),  # Fraction reads digit separators: 10**99999999 on the host
    number("1_000"),
    letter("answer" + " " * 50000 + "!"),
    letter("The correct answer is (c)."),
    liars.parse_action("\\boxed{[bid" + " " * 50000 + "x]}")[:5],
    liars.parse_action("\\boxed{[bid 3 4]}"),
    last_boxed("\\boxed{" * 7000 + " " * 32000),
    last_boxed("\\boxed{a} \\boxed{b{c}} \\boxed{d"),
    spice_env._BLOCK.findall("```answer" + " " * 50000),
    answer_text("<answer>" * 20000 + "x"),  # the lazy block scanned to the end from each open tag
    answer_text("<think>a</think><answer>1</answer> <answer> 2 </answer><answer>"),
    parse_verdict("<answer>" + "\\boxed{" * 20000 + "</answer>"),
    parse_verdict("<answer>\\boxed{Incorrect}</answer>"),
]))
'''

EXPECTED = [[], {"python": [], "input": [], "output": [], "message": []},
            {"python": ["def f(a):\n    return a"], "input": ["1, 2"], "output": [], "message": []},
            None, 1000, None, "C", "[bid ", "[Bid: 3, 4]", None, "b{c}", [], None, "2", None, False]


def test_hostile_text_parses_at_once_and_as_before():
    from fractions import Fraction

    result = subprocess.run([sys.executable, "-c", CASES], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    got = eval(result.stdout, {"Fraction": Fraction})
    assert got == EXPECTED
