"""What a resumed run does to its folder: what was written after the checkpoint (episodes,
metrics.csv rows, eval.jsonl records, all played and logged again, and the bytes envs
appended to their files in `env-state/`) is moved to
`*.after-checkpoint.*` files, and flags given with `--resume` are written to config.yaml,
the previous one kept as `config.before-resume-N.yaml`. Nothing is deleted."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from arena.config import TrainConfig, _flag
from arena.env_state import file_sizes
from arena.errors import ArenaError
from arena.flags import parse_args, run_config
from arena.run_info import ENV_STATE_DIR
from arena.store import EPISODES_FILE


def cut_episodes_after(run_dir: Path, keep: int) -> int:
    """Keep the first `keep` episode lines of the run; move the later ones (played after the
    checkpoint, to be played again) to `episodes.after-checkpoint.jsonl`, never delete them.
    Returns how many lines were moved."""
    path = Path(run_dir) / EPISODES_FILE
    if not path.exists():
        if keep:  # else the resumed run starts a new file at index `keep`, the first ones gone without a word
            raise ArenaError(f"{path} is missing but the checkpoint expects {keep} episodes in it: restore the file "
                             "to resume the run")
        return 0
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    complete = [ln for ln in lines if ln.endswith(b"\n")]
    if len(complete) < keep:
        raise ArenaError(f"{path} holds {len(complete)} episodes but the checkpoint expects {keep}: the run folder was "
                         "changed; restore the file to resume the run")
    # each moved line ends with its newline: a torn last line (a killed writer's) stays
    # apart from what a later resume moves after it
    tail = b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in lines[keep:])
    if tail:
        _writable(path)
        _append_once(_after_name(path), tail)
        _replace(path, b"".join(lines[:keep]))
    return len(lines) - keep


def _append_once(after: Path, moved: bytes) -> None:
    """Append `moved` to the after-checkpoint file `after`, unless it already ends with it: a
    resume killed between this append and the cut of the file it came from moves the same
    bytes again when resumed again, and they were then kept twice."""
    try:
        size = after.stat().st_size if after.exists() else 0
        if size >= len(moved):
            with open(after, "rb") as f:
                f.seek(size - len(moved))
                if f.read() == moved:
                    return
        with open(after, "ab") as f:
            f.write(moved)
    except OSError as exc:
        raise ArenaError(f"cannot write {after}: {exc.strerror or exc}; make the run folder writable to resume the "
                         "run") from None


def _writable(path: Path) -> None:
    """A file made read-only is one line, before anything of it is moved (even by root,
    whom the permission would not stop)."""
    import stat

    if not path.stat().st_mode & stat.S_IWUSR:
        raise ArenaError(f"{path} is read-only and the resumed run writes to it: make it writable (chmod u+w) to "
                         "resume the run")


def _replace(path: Path, data: bytes) -> None:
    """`path` now holds `data`, whole or not at all: written under a fresh temporary name
    beside it (never a user's `episodes.tmp`), with the file's permissions, then renamed
    over it. The caller checked first that it is not read-only (`_writable`)."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ArenaError(f"cannot write in {path.parent}: {exc.strerror or exc}; make it writable to resume the "
                         "run") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def env_state_sizes(run_dir: Path) -> dict[str, int]:
    """{path under the run's env-state folder: bytes} of every file envs keep there
    (`ArenaEnv.run_kwargs`), those moved aside by a resume left out: what a checkpoint
    records, so that a resumed run cuts them back (`cut_env_state_after`)."""
    return file_sizes(Path(run_dir) / ENV_STATE_DIR)


def cut_env_state_after(run_dir: Path, sizes: dict[str, int]) -> int:
    """Cut every file of the run's env-state folder back to its size in `sizes` (a
    checkpoint's `env_state_sizes`; a file it does not name was written after it: size 0);
    the bytes after go to `<name>.after-checkpoint<suffix>` beside it, never deleted (AZR's
    tasks proposed in episodes that are played again). Returns how many files were cut."""
    now = env_state_sizes(run_dir)
    for name, keep in sizes.items():
        if now.get(name, 0) < int(keep):
            raise ArenaError(f"{Path(run_dir) / ENV_STATE_DIR / name} holds {now.get(name, 0)} bytes but the checkpoint "
                             f"recorded {keep}: the run folder was changed; restore the file to resume the run")
    cut = 0
    for name, size in now.items():
        keep = int(sizes.get(name, 0))
        if size <= keep:
            continue
        path = Path(run_dir) / ENV_STATE_DIR / name
        with open(path, "rb") as f:
            f.seek(keep)
            tail = f.read()
        _writable(path)
        _append_once(_after_name(path), tail if tail.endswith(b"\n") else tail + b"\n")
        os.truncate(path, keep)
        cut += 1
    return cut


METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.jsonl"


def _after_name(path: Path) -> Path:
    """`metrics.csv` -> `metrics.after-checkpoint.csv`: where rows after the checkpoint go."""
    return path.with_name(f"{path.stem}.after-checkpoint{path.suffix}")


def _step_of(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def cut_metrics_after(run_dir: Path, step: int) -> int:
    """Keep the metrics.csv rows of steps up to the checkpoint's `step`; move the later ones
    (to be logged again by the resumed run) to `metrics.after-checkpoint.csv`, never delete
    them, so that metrics.csv reads each step once. A row whose step does not read (cut by
    a kill mid-write) goes with them. Returns how many rows were moved."""
    import csv

    from arena.callbacks import append_csv

    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    keep: list[dict[str, str]] = []
    moved: list[dict[str, str]] = []
    for row in rows:
        s = _step_of(row.get("step"))
        whole = None not in row  # more cells than the header: a malformed row, kept aside as it is
        (keep if whole and s is not None and s <= step else moved).append(row)
    if not moved:
        return 0
    _writable(path)
    for row in moved:  # appended: the rows moved aside by an earlier resume stay
        extra = row.pop(None, None)  # type: ignore[call-overload]
        cells = {k: ("" if v is None else v) for k, v in row.items()}
        append_csv(_after_name(path), {**cells, **({"extra": ",".join(extra)} if extra else {})})
    kept = io.StringIO(newline="")
    writer = csv.DictWriter(kept, fieldnames=header)
    writer.writeheader()
    writer.writerows(keep)
    _replace(path, kept.getvalue().encode())
    return len(moved)


def cut_evals_after(run_dir: Path, step: int) -> int:
    """Keep the eval.jsonl records of steps up to the checkpoint's `step` (the resumed run
    reuses the checkpoint's own); move the later ones to `eval.after-checkpoint.jsonl`, as
    `cut_metrics_after` moves their rows. Returns how many lines were moved."""
    path = Path(run_dir) / EVAL_FILE
    if not path.exists():
        return 0
    lines = path.read_bytes().splitlines(keepends=True)
    keep: list[bytes] = []
    moved: list[bytes] = []
    for line in lines:
        (keep if not line.strip() or _eval_up_to(line, step) else moved).append(line)
    if not moved:
        return 0
    _writable(path)
    _append_once(_after_name(path), b"".join(ln if ln.endswith(b"\n") else ln + b"\n" for ln in moved))
    _replace(path, b"".join(keep))
    return len(moved)


def _eval_up_to(line: bytes, step: int) -> bool:
    """A whole eval.jsonl record of a step up to `step` (a line cut by a kill is not)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    s = _step_of(record.get("step")) if isinstance(record, dict) else None
    return line.endswith(b"\n") and s is not None and s <= step


# -- flags given with --resume: written to the run's config.yaml --------------------------------
#: Fields that say where the run is, not how it trains: never an override of a resumed run.
PLACE_FIELDS = ("out", "resume")


def resume_changes(config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (saved, now)} where `config` (a resumed run's) differs from its config.yaml,
    or from run.json's record of it where that file is lost (`run_config`)."""
    if not config.resume or run_config(config.resume) is None:
        return {}
    saved = parse_args(["--resume", str(config.resume)]).to_dict()
    now = config.to_dict()
    return {k: (saved[k], now[k]) for k in now if k not in PLACE_FIELDS and saved[k] != now[k]}


#: Fields whose outcome the checkpoint holds: a resumed run cannot change them (the
#: weights it trained, an adapter of that rank or none), and says how to go on instead.
FIXED_ON_RESUME = ("model", "lora_r")


def refuse_fixed_changes(config: TrainConfig) -> None:
    """One line when `--resume` comes with a flag the checkpoint cannot be loaded under
    (`FIXED_ON_RESUME`), before anything is written: a LoRA rank changed on resume crashed
    in transformers' optimizer loading after config.yaml had taken the new rank, so every
    later plain `--resume` crashed too. The way on is a new run from the run's model."""
    changes = {k: v for k, v in resume_changes(config).items() if k in FIXED_ON_RESUME}
    if not changes:
        return
    run = config.resume
    given = describe_changes(changes)
    if "model" in changes:
        raise ArenaError(f"--resume {run} with {given}: a resumed run goes on from the weights in its checkpoint; "
                         f"to train another model, start a new run (`arena train --model {changes['model'][1]} "
                         "--out NEW`)")
    old, new = changes["lora_r"]
    held = f"a rank-{old} LoRA adapter" if old else "fully trained weights"
    raise ArenaError(f"--resume {run} with {given}: its checkpoint holds {held} and cannot go on as "
                     f"{f'a rank-{new} adapter' if new else 'a full fine-tune'}; start a new run from its model "
                     f"(`arena train --model {run} --lora-r {new} --out NEW`)")


def config_backup(run_dir: Path) -> Path:
    """Where the run's config.yaml is kept before a resume changes it: the first free
    `config.before-resume-N.yaml`."""
    n = 1
    while (run_dir / f"config.before-resume-{n}.yaml").exists():
        n += 1
    return run_dir / f"config.before-resume-{n}.yaml"


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "[]"
    if isinstance(value, dict):
        return json.dumps(value)
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """`--env B --steps 7 (was --env A --steps 4)`."""
    now = " ".join(f"--{_flag(k)} {_shown(new)}" for k, (_, new) in changes.items())
    was = " ".join(f"--{_flag(k)} {_shown(old)}" for k, (old, _) in changes.items())
    return f"{now} (was {was})"


def save_resumed_config(config: TrainConfig) -> Path | None:
    """Write what a resumed run trains with to its config.yaml, so that the next plain
    `--resume` goes on the same way; the previous file is kept (`config_backup`), never
    overwritten. A lost config.yaml is written again (from run.json's record, with the
    changes). Returns the backup, or None when nothing changed or there was no file."""
    import yaml

    run_dir = Path(config.resume or "")
    path = run_dir / "config.yaml"
    lost = not path.is_file()
    if not resume_changes(config) and not lost:
        return None
    backup = None if lost else config_backup(run_dir)
    if backup is not None:
        shutil.copy2(path, backup)
    saved = {} if lost else yaml.safe_load(path.read_text()) or {}
    data = {**config.to_dict(), "resume": None, "out": saved.get("out", config.out)}  # the run's place is unchanged
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)  # never a half-written config.yaml
    return backup
