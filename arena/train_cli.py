"""`arena train`, `arena eval`, `arena report`: self-play training from the command line.

    arena train --env spiral/KuhnPoker-v0 --steps 100 --out runs/kuhn
    arena train --config kuhn.yaml --learning-rate 3e-4      # flags override the file
    arena train --resume runs/kuhn                           # continue from the last checkpoint
    arena eval runs/kuhn --env spiral/KuhnPoker-v0           # vs random and heuristic; Kuhn exploitability
    arena report runs/kuhn                                   # PNG plots in runs/kuhn/plots

Every `TrainConfig` field is a flag of `arena train` (`arena.flags.parse_args`), so the
flags, the YAML keys and `arena train --help` come from one dataclass. torch, trl,
transformers and matplotlib are imported inside the command bodies, never at start-up.
Text from envs and models is printed literally (Rich `Text`, never markup).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from arena.errors import ArenaError, Terminated, interrupt_exit_code
from arena.metrics import OPPONENTS, RATES
from arena.report import UNIFORM_EXPLOITABILITY, read_jsonl
from arena.run_info import (
    file_in_the_way,
    has_model,
    is_training_run,
    newest_model,
    run_decoding,
    run_of,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]})
console = Console()
err_console = Console(stderr=True)



def _say(message: str, *, err: bool = False) -> None:
    (err_console if err else console).print(Text(message), soft_wrap=True)


def _ui() -> Any:
    """The table helpers of `arena.cli` (literal text, ids and numbers never wrapped)."""
    from arena import cli

    return cli


# -- arena train ------------------------------------------------------------------------------
def _train_help() -> None:
    from arena.flags import fields_help

    ui = _ui()
    _say("Usage: arena train [--config FILE.yaml] [--FIELD VALUE ...] [--resume RUN]\n\n"
         "Self-play training of one model on one or more envs (role-conditioned advantages on TRL's GRPO).\n"
         "Every field below is a flag (--foo-bar VALUE or --foo-bar=VALUE; booleans also --foo-bar / --no-foo-bar;\n"
         "list fields repeat or take commas) and the YAML key foo_bar of --config FILE.yaml; flags override the file.\n"
         "--resume RUN continues a run from its last checkpoint with the run's config.yaml (flags given override it).\n")
    table = ui._table("arena train options", ["flag", "default", "help~"])
    ui._add_row(table, "--config FILE", "-", "A YAML file of field: value (the same names as the flags).")
    for flag, default, text in fields_help():
        ui._add_row(table, flag, default, text)
    ui._add_row(table, "--help, -h", "-", "Show this message and exit.")
    ui._print_table(table)


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                        "help_option_names": []})
def train_cmd(ctx: typer.Context) -> None:
    """Train one model by self-play: every TrainConfig field is a flag (`arena train --help`)."""
    words = list(ctx.args)
    if "--help" in words or "-h" in words:
        _train_help()
        return
    from arena.config import check_device, check_env_ids, check_transformers_names
    from arena.flags import parse_args
    from arena.resume import config_backup, describe_changes, refuse_fixed_changes, resume_changes
    from arena.run_info import refuse_existing_run

    config = parse_args(words)
    run_dir = Path(config.resume or config.out)
    if not config.resume:
        refuse_existing_run(run_dir)  # before saying "training": the command will not train
    check_env_ids(config)
    check_transformers_names(config)
    check_device(config)
    from arena.data_parallel import check_launch, is_main_process, process_count

    check_launch(config)  # launched as several processes: what cannot run so, before "training"
    if config.resume:
        from arena.checkpoint import resume_point
        from arena.store import lock_run

        resume_point(run_dir, config.steps)  # before saying "resuming": nothing to resume is one line
        refuse_fixed_changes(config)  # and a flag the checkpoint cannot go on under
        if is_main_process():  # and a run another command writes now (its lock), before "config.yaml will say so"
            os.close(lock_run(run_dir))
    # launched as several processes (`arena.data_parallel`), process 0 speaks for the run; the
    # checks above ran in every process, before any of them can have written the run folder
    main = is_main_process()
    changes = resume_changes(config) if config.resume else {}
    lost = bool(config.resume) and not (run_dir / "config.yaml").is_file()
    if main and (changes or lost):  # written to the run's config.yaml once training starts (`save_resumed_config`)
        kept = ("config.yaml, lost, is written again from run.json's record" if lost else
                f"config.yaml will say so, the previous one kept as {config_backup(run_dir).name}")
        _say(f"resuming with {describe_changes(changes) if changes else 'the settings run.json recorded'}; {kept}",
             err=True)
    if main:
        procs = f" on {process_count()} processes" if process_count() > 1 else ""
        _say(f"{'resuming' if config.resume else 'training'} {config.model} on {', '.join(config.env)} "
             f"for {_count(config.steps, 'step')}{procs}; run folder {run_dir}", err=True)
    from arena.training import train  # torch, trl, transformers: imported here, not at start-up

    try:
        trainer = train(config)
    except KeyboardInterrupt as exc:
        if main:
            _interrupted(run_dir, terminated=isinstance(exc, Terminated), steps=config.steps)
        raise typer.Exit(interrupt_exit_code(exc)) from None
    if not main:
        return
    step = trainer.state.global_step
    session = (time.monotonic() - trainer.session_start) / 60.0
    _say(f"done: {_count(step, 'step')} in {_duration(trainer.minutes())}"
         + (f" over the run, {_duration(session)} this session" if config.resume else ""))
    _say(f"model: {run_dir / 'model'}\nmetrics: {run_dir / 'metrics.csv'}\n"
         f"episodes: {run_dir / 'episodes.jsonl'} (replay with `arena replay {run_dir}`)\n"
         f"plots: `arena report {run_dir}`; evaluate: `arena eval {run_dir}` (on the run's envs)")
    final = _last_eval(run_dir)
    if final:
        from arena.evaluate import record_results

        results = record_results(final)
        title = f"evaluation at step {final.get('step')} ({final.get('minutes', 0):.1f} min)"
        if final.get("step") != step:  # --eval-every 0 on a resumed run: the run's latest, not this step's
            title = f"latest evaluation of the run, at step {final.get('step')} (none since: `arena eval {run_dir}`)"
        _print_results(results, title)


def _duration(minutes: float) -> str:
    return f"{minutes:.1f} min" if minutes >= 1 else f"{60 * minutes:.0f} s"


def _interrupted(run_dir: Path, terminated: bool = False, steps: int | None = None) -> None:
    """Ctrl-C or SIGTERM: say where the run stopped and how to continue it (of a run of
    `steps` steps: one stopped after its last checkpoint has nothing to resume)."""
    from arena.run_info import checkpoint_step, last_checkpoint, read_run_info, update_run_info

    info = read_run_info(run_dir) if run_dir.is_dir() else {}
    if info.get("status") == "running":
        update_run_info(run_dir, status="interrupted")
    step = info.get("step")
    ckpt = last_checkpoint(run_dir) if run_dir.is_dir() else None
    err_console.print()  # end the progress bar's line
    how = "terminated (SIGTERM)" if terminated else "interrupted"
    where = f"{how} at step {step}" if step is not None else f"{how} before the first step"
    if ckpt is not None and steps is not None and checkpoint_step(ckpt) >= steps:  # stopped after its last step's checkpoint
        _say(f"{where}, after its last checkpoint: the trained model is in {ckpt} (`arena eval {run_dir}` evaluates "
             f"it; `arena train --resume {run_dir} --steps N` trains further)", err=True)
    elif ckpt is not None:
        _say(f"{where}; resume with `arena train --resume {run_dir}` (from {ckpt.name})", err=True)
    else:
        _say(f"{where}; no checkpoint yet (one is saved every --save-every steps), so `arena train --resume "
             f"{run_dir}` cannot continue it: start again with another --out", err=True)


def _last_eval(run_dir: Path) -> dict[str, Any] | None:
    records = read_jsonl(run_dir / "eval.jsonl")
    finals = [r for r in records if r.get("final")]
    return (finals or records or [None])[-1]


# -- arena eval -------------------------------------------------------------------------------
def resolve_target(target: str) -> tuple[str, Path | None]:
    """(model spec for `load_model`, run folder or None) of `arena eval`'s argument."""
    path = Path(target).expanduser()
    if target == "tiny" and not path.exists():
        return "tiny", None
    if path.is_dir() and is_training_run(path):
        return str(newest_model(path)), path
    if path.is_dir() and has_model(path):
        return str(path), run_of(path)
    if not path.exists() and path.parent != Path(".") and path.parent.is_dir():
        raise ArenaError(f"no such run or model folder: {target}")
    if path.exists():
        raise ArenaError(f"{target} is neither a run folder (config.yaml) nor a model folder (config.json): "
                         "give a run written by `arena train`, a save_pretrained folder, a Hub id, or tiny")
    return target, None


def _check_hub_target(target: str) -> None:
    """One line for `arena eval NAME` when NAME is not here and would be a Hub id the Hub
    cannot serve: most often a mistyped run folder (`kuhn-selfpaly`), which the Hub client
    would otherwise report as an unreachable model. Paths and invalid ids are left to
    `load_model`, which names what they are not."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from arena.agents.loading import _check_hub_reachable, _looks_like_path

    if target == "tiny" or _looks_like_path(target) or Path(target).exists():
        return
    try:
        validate_repo_id(target)
        _check_hub_reachable(target)
    except HFValidationError:
        return
    except ArenaError:
        raise ArenaError(f"{target!r} is not a run or model folder here, and the Hub, where it would be a model id, "
                         "is unreachable: give a run folder written by `arena train --out`, a save_pretrained "
                         "folder, or tiny") from None


@app.command("eval")
def eval_cmd(
    target: str = typer.Argument(..., metavar="RUN|MODEL", help="A training run (its final model, else its newest checkpoint), a model folder, a Hub id, or tiny."),
    env: list[str] = typer.Option([], "--env", help="Env id to evaluate on, repeatable (default: the run's envs)."),
    episodes: int = typer.Option(64, "--episodes", "-n", min=1, help="Episodes per opponent (both seats equally)."),
    seed: int = typer.Option(10_000, "--seed", min=0, max=2**32 - 1, help="Seed of the evaluation episodes."),
    kw: list[str] = typer.Option([], "--kw", help="Env argument KEY=VALUE (JSON values), repeatable, for every --env (over a run's own arguments), as `arena play --kw`."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here (default for a run: RUN/eval-final.json); an earlier result there is kept: FILE-2.json, -3, ... is written instead."),
    constrain: bool | None = typer.Option(None, "--constrain/--no-constrain", help="Decode only legal actions (default: the run's setting; on for tiny)."),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, help="Sampling temperature (default: the run's; 1.0)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    chat_template: str | None = typer.Option(None, "--chat-template", help="chatml or a Jinja file, in place of the model's own template (a base model without one)."),
    template_kwargs: str | None = typer.Option(None, "--chat-template-kwargs", help="JSON object of the chat template's arguments, e.g. '{\"enable_thinking\": false}' (default: the run's)."),
) -> None:
    """Evaluate a model: win/draw/loss and invalid moves vs random and heuristic; Kuhn exploitability."""
    from arena.agents.hf import check_chat_template_kwargs
    from arena.agents.loading import read_chat_template
    from arena.config import json_object
    from arena.flags import load_yaml

    if chat_template is not None:
        read_chat_template(chat_template)  # a missing file: one line before anything loads
    if template_kwargs is not None:
        template_kwargs = check_chat_template_kwargs(json_object("--chat-template-kwargs", template_kwargs))

    if json_out is not None:
        _check_json_out(json_out)
    spec, run = resolve_target(target)
    if run is None and spec == target:  # before asking for --env: the target may be a typo
        from arena.agents.loading import _looks_like_path

        if _looks_like_path(target) and not Path(target).expanduser().exists():
            raise ArenaError(f"no such run or model folder: {target} (arena eval takes a run folder written by "
                             "`arena train --out`, a save_pretrained folder, a Hub id ORG/NAME, or tiny)")
        _check_hub_target(target)
    folder = json_out.parent if json_out is not None else run
    if folder is not None and folder.is_dir() and not os.access(folder, os.W_OK):  # else refused after the evaluation
        raise ArenaError(f"cannot write the results in {folder} (not writable): give --json FILE in a folder you can "
                         "write")
    cfg: dict[str, Any] = load_yaml(run / "config.yaml") if run is not None else {}
    env_ids = list(env) or list(cfg.get("env") or [])
    if not env_ids:
        raise ArenaError("give the env to evaluate on: --env ID (repeatable), e.g. --env spiral/KuhnPoker-v0")

    given = _ui()._parse_kwargs(kw)
    env_kwargs = {e: {**(cfg.get("env_kwargs") or {}).get(e, {}), **given} for e in env_ids}
    for env_id in env_ids:  # an unknown id or argument: one line before any model loads
        close = getattr(_ui()._make_env(env_id, env_kwargs[env_id]), "close", None)
        if callable(close):
            close()
    from arena.evaluate import check_episodes

    check_episodes(env_ids, episodes)
    decoding = run_decoding(run) if run is not None else {}
    if constrain is None:
        constrain = decoding.get("constrain", target == "tiny")
    temp = temperature if temperature is not None else decoding.get("temperature", 1.0)

    from arena.agents.hf import HFPolicy, load_model
    from arena.evaluate import DEALS, evaluate

    if device is None:
        import torch

        device = os.environ.get("ARENA_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    from arena.devices import check_device

    check_device(device)  # before the model loads: torch would end in a traceback there
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar around the results
    model, tokenizer = load_model(spec, device=device, flag="arena eval", chat_template=chat_template,
                                  generation_only=True)
    model.eval()
    if template_kwargs is None:
        template_kwargs = decoding.get("chat_template_kwargs") or {}
    policy = HFPolicy(model, tokenizer, name="model", max_new_tokens=decoding.get("max_new_tokens", 64),
                      temperature=temp, top_p=decoding.get("top_p", 1.0), top_k=decoding.get("top_k", 0),
                      min_p=decoding.get("min_p", 0.0), constrain=bool(constrain), seed=seed,
                      chat_template_kwargs=template_kwargs)
    _say(f"evaluating {spec} ({'constrained' if constrain else 'free'} decoding, temperature {temp:g}) "
         f"on {', '.join(env_ids)}: {episodes} episodes per opponent, each deal played from both seats (or, for an "
         "env played alone, per env)", err=True)
    with _ui()._progress(disable=not err_console.is_terminal) as bar:
        def progress(label: str, total: int) -> Any:
            task = bar.add_task(label, total=total)
            return lambda _episode: bar.advance(task)

        results = evaluate(policy, env_ids, episodes=episodes, seed=seed, env_kwargs=env_kwargs,
                           progress=progress)
    alone = any("/self/" in key for key in results)
    _print_results(results, f"{target}: {episodes} episodes per {'opponent or env' if alone else 'opponent'}")
    for env_id in env_ids:  # a Kuhn Poker of several hands (`--kw rounds=5`) had its exploitability left out unsaid
        short = env_id.split("/")[-1]
        if f"{short}/exploitability" not in results and _is_kuhn(env_id):
            _say(f"{short}: no exploitability: it is computed for one-hand Kuhn Poker (rounds 1, ante 1, chips "
                 "scoring: spiral/KuhnPoker-v0 as it is)", err=True)
    out = json_out if json_out is not None else (run / "eval-final.json" if run is not None else None)
    if out is not None:
        record = {"target": target, "model": spec, "run": str(run) if run else None, "envs": env_ids, "env_kwargs": env_kwargs,
                  "episodes": episodes, "deals": DEALS, "seed": seed, "constrain": bool(constrain), "temperature": temp,
                  **({"chat_template": chat_template} if chat_template is not None else {}),
                  **({"chat_template_kwargs": template_kwargs} if template_kwargs else {}), "results": results}
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            written = _write_new(out, json.dumps(record, indent=1, default=_nan_as_null) + "\n")
        except OSError as exc:  # a read-only run: the results are on screen, above
            raise ArenaError(f"cannot write the results to {out}: {exc.strerror or exc} (they are printed above); give "
                             "--json FILE in a folder you can write") from None
        kept = f" ({out} holds an earlier result, kept)" if written != out and json_out is not None else ""
        _say(f"results written to {written}{kept}")


def _check_json_out(path: Path) -> None:
    """`arena eval --json PATH`, checked before the evaluation runs: a folder, a path under a
    file, or a file that is not an earlier result of `arena eval` (a run's metrics.csv was
    replaced whole) is one line. An earlier result stays: the new one goes to `_write_new`'s
    free name."""
    if path.is_dir():
        raise ArenaError(f"--json {path} is a folder: give a file name, e.g. {path / 'eval.json'}")
    parent = file_in_the_way(path.parent)
    if parent is not None:
        raise ArenaError(f"--json {path}: {parent} is a file, not a folder")
    if path.exists():
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = None
        if not (isinstance(record, dict) and "results" in record and "target" in record):
            raise ArenaError(f"--json {path} exists and is not a result of arena eval: choose another file")


def _count(n: int, noun: str) -> str:
    """`1 step`, `2 steps`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _free_name(path: Path) -> Path:
    """`path`, or the first of `stem-2.suffix`, `stem-3.suffix`, ... that does not exist: an
    earlier evaluation of the run is kept, never overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def _write_new(path: Path, text: str) -> Path:
    """Write `text` to `path` or, when that exists, to the next free name (`_free_name`),
    created exclusively: an earlier result, or one another evaluation wrote meanwhile, is
    never replaced (`--json F` replaced F, written for another run). Returns the file."""
    while True:
        candidate = _free_name(path)
        try:
            with open(candidate, "x") as f:
                f.write(text)
            return candidate
        except FileExistsError:
            continue


def _nan_as_null(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else str(value)


def _is_kuhn(env_id: str) -> bool:
    from arena.envs.spiral.kuhn_poker import KuhnPoker
    from arena.registry import spec

    return issubclass(spec(env_id).load(), KuhnPoker)


def _mean_and_se(results: dict[str, Any], key: str) -> str:
    """`+0.125 ± 0.031`: the mean return and its standard error, where there is one."""
    mean, se = _num(results.get(f"{key}/mean_return"), "+.3f"), results.get(f"{key}/mean_return_se")
    if isinstance(se, (int, float)) and math.isfinite(se):
        # a standard error of 0 is exact, not missing: every deal (both seats' games) gave the same mean
        mean += f" ± {se:.3f}" if se > 0 else " (every deal alike)"
    return mean


def _print_results(results: dict[str, Any], title: str) -> None:
    """A table of win/draw/loss, invalid moves and mean return per env and opponent (or per
    role, `self (ROLE)`, for an env the model plays alone), then the Kuhn exploitability and strategy table of each env that has them."""
    ui = _ui()
    envs = list(dict.fromkeys(k.split("/")[0] for k in results))
    table = ui._table(title, ["env", "opponent", "win>", "draw>", "loss>", "invalid moves>", "mean return ± s.e.>"])
    rows = 0
    for short in envs:
        for opp in OPPONENTS:
            key = f"{short}/vs_{opp}"
            if f"{key}/win_rate" not in results:
                continue
            rows += 1
            ui._add_row(table, short, opp, *(_pct(results.get(f"{key}/{r}")) for r in RATES), _mean_and_se(results, key))
        roles = dict.fromkeys(k.split("/")[2] for k in results if k.startswith(f"{short}/self/") and k.count("/") == 3)
        for role in roles:  # an env without an opponent's seat: the model in every role
            key = f"{short}/self/{role}"
            rows += 1
            ui._add_row(table, short, f"self ({role})", *(_pct(results.get(f"{key}/{r}")) for r in RATES),
                        _mean_and_se(results, key))
    if rows:
        ui._print_table(table)
    for short in envs:
        value = results.get(f"{short}/exploitability")
        if value is None:
            continue
        _say(f"{short} exploitability: {_num(value, '.4f')} (uniform random {UNIFORM_EXPLOITABILITY:.4f}, Nash 0)")
        policy_table = results.get(f"{short}/policy_table")
        if isinstance(policy_table, dict):
            ui._print_table(_strategy_table(short, policy_table, results.get(f"{short}/action_gaps") or {}))


def _strategy_table(short: str, table: dict[str, float], gaps: dict[str, float]) -> Any:
    """The model's P(bet or call) per info state beside Nash's, and the self-play gap
    (`action_gaps`: chips the active move earns over the passive one against the model's own
    policy; its sign is where training pushes)."""
    from arena.envs.spiral.kuhn_poker import INFO_STATES, nash_policy

    ui = _ui()
    low, high = nash_policy(0.0), nash_policy(1 / 3)
    situation = {"": "player_0 first: P(bet)", "p": "player_1 after check: P(bet)",
                 "b": "player_1 facing bet: P(call)", "pb": "player_0 check, bet: P(call)"}
    out = ui._table(f"{short} strategy (card + history: p pass, b bet)",
                    ["info state", "situation", "model>", "Nash>", "self-play gap>"])
    for state in INFO_STATES:
        if state not in table:
            continue
        a, b = sorted((low[state], high[state]))
        nash = f"{a:.2f}" if abs(a - b) < 1e-9 else f"{a:.2f}-{b:.2f}"
        ui._add_row(out, state, situation[state[1:]], _num(table[state], ".3f"), nash, _num(gaps.get(state), "+.3f"))
    if gaps:
        from rich.text import Text

        out.caption = Text("self-play gap: chips the bet (or call) earns over the check (or fold) when both "
                           "seats play this policy; its sign is where self-play pushes")
    return out


def _pct(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


# -- arena report -----------------------------------------------------------------------------
@app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="A training run folder (metrics.csv, eval.jsonl)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for the PNG files (default: RUN/plots); a file there named as a plot that arena report did not write is refused."),
) -> None:
    """Plot a training run: reward per role, win/draw/loss/invalid rates, exploitability and eval win rates."""
    from arena.report import write_plots

    if not run.is_dir():
        raise ArenaError(f"{run}: no such run folder")
    written = write_plots(run, out if out is not None else run / "plots")
    if not written:
        raise ArenaError(f"{run}: metrics.csv and eval.jsonl hold no column arena plots")
    for path in written:
        _say(str(path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
