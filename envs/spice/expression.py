"""Plain-text math expressions (`x^2 + 2x + 1`, `sqrt(2)/2`, `(x+1)(x-1)`) to SymPy,
without `eval`: SPICE's fallback answer check when math-verify does not decide.

Both sides of the check are model-written (the challenger's gold, the reasoner's answer),
so they are hostile text. SymPy's `parse_expr` (and `sympify` of a string) runs Python's
`eval` on it, with the builtins in reach: `open('/tmp/x','w')` or
`exec(chr(95)+chr(95)+...)` written as an "answer" would run on the training host. This
module parses a small grammar itself (numbers, single-letter symbols, `pi`, `E`, a few
functions, `+ - * / ^ **`, parentheses, implicit multiplication) and builds SymPy objects
directly, so no model text is ever executed. It also bounds the work: a number has at most
`MAX_DIGITS` digits, a power's exponent is a number of at most `MAX_EXPONENT`, an integer
power at most `MAX_BITS` bits and a polynomial degree at most `MAX_DEGREE` (`9^9^9^9`
would otherwise keep the host busy for hours); `equal` simplifies under a wall-clock limit
where a signal can deliver it (the main thread) and declines to decide elsewhere. SymPy
still does some big-integer arithmetic in C that no signal interrupts (`exp(n*log(3))`
becomes 3**n as it is built), so SPICE runs `equal` in a child process with a hard limit
(`arena.envs.spice.checker`).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

MAX_CHARS = 100
MAX_DIGITS = 15
MAX_EXPONENT = 64
MAX_BITS = 4096
MAX_DEGREE = 12
SIMPLIFY_S = 1.0  # most seconds `equal` spends simplifying

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|([A-Za-z]+)|(\*\*|[-+*/^()]))")
_UNICODE = str.maketrans({"×": "*", "·": "*", "÷": "/", "−": "-"})


class Unparsable(ValueError):
    """Outside the grammar or its bounds."""


def _functions() -> dict[str, Callable]:
    import sympy

    return {"sqrt": sympy.sqrt, "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "exp": sympy.exp,
            "log": sympy.log, "ln": sympy.log, "abs": sympy.Abs}


def tokens(text: str) -> list[tuple[str, str]]:
    """`text` as (kind, value) tokens, kind one of `num`, `name`, `op`; `Unparsable` for
    anything else (quotes, dots after a name, brackets, underscores, commas...)."""
    text = text.translate(_UNICODE).strip()
    if len(text) > MAX_CHARS:
        raise Unparsable(f"longer than {MAX_CHARS} characters")
    out, at = [], 0
    while at < len(text):
        m = _TOKEN.match(text, at)
        if m is None or m.end() == at:
            if text[at:].strip():
                raise Unparsable(f"unexpected {text[at:at + 10]!r}")
            break
        at = m.end()
        num, name, op = m.groups()
        if num is not None:
            if sum(c.isdigit() for c in num) > MAX_DIGITS:
                raise Unparsable(f"a number longer than {MAX_DIGITS} digits")
            out.append(("num", num))
        elif name is not None:
            out.append(("name", name))
        else:
            out.append(("op", "^" if op == "**" else op))
    return out


class _Parser:
    """Recursive descent over `tokens`; each method returns (expression, degree), the
    degree an upper bound on the polynomial degree that `MAX_DEGREE` limits."""

    def __init__(self, toks: list[tuple[str, str]]) -> None:
        import sympy

        self.sympy = sympy
        self.toks = toks
        self.at = 0
        self.functions = _functions()

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.at] if self.at < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise Unparsable(f"expected {value or 'more'}")
        self.at += 1
        return tok

    def parse(self) -> Any:
        expr, _ = self.sum()
        if self.peek() is not None:
            raise Unparsable(f"unexpected {self.peek()[1]!r}")
        return expr

    def sum(self) -> tuple[Any, int]:
        expr, degree = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            sign = self.take()[1]
            right, d = self.product()
            expr, degree = (expr + right if sign == "+" else expr - right), max(degree, d)
        return expr, degree

    def product(self) -> tuple[Any, int]:
        expr, degree = self.unary()
        while True:
            tok = self.peek()
            if tok in (("op", "*"), ("op", "/")):
                self.take()
                right, d = self.unary()
                expr = expr * right if tok[1] == "*" else expr / right
            elif tok is not None and (tok[0] != "op" or tok[1] == "("):  # implicit: 2x, x(x+1), (a)(b)
                right, d = self.power()
                expr = expr * right
            else:
                return expr, degree
            degree = _bounded(degree + d)

    def unary(self) -> tuple[Any, int]:
        if self.peek() in (("op", "-"), ("op", "+")):
            sign = self.take()[1]
            expr, degree = self.unary()
            return (-expr if sign == "-" else expr), degree
        return self.power()

    def power(self) -> tuple[Any, int]:
        base, degree = self.atom()
        if self.peek() != ("op", "^"):
            return base, degree
        self.take()
        exponent, exp_degree = self.unary()  # right-associative: 2^3^2 = 2^9
        if not exponent.is_Rational:  # x^y, 2^x: kept symbolic
            return self.sympy.Pow(base, exponent), _bounded(degree + exp_degree + 1)
        if abs(exponent.p) > MAX_EXPONENT or exponent.q > MAX_EXPONENT:
            raise Unparsable(f"an exponent beyond {MAX_EXPONENT}")
        if base.is_Rational and max(abs(base.p), base.q).bit_length() * abs(exponent.p) > MAX_BITS:
            raise Unparsable(f"a power beyond {MAX_BITS} bits")
        return base ** exponent, _bounded(degree * abs(exponent.p))

    def atom(self) -> tuple[Any, int]:
        kind, value = self.take()
        sympy = self.sympy
        if kind == "num":
            return sympy.Rational(value), 0
        if kind == "op":
            if value != "(":
                raise Unparsable(f"unexpected {value!r}")
            expr, degree = self.sum()
            self.take(")")
            return expr, degree
        if value in self.functions:
            self.take("(")
            arg, _ = self.sum()
            self.take(")")
            return self.functions[value](arg), 1
        if value == "pi":
            return sympy.pi, 0
        if value == "E":
            return sympy.E, 0
        # letters are symbols; several in a row multiply (xy = x*y), as SymPy's split_symbols
        expr = sympy.Integer(1)
        for letter in value:
            expr = expr * sympy.Symbol(letter)
        return expr, _bounded(len(value))


def _bounded(degree: int) -> int:
    if degree > MAX_DEGREE:
        raise Unparsable(f"a degree beyond {MAX_DEGREE}")
    return degree


def parse(text: str) -> Any:
    """`text` as a SymPy expression; `Unparsable` outside the grammar or its bounds."""
    toks = tokens(text)
    if not toks:
        raise Unparsable("empty")
    return _Parser(toks).parse()


@contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError in the block after `seconds` (SIGALRM: the main thread only); the
    previous handler and timer are put back."""
    def expired(signum, frame):
        raise TimeoutError(f"more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    start = time.monotonic()
    old_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_delay:  # the caller's own timer, less the time spent here (at once if it is due)
            signal.setitimer(signal.ITIMER_REAL, max(old_delay - (time.monotonic() - start), 1e-6))


def equal(a: str, b: str) -> bool | None:
    """Whether the expressions `a` and `b` are equal (`simplify(a - b) == 0`); None when
    either is outside the grammar, the check ran past `SIMPLIFY_S`, or it could not be
    timed (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        ea, eb = parse(a), parse(b)
        import sympy

        with _time_limit(SIMPLIFY_S):
            return bool(sympy.simplify(ea - eb) == 0)
    except (Unparsable, TimeoutError, ZeroDivisionError, ValueError, TypeError, RecursionError):
        return None
