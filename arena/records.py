"""The episodes file's format: one episode record a line, JSON.

Readers (`read_lines`, `read_records`, `read_episodes`) take every line that parses: a last
line without its trailing newline is a complete record when it parses as JSON (jq and pandas
read it too), and only a last line that does not parse is the torn tail of a killed writer,
which readers skip (and the next writer, `arena.store.EpisodeWriter`, cuts off). A file is
therefore readable while a run writes it.

Records are encoded with `orjson` when it is installed (a dependency; about ten times the
standard encoder's speed, which made the store's cost mostly serialisation): UTF-8 text, NaN
and infinities as null. A record orjson refuses (a lone surrogate from a model, an integer
beyond 64 bits, a non-string dict key) and every record when orjson is missing go through the
standard encoder with `ensure_ascii` (non-ASCII text as `\\uXXXX` escapes, lone surrogates
survive). Both encodings read back as the same values (floats round-trip exactly); the bytes
differ only in how non-ASCII text and float exponents are spelled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arena.episode import Episode, _finite
from arena.errors import ArenaError

EPISODES_FILE = "episodes.jsonl"


def _json_default(value: Any) -> Any:
    """Numpy scalars and arrays (and anything with `tolist`/`item`) as plain JSON values."""
    for name in ("tolist", "item"):
        method = getattr(value, name, None)
        if callable(method):
            return method()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"), default=_json_default)

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the standard encoder still works
    _orjson = None
# dataclasses and datetimes go to `_json_default` (refused, as by the standard encoder)
_ORJSON_OPTIONS = 0 if _orjson is None else _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME


def encode_record_json(record: dict[str, Any]) -> bytes:
    """A record as one ASCII JSON line (no newline) with the standard encoder; NaN and
    infinities become null."""
    try:
        text = _ENCODER.encode(record)
    except ValueError:  # a non-finite float somewhere: clean the (rare) record and retry
        text = _ENCODER.encode(_finite(record))
    except TypeError as exc:
        raise ArenaError(f"episode {record.get('id', '')!r} cannot be stored as JSON: {exc}") from None
    return text.encode("ascii")


def encode_record(record: dict[str, Any]) -> bytes:
    """A record as one UTF-8 JSON line (no newline); NaN and infinities become null.

    orjson when installed; the standard encoder (`encode_record_json`) for what orjson
    refuses and when it is missing."""
    if _orjson is not None:
        try:
            return _orjson.dumps(record, default=_json_default, option=_ORJSON_OPTIONS)
        except _orjson.JSONEncodeError:
            pass
    return encode_record_json(record)


def _parses(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True



def episodes_path(run: str | os.PathLike[str]) -> Path:
    """The episodes file of a run folder (or the file itself)."""
    path = Path(run)
    if path.is_dir() and not (path.name == EPISODES_FILE and not (path / EPISODES_FILE).exists()):
        path = path / EPISODES_FILE
    if not path.exists():
        raise ArenaError(f"no episodes at {path}: give a run folder written by `arena play` or `arena train` (or its {EPISODES_FILE})")
    if path.is_dir():
        raise ArenaError(f"{path} is a folder, not an episodes file: give the run folder that holds {EPISODES_FILE}")
    return path


def read_records(run: str | os.PathLike[str], *, skipped: list[int] | None = None) -> Iterator[Any]:
    """Yield the JSON value of every complete line of a run's episodes file (see `read_lines`)."""
    for _, value in read_lines(run, skipped=skipped):
        yield value


def read_lines(run: str | os.PathLike[str], *, skipped: list[int] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield `(line number, JSON value)` for every complete line of a run's episodes file.

    A last line without a newline is a complete record when it parses; when it does not,
    it is a torn tail (a killed writer, or a line being written): it is skipped and its
    line number appended to `skipped`. A line before the last that does not parse is an
    error naming the file and line.
    """
    path = episodes_path(run)
    try:
        f = open(path, "rb")  # noqa: SIM115 - a generator: closed by the with below
    except OSError as exc:
        raise ArenaError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError as exc:
                if not raw.endswith(b"\n"):
                    if skipped is not None:
                        skipped.append(lineno)
                    return
                raise ArenaError(f"{path}:{lineno}: not a JSON episode record ({_json_error(exc, lineno)}): "
                                 "repair or delete that line") from None
            yield lineno, value


def _json_error(exc: ValueError, lineno: int) -> str:
    """The whole JSON error, placed in the file: `Invalid control character at: line 12
    column 40 (char 39)`. json numbers lines within the text it parsed, always line 1 of one
    record; its bare `msg` ("Invalid control character at") said nowhere."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg}: line {lineno} column {exc.colno} (char {exc.pos})"
    return str(exc)  # not UTF-8: the decoder's own message says the byte and position


def count_lines(path: str | os.PathLike[str]) -> int:
    """The lines of a file, a last one without its newline included (a progress bar's total:
    counting bytes costs a fraction of parsing the records)."""
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def read_episodes(run: str | os.PathLike[str], *, skipped: list[int] | None = None) -> Iterator[Episode]:
    """Yield the `Episode`s of a run folder or episodes file (see `read_records`)."""
    path = episodes_path(run)
    for lineno, record in read_lines(path, skipped=skipped):
        try:
            yield Episode.from_dict(record)
        except ArenaError as exc:
            raise ArenaError(f"{path}:{lineno}: {exc}") from None
