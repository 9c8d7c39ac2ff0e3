"""Answer equivalence for SPICE: MCQ letters in any common spelling, numbers in any form,
expressions (math-verify, and SymPy on plain text parsed without `eval`), normalised strings."""

from __future__ import annotations

import re
import string
from fractions import Fraction

from arena.envs.spice import expression

LETTERS = "ABCD"
_LETTER_FORMS = [
    re.compile(r"^\(?([A-Da-d])\)?[.):]?$"),
    re.compile(r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*\(?([A-Da-d])\)?[.)]?$", re.IGNORECASE),
    re.compile(r"^\(?([A-D])\)?[.):]\s+\S.*$"),  # "B) the option's text"
]


def _strip_markup(text: str) -> str:
    text = text.strip()
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
    """`text` as an exact number: `1/2`, `0.5`, `5e-1`, `1,000`, `50%`, `-3`; None otherwise."""
    t = _strip_markup(text).replace(",", "").replace(" ", "")
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


def normalise(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    t = _strip_markup(text).lower()
    t = t.translate(str.maketrans("", "", string.punctuation))
    return " ".join(w for w in t.split() if w not in ("a", "an", "the"))


def _expression_equal(a: str, b: str) -> bool | None:
    """math-verify (LaTeX and plain), then SymPy (plain text, `expression`); None when neither decides."""
    verdicts = [_math_verify(a, b), _sympy_equal(a, b)]
    if True in verdicts:
        return True
    return False if False in verdicts else None


def _math_verify(a: str, b: str) -> bool | None:
    try:
        from math_verify import parse, verify

        pa, pb = parse(f"${a}$"), parse(f"${b}$")
        return bool(verify(pb, pa)) if pa and pb else None
    except Exception:  # noqa: BLE001 - not installed, or unparsable
        return None


def _sympy_equal(a: str, b: str) -> bool | None:
    """SymPy's verdict on plain-text expressions, parsed without `eval` and within bounds
    (`arena.envs.spice.expression`: both strings are model-written); None when either has
    no letter (numbers are `number`'s) or is outside that grammar."""
    if not re.search(r"[a-zA-Z]", a + b):
        return None
    return expression.equal(a, b)


def equivalent(answer: str, gold: str, options: list[str] | None = None) -> bool:
    """Whether `answer` says the same as `gold`: by letter for MCQ (`options` given), else
    as numbers, then as expressions, then as normalised strings."""
    if options:
        got = letter(answer, options)
        return got is not None and got == letter(gold, options)
    na, ng = number(answer), number(gold)
    if na is not None and ng is not None:
        return na == ng
    if normalise(answer) == normalise(gold) and normalise(gold):
        return True
    if re.search(r"[\d^*/+=()\\]", gold):
        same = _expression_equal(_strip_markup(answer), _strip_markup(gold))
        if same is not None:
            return same
    return False
