"""`ExecResult`: what running one program (and its calls) in the sandbox produced."""

from __future__ import annotations

import json
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
    """The value as JSON text when ``json.dumps`` accepts it (tuples become arrays; NaN and
    infinities are refused), else None."""
    error_type: str | None = None
    error: str | None = None

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
    def from_wire(cls, d: dict[str, Any], calls: list[str], backend: str) -> ExecResult:
        """Build from the runner's JSON answer (see `arena.sandbox.runner`)."""
        if "r" in d:  # the child's own result, framed by the runner with the duration
            duration = d.get("d")
            d = d["r"] if isinstance(d["r"], dict) else {"status": "error", "error_type": "Exit",
                                                         "error": "malformed result"}
            d = dict(d, duration=duration)
        elif "infra" in d:
            return cls.infrastructure(str(d["infra"]), calls, backend)
        raw = d.get("calls")
        raw = list(raw) if isinstance(raw, list) else []
        out = []
        for i, call in enumerate(calls):
            c = raw[i] if i < len(raw) and isinstance(raw[i], dict) else {}
            status = c.get("status") if c.get("status") in STATUSES[:-1] else "error"
            value, js = c.get("value"), c.get("json")
            out.append(CallResult(call=call, status=status,
                                  value=value if isinstance(value, str) else None,
                                  json=js if isinstance(js, str) else None,
                                  error_type=c.get("error_type"), error=c.get("error")))
        status = d.get("status")
        if status not in STATUSES[:-1]:  # the runner never claims infra for a program
            status = "error"
        try:
            duration = float(d.get("duration") or 0.0)
        except (TypeError, ValueError):
            duration = 0.0
        def text(v: Any) -> str | None:
            return None if v is None else str(v)
        return cls(status=status, calls=out, stdout=str(d.get("stdout") or ""),
                   stderr=str(d.get("stderr") or ""), duration=duration,
                   error_type=text(d.get("error_type")), error=text(d.get("error")), backend=backend)

    @classmethod
    def infrastructure(cls, message: str, calls: list[str], backend: str,
                       duration: float = 0.0, status: str = "infra",
                       error_type: str = "SandboxError") -> ExecResult:
        """A result for a job the sandbox could not run (or that brought it down)."""
        return cls(status=status, error_type=error_type, error=message, backend=backend,
                   duration=duration,
                   calls=[CallResult(call=c, status=status, error_type=error_type, error=message)
                          for c in calls])
