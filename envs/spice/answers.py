"""Answer equivalence for SPICE: MCQ letters in any common spelling, numbers in any form,
expressions (math-verify, and SymPy on plain text parsed without `eval`), normalised strings."""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from arena.envs.absolute_zero.tasks import TEXT_WRAPPER

LETTERS = "ABCD"
_LETTER_FORMS = [
    re.compile(r"^\(?([A-Da-d])\)?[.):]?$"),
    # possessive: "answer" + 30,000 spaces + "!" took 8.9 s an attempt
    re.compile(r"^(?:the\s++)?(?:correct\s++)?(?:answer|option|choice)(?:\s++is)?+\s*+[:\-]?\s*+\(?([A-Da-d])\)?[.)]?$",
               re.IGNORECASE),
    re.compile(r"^\(?([A-D])\)?[.):]\s+\S.*$"),  # "B) the option's text"
]


#: Characters that change nothing a reader sees: zero-width spaces and joiners, the BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def _strip_markup(text: str) -> str:
    """The answer without its wrapping: NFKC (full-width `Ａ` is `A`), no invisible
    characters, `\\boxed{}`, `$...$`, `\\text{}`-style wrappers, `*`, backticks."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).strip()
    text = TEXT_WRAPPER.sub(r"\1", text)
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", text, re.DOTALL)
    if boxed:
        text = boxed.group(1)
    text = re.sub(r"^\$+|\$+$", "", text.strip())
    return text.strip().strip("*`_ ").strip()


def letter(text: str, options: list[str] | None = None) -> str | None:
    """The MCQ letter `text` names (`B`, `b`, `(B)`, `B.`, `B)`, `Option B`, `The answer is
    (b)`, `\\boxed{B}`, `**B**`, `B) option text`), or the letter of the option whose text
    it is; None otherwise."""
    t = _strip_markup(text)
    for form in _LETTER_FORMS:
        m = form.match(t)
        if m:
            return m.group(1).upper()
    if options:
        norm = normalise(t)
        for i, opt in enumerate(options):
            if norm and norm == normalise(opt):
                return LETTERS[i]
    return None


def number(text: str) -> Fraction | None:
    """`text` as an exact number: `1/2`, `0.5`, `5e-1`, `1,000`, `50%`, `-3`; None otherwise.
    Commas only as thousands separators (`1,5` is no number: 15 or 1.5?); an exponent of at
    most three digits (`Fraction("1e100000000")` computes 10**100000000)."""
    t = _strip_markup(text).replace(" ", "").replace("\\%", "%")  # LaTeX's `50\\%` is 50%, as `50%`
    if "," in t:
        if not re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?%?", t):
            return None
        t = t.replace(",", "")
    if re.search(r"[eE][-+]?[\d_]{4,}", t):  # `1e99_999_999`: Fraction reads digit separators
        return None
    percent = t.endswith("%")
    t = t.rstrip("%")
    frac = re.fullmatch(r"\\d?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", t)
    if frac:
        t = f"{frac.group(1)}/{frac.group(2)}"
    try:
        value = Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


#: Punctuation that says nothing about an answer (sentence marks, quotes, brackets); the
#: rest of `string.punctuation` (`#`, `%`, `&`, `@`, `$`, ...) names things: `C#` is not `C`.
_SENTENCE_PUNCTUATION = str.maketrans("", "", "!\"'(),-.:;?[]_`{}")


def normalise(text: str) -> str:
    """Lower case, no sentence punctuation, no articles, single spaces."""
    t = _strip_markup(text).lower().translate(_SENTENCE_PUNCTUATION)
    return " ".join(w for w in t.split() if w not in ("a", "an", "the"))


def _expression_equal(a: str, b: str) -> bool | None:
    """math-verify (LaTeX and plain), then SymPy on plain text (`expression`, no `eval`),
    in a child process with a hard time and memory limit (`checker`: both strings are
    model-written); None when neither decides or the check ran past its limit."""
    from arena.envs.spice.checker import checker

    return checker().equal(a, b)


#: Operators and digits: a text holding one is compared as written (spaces aside), never
#: with its punctuation stripped (`normalise` drops it: `x+1` would equal `x-1`, `1,5` 15).
_OPERATORS = re.compile(r"[\d+\-*/^=()\\<>]")


def _compact(text: str) -> str:
    """Lower case, no spaces, no final full stop: `X + 1.` -> `x+1`."""
    return re.sub(r"\s+", "", _strip_markup(text).lower()).rstrip(".")


#: Words an expression may hold that are not units or names (`\\sin` is read without its backslash).
_MATH_WORDS = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "log", "ln", "lg",
    "exp", "sqrt", "pi", "inf", "infty", "infinity", "frac", "dfrac", "cdot", "times", "div", "pm", "mp", "deg",
    "lim", "max", "min", "gcd", "lcm", "mod", "det",
})
#: Relations other than `=`: `\\neq 5`, `> 5` or `\\approx 5` read as 5 to math-verify.
_RELATIONS = re.compile(r"\\(?:neq|ne|leq|le|geq|ge|lt|gt|approx|sim|equiv)\b|[<>≠≤≥≈]|!=")


def _words(text: str) -> set[str]:
    """The words of `text` that are not mathematics (units, names): lower case, two letters
    or more, LaTeX commands and function names aside."""
    words = re.findall(r"(?<![\\A-Za-z])[A-Za-z]{2,}", _strip_markup(text))
    return {w.lower() for w in words} - _MATH_WORDS


def _not_the_same_expression(answer: str, gold: str) -> bool:
    """What the expression check would wrongly call equal: different words on both sides
    (units: `60 seconds` for `60 minutes`; names: `FTU-8` for `UTF-8`, math-verify reading
    letters as commuting symbols), a relation on one side only (`\\neq 5` for `5`), more
    equals signs than the gold has (`x = 6 = 5` for 5) or a number before one (`5 = 6` for
    6), or a dotted number
    (`192.0.2.1` read as a product equalled `96.0.4.1`)."""
    wa, wg = _words(answer), _words(gold)
    if wa and wg and wa != wg:
        return True
    if sorted(_RELATIONS.findall(answer)) != sorted(_RELATIONS.findall(gold)):
        return True
    if answer.count("=") > max(gold.count("="), 1):
        return True
    if "=" in answer and "=" not in gold and not re.search(r"[A-Za-z]", answer.split("=")[0]):
        return True  # `5 = 6` is no `x = 6`: a claim, not a named value
    return bool(re.search(r"\d\.\d+\.\d", answer + " " + gold))


def equivalent(answer: str, gold: str, options: list[str] | None = None) -> bool:
    """Whether `answer` says the same as `gold`: by letter for MCQ (`options` given), else
    as numbers, then as expressions (unless `_not_the_same_expression`), then as
    normalised strings."""
    if options:
        got = letter(answer, options)
        return got is not None and got == letter(gold, options)
    if answer.count("\\boxed{") > 1:  # hedged over several boxed answers: none is the answer
        return False
    na, ng = number(answer), number(gold)
    if na is not None and ng is not None:
        return na == ng
    if _OPERATORS.search(gold) or _OPERATORS.search(answer) or not normalise(gold):
        # as written: operators and digits, and a gold that is all articles or punctuation
        # ("The", "!": normalised to nothing, it once matched no answer at all)
        if _compact(gold) and _compact(answer) == _compact(gold):
            return True
    elif normalise(answer) == normalise(gold):
        return True
    if re.search(r"[\d^*/+=()\\]", gold) and not _not_the_same_expression(answer, gold):
        same = _expression_equal(_strip_markup(answer), _strip_markup(gold))
        if same is not None:
            return same
    return False
