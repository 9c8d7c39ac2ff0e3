"""SPICE env: answer equivalence, task parsing, rewards by hand, corpus, scripted episodes."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
from arena.agents import HeuristicAgent
from arena.envs.spice import challenger_reward, equivalent, letter, load_corpus, parse_task

import arena
from arena.policy import Completion
from arena.replay import verify
from arena.rollout import play

OPTIONS = ["red", "green", "blue", "yellow"]


@pytest.mark.parametrize("text", ["B", "b", "(B)", "B.", "B)", "Option B", "option (b)", "The answer is B",
                                  "answer: b", "\\boxed{B}", "**B**", "B) green", "green", "$B$"])
def test_letters_in_many_spellings(text):
    assert letter(text, OPTIONS) == "B"
    assert equivalent(text, "B", OPTIONS)


def test_wrong_letters_and_non_letters():
    assert not equivalent("C", "B", OPTIONS) and not equivalent("Bob", "B", OPTIONS) and letter("E") is None


@pytest.mark.parametrize("answer, gold", [("1/2", "0.5"), ("5e-1", "1/2"), ("0.50", "\\frac{1}{2}"), ("50%", "0.5"),
                                          ("1,000", "1000"), ("-3", "-3.0"), ("50\\%", "0.5"), ("50\\%", "50%"), ("x^2 + 2x + 1", "(x+1)^2"),
                                          ("2*x", "x + x"), ("The Eiffel Tower.", "eiffel tower"), ("  Paris ", "paris"),
                                          # a gold of articles or punctuation alone is compared as written
                                          ("A", "A"), ("an", "an"), ("The", "the"), ("!", "!"), ("C#", "c#")])
def test_equivalent_forms(answer, gold):
    assert equivalent(answer, gold)


@pytest.mark.parametrize("answer, gold", [("1/3", "0.33"), ("x^2", "x^3"), ("London", "Paris"), ("", "1"), ("4", "5"),
                                          ("C", "C#"), ("F#", "F"), ("x", "!"), ("the", "a"), ("50\\%", "50"), ("50%", "50"),
                                          ("\\boxed{2}, \\boxed{3}", "2"), ("\\boxed{3} or \\boxed{2}", "2")])
def test_not_equivalent(answer, gold):
    assert not equivalent(answer, gold)


@pytest.mark.parametrize("answer, golds", [
    ("1/2x", ("x/2", "1/(2x)")), ("2^3^2", ("512", "64")), ("x/2y", ("x*y/2", "x/(2*y)")),
])
def test_an_ambiguous_expression_matches_no_reading(answer, golds):
    """math-verify and SymPy read precedence differently; "either says equal" paid one
    ambiguous answer against both golds (a hedge a reward-hacking review found)."""
    assert not any(equivalent(answer, gold) for gold in golds)


@pytest.mark.parametrize("answer, gold", [
    ("60 seconds", "60 minutes"), ("3 apples", "3 seconds"), ("FTU-8", "UTF-8"),
    ("tin(3)", "int(3)"), ("\\neq 5", "5"), ("> 5", "5"), ("\\approx 5", "5"), ("x = 6 = 5", "5"), ("5 = 6", "6"),
    ("192.0.2.1", "96.0.4.1"), ("192.0.2.1", "192.0.2.10"),
])
def test_what_math_verify_reads_past_is_not_equal(answer, gold):
    """Units and names dropped, relations read as their value, dotted numbers as products:
    each was paid 1.0 through the env."""
    assert not equivalent(answer, gold)


@pytest.mark.parametrize("answer, gold, options", [
    ("\\text{A}", "A", OPTIONS), ("\\boxed{\\text{A}}", "A", OPTIONS), ("Ａ", "A", OPTIONS), ("A\u200b", "A", OPTIONS),
    ("\\text{Paris}", "Paris", None), ("Ｐａｒｉｓ", "Paris", None), ("x = 5", "5", None), ("60 minutes", "60 minutes", None),
])
def test_wrapped_full_width_and_named_answers_are_read(answer, gold, options):
    assert equivalent(answer, gold, options)


def test_challenger_reward_by_hand():
    assert challenger_reward(0.5) == 1.0
    assert challenger_reward(0.0) == pytest.approx(math.exp(-0.0625 / 0.02)) == challenger_reward(1.0)
    assert challenger_reward(0.25) == pytest.approx(math.exp(-((0.1875 - 0.25) ** 2) / 0.02))


def test_task_parsing():
    mcq = "<answer>```question\nWhich?\n```\n```options\nA) a\nB) b\nC) c\nD) d\n```\n```answer\nC\n```</answer>"
    assert parse_task(mcq) == ("Which?", ["a", "b", "c", "d"], "C")
    assert parse_task("<answer>```question\nHow many?\n```\n```answer\n42\n```</answer>") == ("How many?", None, "42")
    assert "four lines" in parse_task(mcq.replace("D) d\n", ""))
    assert "A-D" in parse_task(mcq.replace("answer\nC", "answer\nE"))
    # options that read the same: a reasoner answering `through` was marked by the first of them
    assert "must differ" in parse_task(mcq.replace("B) b", "B) Through").replace("C) c", "C) through"))
    assert "no <answer>" in parse_task("Which? C")


class Scripted:
    name = "scripted"

    def __init__(self, texts):
        self.texts = {k: list(v) for k, v in texts.items()}

    def act(self, requests):
        return [Completion(text=self.texts[r.role].pop(0)) for r in requests]


def test_episode_rewards_per_attempt():
    texts = {"challenger": ["<answer>```question\nHalf of one?\n```\n```answer\n1/2\n```</answer>"],
             "reasoner": ["<answer>0.5</answer>", "<answer>5e-1</answer>", "<answer>2</answer>", "no tags"],
             "verifier": ["<answer>correct</answer>"]}
    [ep] = play("spice/Corpus-v0", [Scripted(texts)], 1, seed=0, env_kwargs={"n": 4})
    assert [t.reward for t in ep.turns[1:5]] == [1.0, 1.0, 0.0, 0.0]
    assert ep.turns[0].reward == 1.0 and ep.outcome["pass_rate"] == 0.5 and ep.rewards["reasoner"] == 0.5
    assert ep.turns[-1].reward == (1.0 if ep.outcome["verifier_agrees"] else 0.0)
    assert verify(ep) == []


def test_invalid_task_small_negative_reward():
    env = arena.make("spice/Corpus-v0")
    env.reset(seed=0)
    env.step("I have no question")
    assert env.done and env.rewards["challenger"] == -0.1 and env.outcome["reason"] == "invalid_task"


def test_default_corpus_is_bundled_and_custom_corpora_load(tmp_path):
    docs = load_corpus(None)
    assert len(docs) > 50 and all(200 <= len(d) for d in docs)
    (tmp_path / "a.txt").write_text(("word " * 60 + "\n\n") * 3)
    (tmp_path / "b.jsonl").write_text('{"text": "' + "x " * 150 + '"}\n')
    assert len(load_corpus(str(tmp_path))) == 2
    with pytest.raises(arena.ArenaError, match="does not exist"):
        load_corpus(str(tmp_path / "missing"))


def test_no_text_of_a_corpus_is_dropped(tmp_path):
    """Paragraphs split at single newlines or CRLF, and one long line, were one document of
    their first 1,500 characters (a new user's review); `A.TXT` was not read at all."""
    sentence = "The river delta spreads its silt over the plain, year after year. "
    paragraphs = [sentence * 4 for _ in range(20)]
    cases = {"single.txt": "\n".join(paragraphs), "crlf.txt": "\r\n\r\n".join(paragraphs),
             "line.txt": sentence * 2000, "spaced.md": "\n  \n".join(paragraphs)}
    for name, text in cases.items():
        (tmp_path / name).write_bytes(text.encode())
        docs = load_corpus(str(tmp_path / name))
        assert len(docs) > 1 and all(200 <= len(d) <= 1500 for d in docs), name
        assert sum(len(d.split()) for d in docs) == len(text.split()), name  # every word kept
        assert all(d.endswith(".") for d in docs[:-1]), name  # cut at sentence ends
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "A.TXT").write_text(paragraphs[0])
    assert load_corpus(str(tmp_path / "folder")) == (paragraphs[0].strip(),)


@pytest.mark.parametrize("line, why", [
    ('{"text": null}', 'no "text" string in the object (text null)'),
    ('{"text": 123}', 'no "text" string in the object (text 123)'),
    ('{"content": "words"}', "no \"text\" string in the object (keys 'content')"),
])
def test_a_jsonl_record_without_text_is_one_line(tmp_path, line, why):
    """`{"text": null}` was the document "None"; `{"content": ...}` no document, and the error
    blamed paragraph lengths."""
    (tmp_path / "docs.jsonl").write_text(line + "\n")
    with pytest.raises(arena.ArenaError, match=re.escape(f"docs.jsonl:1: {why}")):
        load_corpus(str(tmp_path / "docs.jsonl"))


def test_a_corpus_of_no_document_says_what_it_read(tmp_path):
    (tmp_path / "notes.rst").write_text("words " * 100)
    with pytest.raises(arena.ArenaError, match=r"holds no document \(no .txt, .md or .jsonl file \(any case\) under it\)"):
        load_corpus(str(tmp_path))
    (tmp_path / "short.txt").write_text("a short note")
    with pytest.raises(arena.ArenaError, match=r"\(1 file read, no text paragraph of 200\+ characters nor JSONL"):
        load_corpus(str(tmp_path))


def test_scripted_agents_play_and_replay():
    episodes = play("spice/Corpus-v0", [HeuristicAgent(seed=0)], 6, seed=0, env_kwargs={"n": 3})
    assert all(ep.outcome["reason"] == "verified" and ep.outcome["pass_rate"] == 1.0 for ep in episodes)
    assert all(ep.outcome["verifier_agrees"] for ep in episodes)
    assert len({ep.outcome["document"] for ep in episodes}) > 1
    assert all(verify(ep) == [] for ep in episodes)
    # what training reads of each turn is checked too, not only the roles' totals
    tampered = episodes[0]
    attempt = next(t for t in tampered.turns if t.role == "reasoner")
    attempt.reward = 1.0 - attempt.reward
    attempt.info["infra"] = True
    assert {(m.turn, m.field) for m in verify(tampered)} == {(attempt.index, "turn reward"), (attempt.index, "infra")}


@pytest.mark.parametrize("name, data, why", [
    ("bin.py", b"\xff\xfe" + bytes(range(256)) * 4, "is not UTF-8 text (byte 0)"),
    ("docs.jsonl", b'{"text": "caf\xe9"}\n', "is not UTF-8 text (byte 13)"),
    ("notes.txt", b"words " * 60 + b"\0" + b"words " * 60, "holds NUL bytes"),
])
def test_a_corpus_that_is_not_text_is_one_line(tmp_path, name, data, why):
    """Random bytes were read as documents of replacement characters; a JSONL file not in
    UTF-8 was a UnicodeDecodeError traceback."""

    import arena
    from arena.errors import ArenaError

    (tmp_path / name).write_bytes(data)
    with pytest.raises(ArenaError, match=f"corpus file .*{name} {re.escape(why)}"):
        arena.make("spice/Corpus-v0", corpus=str(tmp_path / name))


def test_a_relative_corpus_path_replays_from_any_folder(tmp_path, monkeypatch):
    """Episodes record a local corpus by its absolute path: played with `corpus=docs.jsonl`
    in one folder, they once failed to replay from another ("corpus does not exist")."""
    import json

    here = tmp_path / "corp"
    here.mkdir()
    (here / "docs.jsonl").write_text("".join(json.dumps({"text": f"Document {i}: " + "word " * 60}) + "\n"
                                             for i in range(3)))
    monkeypatch.chdir(here)
    episodes = play("spice/Corpus-v0", [HeuristicAgent(seed=0)], 2, seed=0, env_kwargs={"n": 2, "corpus": "docs.jsonl"})
    assert {ep.env_kwargs["corpus"] for ep in episodes} == {str(here / "docs.jsonl")}
    monkeypatch.chdir(tmp_path)
    assert all(verify(ep) == [] for ep in episodes)


# -- math-verify and the SymPy fallback ----------------------------------------------------------------

EXPRESSIONS = [("x^2 + 2x + 1", "(x+1)^2"), ("2*x", "x + x"), ("\\frac{x}{2}", "x/2")]


@pytest.mark.parametrize("answer, gold", EXPRESSIONS[:2])
def test_expressions_without_math_verify_fall_back_to_sympy(monkeypatch, answer, gold):
    from arena.envs.spice import checker, expression

    monkeypatch.setattr(checker, "_math_verify", lambda a, b: None)  # as when it is not installed
    assert expression.equal(answer, gold) is True and checker.expressions_equal(answer, gold) is True
    assert equivalent(answer, gold) and not equivalent(answer, "x^3")


@pytest.mark.parametrize("template", [
    "open('{path}','w').write('x')",  # a builtin SymPy's parse_expr hands to eval
    "exec(chr(111)+chr(112)+chr(101)+chr(110)+chr(40)+chr(39)+'{path}'+chr(39)+chr(44)+chr(39)+chr(119)+chr(39)+chr(41))",
    "x.real + open('{path}', 'w').name",
])
def test_model_written_expressions_are_never_executed(tmp_path, template):
    """Both sides of the check are model-written: an "answer" that is Python code must not
    run on the host (SymPy's parse_expr evals its input with the builtins in reach)."""
    from arena.envs.spice import answers, expression

    path = tmp_path / "owned"
    text = template.format(path=path)
    with pytest.raises(expression.Unparsable):
        expression.parse(text)
    assert expression.equal(text, "x+1") is None and answers._expression_equal(text, "x+1") is not True
    assert not equivalent(text, "x+1") and not equivalent("x+1", text)
    assert not path.exists()


def test_a_check_past_its_limit_is_killed_and_the_next_one_runs():
    """SymPy builds `exp(999999999*log(3))` as the integer 3**999999999, in C, where no
    signal interrupts it: the check runs in a child process, killed past its limit."""
    from arena.envs.spice.checker import Checker

    checker = Checker()
    try:
        assert checker.equal("x+x", "2x") is True
        assert checker.equal("exp(999999999*log(3))x", "x", timeout=1.0) is None and checker.killed == 1
        assert checker.equal("x^2-1", "(x-1)(x+1)") is True  # a fresh child
        # the next hostile check gets its own 1 s, not that plus the fresh child's imports (20 s
        # more once); the same answer again is answered from the process's verdicts
        assert checker.equal("exp(999999998*log(3))x", "x", timeout=1.0) is None and checker.killed == 2
        assert checker.equal("exp(999999998*log(3))x", "x", timeout=1.0) is None and checker.killed == 2
        assert checker.equal("x" * 3000, "x") is None and checker.killed == 2  # too long to be an expression
    finally:
        checker.close()


def test_a_checker_child_that_prints_before_it_is_ready_still_checks(monkeypatch):
    """A line an import prints on stdout before "ready" (a library's version warning) made
    every check None, each in a child started and killed for it."""
    import subprocess
    import sys

    from arena.envs.spice.checker import Checker

    def noisy(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-c", "print('a warning'); from arena.envs.spice.checker import _serve; _serve(2048)"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._ready, self._pending = False, b""

    monkeypatch.setattr(Checker, "_spawn", noisy)
    checker = Checker()
    try:
        assert [checker.equal("x+x", "2x"), checker.equal("x", "x+1"), checker.equal("x^2-1", "(x-1)(x+1)")] == [
            True, False, True]
        assert checker.killed == 0
    finally:
        checker.close()


@pytest.mark.parametrize("answer, gold", [("x+1", "x-1"), ("-x", "x"), ("x/2", "x^2"), ("(x+1)/2", "x+1/2"),
                                          ("2x-3", "2x+3"), ("1,5", "15"), ("1e100000000", "1")])
def test_answers_that_differ_only_in_operators_or_punctuation_are_not_equal(answer, gold):
    """The normalised-string comparison dropped punctuation, operators included: `x+1` was
    judged equal to `x-1`, and `1,5` read as 15 (a reward for a wrong answer)."""
    assert not equivalent(answer, gold) and not equivalent(gold, answer)


def test_a_number_with_a_huge_exponent_is_no_number():
    from arena.envs.spice.answers import number

    assert number("1e100000000") is None and number("1e300") == 10**300  # Fraction would build 10**100000000
    assert number("1,000") == 1000 and number("1,5") is None and number("12,345.5") == Fraction("12345.5")


@pytest.mark.parametrize("text", ["9^9^9^9", "((2^64)^64)^64", "x^1000", "2^65", "(x+1)^13", "1234567890123456789 x"])
def test_expressions_beyond_the_bounds_are_refused_before_any_work(text):
    from arena.envs.spice import expression

    with pytest.raises(expression.Unparsable):
        expression.parse(text)


def test_expression_grammar():
    import sympy
    from arena.envs.spice.expression import parse

    x, y = sympy.symbols("x y")
    assert parse("2x^2 - 3x + 1") == 2 * x**2 - 3 * x + 1
    assert parse("(x+1)(x-1)") == (x + 1) * (x - 1) and parse("xy") == x * y and parse("2^3^2") == 512
    assert parse("-x**2") == -(x**2) and parse("x/2y") == x / 2 * y  # left to right, as Python
    assert parse("sqrt(2)/2") == sympy.sqrt(2) / 2 and parse("2 pi") == 2 * sympy.pi and parse("ln(E)") == 1
    assert parse("3 × 4 − 2") == 10 and parse("x^(1/2)") == sympy.sqrt(x) and parse("2^y") == 2**y


def test_expression_check_gives_up_past_its_time_limit_and_off_the_main_thread(monkeypatch):
    import threading

    from arena.envs.spice import expression

    assert expression.equal("x^2+2x+1", "(x+1)^2") is True
    monkeypatch.setattr(expression, "SIMPLIFY_S", 1e-4)
    assert expression.equal("(a+b+c+d+e+f)^12", "(a+b+c+d+e+f)^6 (a+b+c+d+e+f)^6 + x") is None
    monkeypatch.undo()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(expression.equal("x+x", "2x")))
    thread.start()
    thread.join()
    assert seen == [None]  # SIGALRM cannot limit it there: undecided, not unbounded


def test_math_verify_is_installed_and_used(monkeypatch):
    pytest.importorskip("math_verify")
    from arena.envs.spice import checker, expression

    assert checker._math_verify("\\frac{x}{2}", "x/2") is True and checker._math_verify("x^2", "x^3") is False
    monkeypatch.setattr(expression, "equal", lambda a, b: None)  # math-verify alone decides
    for answer, gold in EXPRESSIONS:
        assert checker.expressions_equal(answer, gold)
    assert checker.expressions_equal("x^2", "x^3") is False
