"""`ExecResult`: what running one program (and its calls) in the sandbox produced."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed", "infra")
"""Job and call statuses.

- ``ok``: the program ran and every call returned.
- ``error``: an exception (``error_type`` is its class name, e.g. ``ZeroDivisionError``),
  or the process exited without reporting (``error_type`` ``Exit``).
- ``timeout``: the wall-clock deadline (``Limits.timeout``) or the CPU-time limit.
- ``memory``: MemoryError under the address-space limit.
- ``output_limit``: stdout/stderr, a value's repr, or a written file beyond its limit.
- ``killed``: the process died by a signal (``error_type`` is its name, e.g. ``SIGSEGV``),
  or the job brought its sandbox worker down.
- ``infra``: the sandbox itself failed (engine gone, worker would not start...). Never the
  program's fault: callers mask such samples out of training instead of scoring them 0.
"""


@dataclass
class CallResult:
    """The outcome of one call expression (e.g. ``f(1, 2)``) evaluated after the program."""

    call: str
    status: str
    value: str | None = None
    """``repr`` of the returned value (status ok)."""
    json: str | None = None
    """The value as JSON text when it is `plain` and ``json.dumps`` accepts it (tuples
    become arrays; NaN and infinities are refused), else None."""
    error_type: str | None = None
    error: str | None = None
    plain: bool = False
    """True when the value is built only of builtin types (int, float, str, bytes, None,
    list, tuple, dict, set, ...; no subclasses): ``value`` and ``json`` were then computed
    by builtin code. False: ``value`` is whatever the program's own ``__repr__`` said and
    ``json`` is None. Score with ``json`` (or ``value`` when ``plain``)."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def json_value(self) -> Any:
        """The decoded JSON value (raises ValueError when the value was not JSON-able)."""
        if self.json is None:
            raise ValueError(f"the value of {self.call!r} is not JSON-able: {self.value!r:.80}")
        return json.loads(self.json)


@dataclass
class ExecResult:
    """Result of `Sandbox.run`: one program and its calls, executed in one fresh process.

    ``status`` is the first non-ok status among the program's own execution and its calls
    in order (``ok`` when all succeeded); ``value``/``json`` are those of the last call
    (the only one, usually). ``calls`` always has one entry per requested call: calls that
    never ran carry the status that stopped the job (e.g. ``timeout``).
    """

    status: str
    calls: list[CallResult] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    """Seconds from fork to reaping of the program's process (measured by the runner;
    for ``infra``, the host-side time lost)."""
    error_type: str | None = None
    error: str | None = None
    backend: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def infra(self) -> bool:
        """True when the sandbox failed, not the program: mask the sample out."""
        return self.status == "infra"

    @property
    def value(self) -> str | None:
        return self.calls[-1].value if self.calls else None

    @property
    def json(self) -> str | None:
        return self.calls[-1].json if self.calls else None

    @property
    def values(self) -> list[str | None]:
        return [c.value for c in self.calls]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = self.value
        d["json"] = self.json
        return d

    @classmethod
    def from_output(cls, meta: dict[str, Any], raw: bytes, calls: list[str], backend: str,
                    max_output: int, max_value: int) -> ExecResult:
        """Build from the runner's meta line and the bytes the job's process wrote.

        ``raw`` is the program's word about itself: anything in it that is not what an
        honest child writes (bad JSON, wrong shapes, sizes beyond the limits, nesting, a
        claim of ``infra``) makes the result ``error``/``MalformedResult`` with the reason.
        Nothing here raises on any ``raw``."""
        try:
            d = parse_output(raw, len(calls), bool(meta.get("t")), bool(meta.get("o")),
                             meta.get("w") if isinstance(meta.get("w"), int) else None,
                             max_output, max_value)
        except Exception as e:  # noqa: BLE001 - belt and braces: never raise to the caller
            d = _malformed(f"unreadable result ({type(e).__name__})", len(calls))
        try:
            duration = float(meta.get("d") or 0.0)
        except (TypeError, ValueError):
            duration = 0.0
        out = [CallResult(call=call, status=c["status"], value=c.get("value"), json=c.get("json"),
                          error_type=c.get("error_type"), error=c.get("error"),
                          plain=c.get("plain") is True)
               for call, c in zip(calls, d["calls"])]
        return cls(status=d["status"], calls=out, stdout=d.get("stdout") or "",
                   stderr=d.get("stderr") or "", duration=duration,
                   error_type=d.get("error_type"), error=d.get("error"), backend=backend)

    @classmethod
    def infrastructure(cls, message: str, calls: list[str], backend: str,
                       duration: float = 0.0, status: str = "infra",
                       error_type: str = "SandboxError") -> ExecResult:
        """A result for a job the sandbox could not run (or that brought it down)."""
        return cls(status=status, error_type=error_type, error=message, backend=backend,
                   duration=duration,
                   calls=[CallResult(call=c, status=status, error_type=error_type, error=message)
                          for c in calls])


# -- host-side parsing of what a job's process wrote ------------------------------------------

_PROGRAM_STATUSES = STATUSES[:-1]  # a program can never claim infra
ERROR_CHARS = 4096  # an honest child truncates exception text to 2000 characters


def _malformed(reason: str, ncalls: int) -> dict[str, Any]:
    fail = {"status": "error", "error_type": "MalformedResult",
            "error": f"the program's result channel held {reason}"}
    return dict(fail, calls=[dict(fail) for _ in range(ncalls)], stdout="", stderr="")


def _clean(s: str) -> str:
    """``s`` with lone surrogates written as ``\\udXXX`` escapes (storable, printable)."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


class _Bad(Exception):
    pass


#: A JSON string, and a whole line of strings and other bytes; possessive, so that neither
#: can backtrack: a line that opens a string and never closes it (``"\\"\\"...``) fails in
#: one pass, where a plain pattern retried from every quote (quadratic: 64 KB took 12 s).
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_STRINGS_CLOSE = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+')


def _structure(line: bytes) -> tuple[int, int] | None:
    """(objects and arrays opened, separators ``,`` and ``:``) of a JSON line outside its
    strings, or None when a string never closes (not JSON). An honest result line has a
    handful of each (its object, the calls list, an object of a few keys per call: values
    travel as strings), so this bounds what `json.loads` would build: a program could
    otherwise fill its result with ``[],[],...`` or ``1,1,...`` and have the host build
    tens of millions of objects (1.8 GB measured) before the line is refused. Linear."""
    if _STRINGS_CLOSE.fullmatch(line) is None:
        return None
    outside = _JSON_STRING.sub(b"", line)
    return outside.count(b"{") + outside.count(b"["), outside.count(b",") + outside.count(b":")


def _text(v: Any, limit: int, what: str, optional: bool = True) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise _Bad(f"a non-string {what}")
    if len(v) > limit:
        raise _Bad(f"a {what} of {len(v)} characters (limit {limit})")
    return _clean(v)


def _call(c: Any, max_value: int) -> dict[str, Any]:
    if not isinstance(c, dict) or c.get("status") not in _PROGRAM_STATUSES:
        raise _Bad("a call result without a valid status")
    out = {"status": c["status"],
           "error_type": _text(c.get("error_type"), 256, "error type"),
           "error": _text(c.get("error"), ERROR_CHARS, "error message")}
    if c["status"] == "ok":
        out["value"] = _text(c.get("value"), max_value, "value", optional=False)
        out["json"] = _text(c.get("json"), max_value, "JSON value")
        if c.get("plain") not in (True, False, None):
            raise _Bad("a non-boolean plain flag")
        out["plain"] = c.get("plain") is True
    return out


def parse_output(raw: bytes, ncalls: int, timed_out: bool, overflow: bool,
                 wstatus: int | None, max_output: int, max_value: int) -> dict[str, Any]:
    """The result of a job from the bytes its process wrote (see `ExecResult.from_output`).

    An honest child writes: optional streamed lines (``{"program": FAILURE}`` or one call
    result each), then ``F`` + the complete result: at most ``ncalls + 1`` lines (2 for a
    program failure), and more is refused before anything is parsed. When the process was cut short
    (deadline, size, signal, exit before reporting), the streamed lines give the calls that
    finished and the cut gives the rest."""
    import signal

    if raw.count(b"\n") > max(ncalls + 1, 2):  # before any parsing: 26 MB of tiny lines cost the host seconds
        return _malformed("more lines than a result has", ncalls)
    lines = raw.split(b"\n")
    torn = lines.pop()
    sig = code = None
    if wstatus is not None:
        if os.WIFSIGNALED(wstatus):
            sig = os.WTERMSIG(wstatus)
        elif os.WIFEXITED(wstatus):
            code = os.WEXITSTATUS(wstatus)
    cut_short = timed_out or overflow or sig is not None
    if torn and not cut_short:
        return _malformed("a line without its end", ncalls)
    line_limit = 2 * max_output * 6 + (ncalls + 1) * (max_value * 12 + 4096)
    calls: list[dict[str, Any]] = []
    program_failure = None
    final = None
    try:
        for line in lines:
            is_final = line[:1] == b"F"
            body = line[1:] if is_final else line
            if len(body) > line_limit:
                raise _Bad("a line beyond the size limits")
            shape = _structure(body)
            if shape is None:
                raise _Bad("a line that is not JSON")
            if shape[0] > ncalls + 4 or shape[1] > 32 * (ncalls + 2):
                raise _Bad("more objects, arrays or items than a result has")
            text = body.decode("utf-8", "surrogatepass")
            try:
                obj = json.loads(text)
            except RecursionError:  # the C decoder stops at the recursion limit
                raise _Bad("nesting deeper than a result has") from None
            except ValueError:
                raise _Bad("a line that is not JSON") from None
            if not isinstance(obj, dict):
                raise _Bad("a line that is not a JSON object")
            if final is not None:
                raise _Bad("lines after the final result")
            if is_final:
                if not isinstance(obj.get("calls"), list) or len(obj["calls"]) != ncalls:
                    raise _Bad(f"a final result without exactly {ncalls} call result(s)")
                if obj.get("status") not in _PROGRAM_STATUSES:
                    raise _Bad("a final result without a valid status")
                final = {"status": obj["status"],
                         "calls": [_call(c, max_value) for c in obj["calls"]],
                         "stdout": _text(obj.get("stdout"), max_output, "stdout", optional=False),
                         "stderr": _text(obj.get("stderr"), max_output, "stderr", optional=False),
                         "error_type": _text(obj.get("error_type"), 256, "error type"),
                         "error": _text(obj.get("error"), ERROR_CHARS, "error message")}
            elif set(obj) == {"program"}:
                if program_failure is not None or calls:
                    raise _Bad("a program failure after another line")
                program_failure = _call(obj["program"], max_value)
                if program_failure["status"] == "ok":
                    raise _Bad("a program failure with status ok")
            else:
                if len(calls) >= ncalls:
                    raise _Bad("more call results than calls")
                calls.append(_call(obj, max_value))
    except _Bad as e:
        return _malformed(str(e), ncalls)
    except UnicodeDecodeError:
        return _malformed("bytes that are not UTF-8", ncalls)
    if final is not None:
        return final
    if timed_out:
        cut = {"status": "timeout", "error_type": "Timeout", "error": "wall-clock limit"}
    elif overflow:
        cut = {"status": "output_limit", "error_type": "OutputLimit",
               "error": "result larger than the limits allow"}
    elif sig == signal.SIGXCPU:
        cut = {"status": "timeout", "error_type": "Timeout", "error": "CPU time limit"}
    elif sig == signal.SIGXFSZ:
        cut = {"status": "output_limit", "error_type": "FileSizeLimit", "error": "file size limit"}
    elif sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        cut = {"status": "killed", "error_type": name, "error": f"killed by {name}"}
    else:
        cut = {"status": "error", "error_type": "Exit",
               "error": f"the process exited with status {code} before reporting"}
    if program_failure is not None:
        calls = [dict(program_failure) for _ in range(ncalls)]
        first = program_failure
    else:
        calls = calls + [dict(cut) for _ in range(ncalls - len(calls))]
        first = next((c for c in calls if c["status"] != "ok"), cut)
    return {"status": first["status"], "calls": calls, "stdout": "", "stderr": "",
            "error_type": first.get("error_type"), "error": first.get("error")}
