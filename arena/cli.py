"""The `arena` command: list envs, play and replay episodes, manage the sandbox.

    arena envs
    arena play spiral/TicTacToe-v0 --agents random,heuristic --episodes 100 --out runs/ttt
    arena replay runs/ttt --episode 3
    arena replay runs/ttt --verify

Bad input never ends in a traceback: a usage error (unknown option or command, missing
argument, `-n 0`) prints the usage and the message, any other mistake one line that names
the fix; both exit 2. Bare `arena` (or `arena sandbox`) prints help and exits 0. Text from
envs, episodes and models is printed literally (Rich `Text`, never markup).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

import arena
from arena.errors import ArenaError, Terminated, interrupt_exit_code

#: Width of `--help` and of tables when they go to a pipe or file and no width is set: at
#: rich's 80 columns typer cut option names and defaults with an ellipsis
#: (`--chat-template-…`), and `arena train --help`'s text column was 20 characters wide.
PIPED_WIDTH = 120


def _piped() -> bool:
    """Output to a pipe or file, with no width set for it."""
    return not sys.stdout.isatty() and not (os.environ.get("COLUMNS") or os.environ.get("TERMINAL_WIDTH"))


def _piped_help_width() -> None:
    import typer.rich_utils

    if _piped():
        typer.rich_utils.MAX_WIDTH = PIPED_WIDTH


_piped_help_width()


class _Interrupted(Exception):
    """A Ctrl-C or SIGTERM (`Terminated`) that no command caught, carried past typer: typer
    0.29 turns it into a silent exit 130 (an interrupted `arena eval` said nothing, and
    SIGTERM's 143 was lost), older typer into "Aborted!"."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__()
        self.interrupt = interrupt


class _Group(typer.core.TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted(exc) from exc


app = typer.Typer(
    name="arena",
    cls=_Group,
    help="Multi-role self-play RL of one language model: train, eval, report; envs, play, replay, check, sandbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # -h as `arena train -h` takes it
)
console = Console()
err_console = Console(stderr=True)


def _mount_sandbox() -> None:
    try:
        from arena.sandbox.cli import app as sandbox_app
    except ImportError:  # the sandbox CLI is optional while the package is being built
        return
    app.add_typer(sandbox_app, name="sandbox", help="Build, check, clean and try the code sandbox.")


def _parse_kwargs(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ArenaError(f"--kw {item!r}: write env arguments as KEY=VALUE, e.g. --kw rounds=5")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _make_env(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    """`arena.make`, whose argument errors say how arguments are given on the command line."""
    arena.spec(env_id).load()  # an unknown id, or an entry point that does not load, is its own error
    try:
        return arena.make(env_id, **env_kwargs)
    except ArenaError as exc:
        raise ArenaError(f"{exc} (env arguments are set with --kw KEY=VALUE, JSON values; "
                         f"`arena envs` shows the defaults)") from exc


def _table(title: str, columns: list[str]) -> Table:
    """A table whose text is never read as markup. A column name ending in `~` may wrap
    (long free text); the others (ids, numbers) never wrap nor get cut; `>` right-aligns."""
    table = Table(title=Text(title))
    for col in columns:
        name = col.rstrip("~>")
        if col.endswith("~"):
            table.add_column(Text(name), overflow="fold")
        else:
            table.add_column(Text(name), no_wrap=True, overflow="ignore", justify="right" if col.endswith(">") else "left")
    return table


def _add_row(table: Table, *cells: str) -> None:
    table.add_row(*(Text(str(cell)) for cell in cells))


def _print_table(table: Table) -> None:
    """Print `table`, wider than the terminal (or than `PIPED_WIDTH` on a pipe) when its ids
    and numbers need it: the terminal may wrap the line, but nothing is cut."""
    _print_wide(table, Console(file=console.file, width=PIPED_WIDTH, no_color=True) if _piped() else console)


def _print_wide(table: Table, out: Console) -> None:
    needed = len(table.columns) + 1  # the vertical borders
    for column in table.columns:
        texts = [column.header, *column.cells]
        if column.no_wrap:  # its widest line (a cell may hold several: one default each)
            width = max((cell_len(line) for t in texts for line in str(t).splitlines()), default=1)
        else:  # a wrapping column needs its longest word
            width = min(max((cell_len(word) for t in texts for word in str(t).split()), default=1), 12)
        needed += width + 2  # the padding
    if needed <= out.width:
        out.print(table)
        return
    wide = Console(file=out.file, width=needed, force_terminal=out.is_terminal,
                   color_system=out.color_system, no_color=out.no_color)  # type: ignore[arg-type]
    wide.print(table)


@app.command("envs")
def envs_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List registered envs: id, roles, protocol graph."""
    from arena.protocol import graph_text

    rows = []
    for env_id, spec in arena.registry().items():
        try:
            cls = spec.load()
            rows.append({"id": env_id, "roles": [r.name for r in cls.roles], "protocol": graph_text(cls.protocol()),
                         "kwargs": spec.kwargs, "description": spec.summary()})
        except ArenaError as exc:
            rows.append({"id": env_id, "roles": [], "protocol": "", "kwargs": spec.kwargs, "description": f"[broken] {exc}"})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = _table(f"arena envs ({len(rows)})", ["id", "roles~", "protocol graph~", "defaults", "description~"])
    for row in rows:
        # one per line, never split: `max_turns=1` / `0` read as max_turns=1
        defaults = "\n".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in row["kwargs"].items())
        _add_row(table, row["id"], ", ".join(row["roles"]), row["protocol"], defaults, row["description"])
    _print_table(table)


@app.command("play")
def play_cmd(
    env_id: str = typer.Argument(..., metavar="ENV_ID", help="Env id, e.g. spiral/TicTacToe-v0 (see `arena envs`)."),
    agents: str = typer.Option("random", "--agents", "-a", help="Comma-separated agents, one per role in order, or one for every role: random, heuristic, human, scripted (azr/*, spice/*: scripted:noisy=0.5:verifier=yes), tiny, hf:PATH, vllm:PATH, openai:MODEL@URL."),
    episodes: int = typer.Option(10, "--episodes", "-n", min=1, help="Number of episodes."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder for episodes.jsonl (default: none, nothing stored). An existing run is refused unless --append or --overwrite."),
    append: bool = typer.Option(False, "--append", help="Add episodes to the existing run in --out: same env, --kw and schema (checked); episode indices and seeds continue."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the existing run's episodes.jsonl and run.json in --out (and env-state/, when run.json is arena's), then start afresh."),
    seed: int = typer.Option(0, "--seed", min=0, help="Episode i is reset with seed SEED+i."),
    concurrency: int = typer.Option(64, "--concurrency", min=1, help="Episodes in flight at once."),
    kw: list[str] = typer.Option([], "--kw", help="Env argument KEY=VALUE (JSON values), repeatable."),
    swap_seats: bool = typer.Option(False, "--swap-seats", help="Rotate the seating every episode so each agent plays each seat equally often."),
    duplicate: bool = typer.Option(False, "--duplicate", help="With --swap-seats: play each deal from every seat (episode i is reset with seed SEED + i // roles), so the env's chance (cards, dice) cancels out of the per-agent results."),
) -> None:
    """Play episodes between agents; store them and print per-seat (and per-agent) results."""
    from arena.agents import make_agent
    from arena.env_state import FoldAsStored, episode_fold
    from arena.metrics import summarize, summarize_agents
    from arena.rollout import play, run_env_kwargs
    from arena.run_info import ENV_STATE_DIR
    from arena.store import open_run, remove_unstored_run

    env_kwargs = _parse_kwargs(kw)
    spec = arena.spec(env_id)
    env = _make_env(env_id, env_kwargs)
    names = _agent_names(agents)
    if len(names) not in (1, len(env.possible_agents)):
        raise ArenaError(f"--agents gives {len(names)} agents for {len(env.possible_agents)} roles "
                         f"({', '.join(env.possible_agents)}); give one per role, or one for all")
    policies = [make_agent(name, seed=seed + 7919 * i) for i, name in enumerate(names)]
    for i, policy in enumerate(policies):  # two agents of one kind stay two agents in the tables
        note_for = getattr(policy, "note_for", None)  # options the env has no use for (`scripted:noisy=0.5` on a game)
        note = note_for(env) if callable(note_for) else None
        if note:
            err_console.print(f"warning: {note}", markup=False, highlight=False, soft_wrap=True)
        if names.count(names[i]) > 1:
            policy.name = f"{names[i]}#{i + 1}"
    if duplicate and not swap_seats:
        raise ArenaError("--duplicate plays each deal from every seat: add --swap-seats")
    if duplicate:
        from arena.evaluate import check_deals

        check_deals(episodes, len(env.possible_agents))
    if append and overwrite:
        raise ArenaError("--append and --overwrite exclude each other: give one")
    if (append or overwrite) and out is None:
        raise ArenaError(f"--{'append' if append else 'overwrite'} needs --out RUN")
    writer = None
    made = out is not None and not out.exists()
    if out is not None:
        mode = "append" if append else "overwrite" if overwrite else "new"
        writer = open_run(out, mode=mode, info={
            "command": "play", "env_id": env_id,
            "env_kwargs": spec.load().resolve_kwargs({**spec.kwargs, **env_kwargs}),  # resolved as the episodes record them
            "agents": [p.name for p in policies], "episodes": episodes, "seed": seed, "swap_seats": swap_seats,
            "duplicate": len(env.possible_agents) if duplicate else 0,  # seats each deal is played from
            "concurrency": concurrency, "arena_version": arena.__version__})
        if writer.moved_torn is not None:
            err_console.print(f"note: the torn last line of {writer.path} (a killed writer's) was moved to "
                              f"{writer.moved_torn}", markup=False, highlight=False, soft_wrap=True)
    finished: list[Any] = []

    def on_episode(ep: Any) -> None:
        finished.append(ep)
        progress.advance(task)

    interactive = "human" in names
    progress = _progress(disable=interactive)
    status = "failed"
    stored: FoldAsStored | None = None
    try:
        with progress:
            task = progress.add_task(env_id, total=episodes)
            # state that lasts the run (AZR's task buffer): in the run's env-state/, or in memory
            run_kwargs = run_env_kwargs([env_id], [env_kwargs], out.name if out else f"play-{uuid.uuid4().hex}",
                                        out / ENV_STATE_DIR if out else None)[0]
            if writer is not None:  # each stored episode folded once, an interrupted run's too
                stored = FoldAsStored(writer, episode_fold([env_id], [run_kwargs]))
            played = play(env_id, policies, episodes, seed=seed, env_kwargs=run_kwargs,
                          concurrency=1 if interactive else concurrency, writer=stored,
                          on_episode=on_episode, run_name=out.name if out else "",
                          swap_seats=swap_seats, duplicate=duplicate, start_index=writer.next_index if writer else 0,
                          run_state=writer is None)
        status = "complete"
    except KeyboardInterrupt as exc:
        status = "interrupted"
        exit_code = interrupt_exit_code(exc)
        played = sorted(finished, key=lambda ep: ep.metadata.get("index", 0))
        if stored is not None:  # `play` stores in index order: episodes past one still playing wait in memory
            stored.store_rest(played)
    finally:
        if writer is not None:
            writer.close()
            if status == "failed" and mode == "new" and writer.count == 0:  # no run to refuse the corrected command
                remove_unstored_run(out, remove_dir=made)
            else:
                writer.finish(status)
    if status == "interrupted":
        stored = f"; {writer.count} stored in {out}, status interrupted in run.json" if writer is not None else ""
        err_console.print(f"interrupted after {len(played)} of {episodes} episodes{stored}; summary so far:",
                          markup=False, highlight=False, soft_wrap=True)
    if interactive:
        for ep in played:
            _show_final(ep)
    summary = summarize(played)
    title = f"{env_id}: {episodes} episodes" if status == "complete" else f"{env_id}: {len(played)} of {episodes} episodes (interrupted)"
    # an env without winners (AZR, SPICE: roles scored on their own) counts results by the
    # return's sign (`arena.metrics.result`), and its columns say so: a challenger "winning"
    # 78% of SPICE episodes had its questions solved every time, its worst outcome
    signs = ("return > 0>", "= 0>", "< 0>") if played and not any("winner" in (ep.outcome or {}) for ep in played) else None
    outcomes = list(signs or ("win>", "draw>", "loss>"))
    table = _table(title, ["seat" if len(env.possible_agents) == 2 else "role", "agent", *outcomes, "invalid moves>",
                           "mean return>"])
    for role, s in summary.items():
        _add_row(table, role, s["agents"], f"{s['win_rate']:.1%}", f"{s['draw_rate']:.1%}", f"{s['loss_rate']:.1%}",
                 f"{s['invalid_move_rate']:.1%}", f"{s['mean_return']:+.3f}")
    _print_table(table)
    if swap_seats and len(names) > 1:
        seats = len(env.possible_agents)
        table = _table("per agent, over both seats" if seats == 2 else f"per agent, over all {seats} roles",
                       ["agent", "episodes>", *outcomes, "invalid moves>", "mean return>"])
        for name, s in summarize_agents(played).items():
            _add_row(table, name, str(s["episodes"]), f"{s['win_rate']:.1%}", f"{s['draw_rate']:.1%}", f"{s['loss_rate']:.1%}",
                     f"{s['invalid_move_rate']:.1%}", f"{s['mean_return']:+.3f}")
        _print_table(table)
    env_summary = getattr(getattr(env, "unwrapped", env), "summarize", None)
    if callable(env_summary) and played:
        _print_summary(env_id, env_summary(played))
    if out is not None:
        console.print(f"episodes written to {out / 'episodes.jsonl'}; replay with `arena replay {out}`",
                      markup=False, highlight=False, soft_wrap=True)
    if status == "interrupted":
        raise typer.Exit(exit_code)


def _agent_names(agents: str) -> list[str]:
    """--agents as names; an empty entry (`,heuristic`, `random,,heuristic`) is refused, not dropped."""
    names = [a.strip() for a in agents.split(",")]
    if not any(names):
        raise ArenaError("--agents is empty: give e.g. --agents random,heuristic")
    if not all(names):
        raise ArenaError(f"--agents {agents!r}: entry {names.index('') + 1} is empty; give one agent per role, "
                         "comma-separated, e.g. --agents random,heuristic")
    return names


def _progress(*, disable: bool) -> Progress:
    """arena's progress bar, on stderr (stdout stays the command's output)."""
    return Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=disable)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _print_summary(env_id: str, summary: dict[str, Any]) -> None:
    """An env's own play summary (its optional `summarize(episodes)`): scalars on one line,
    each dict of dicts a table (one row per key), each dict of scalars a two-column table."""
    scalars = [f"{key.replace('_', ' ')} {_cell(v)}" for key, v in summary.items() if not isinstance(v, dict)]
    if scalars:
        console.print(f"{env_id}: " + ", ".join(scalars), markup=False, highlight=False, soft_wrap=True)
    for key, value in summary.items():
        if not isinstance(value, dict) or not value:
            continue
        title = f"{env_id}: {key.replace('_', ' ')}"
        if all(isinstance(v, dict) for v in value.values()):
            columns = list(dict.fromkeys(c for row in value.values() for c in row))
            table = _table(title, ["", *(c.replace("_", " ") + ("~" if c in ("example", "reason") else ">") for c in columns)])
            for name, row in value.items():
                _add_row(table, _cell(name), *(_cell(row.get(c)) for c in columns))
        else:
            table = _table(title, ["", "value>"])
            for name, v in value.items():
                _add_row(table, _cell(name), _cell(v))
        _print_table(table)


def _show_final(episode: Any) -> None:
    """After a human's game: the final board (observation) of the human's seat, the outcome
    and the returns, rebuilt by replaying the recorded completions."""
    from rich.panel import Panel

    from arena.replay import replay_env

    env = replay_env(episode)
    for turn in episode.turns:
        if not env.agents or env.done:
            break
        env.step(turn.completion)
    role = next((r for r, a in episode.agents.items() if a == "human"), env.possible_agents[0])
    console.print(Panel(Text(str(env.observe(role))), title=Text(f"game over — you were {role}")))
    outcome = dict(episode.outcome)
    reason = outcome.pop("reason", "?")
    winner = outcome.pop("winner", None) if "winner" in outcome else "-"
    returns = ", ".join(f"{r} {v:+.3f}" for r, v in episode.rewards.items())
    console.print(Text(f"outcome: {reason}; winner: {winner or 'none (draw)'}; returns: {returns}"), soft_wrap=True)


@app.command("replay")
def replay_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help="Run folder (or its episodes.jsonl)."),
    episode: int | None = typer.Option(None, "--episode", "-e", min=0, help="Only the episode with this index (as `arena play` numbered it, from 0)."),
    episode_id: str | None = typer.Option(None, "--id", help="Only the episode with this id (e.g. kuhn-3)."),
    step: int | None = typer.Option(None, "--step", help="Only the episodes a training run played at this step (-1: the last)."),
    verify_: bool = typer.Option(False, "--verify", help="Re-simulate each episode from its seed and actions; exit 1 on any mismatch."),
    full: bool = typer.Option(False, "--full", help="Do not clip long observations and completions."),
) -> None:
    """Render stored episodes turn by turn, or verify that they replay exactly."""
    from arena.replay import render, select_lazily
    from arena.store import count_lines, episodes_path, read_episodes, read_run_info

    skipped: list[int] = []
    path = episodes_path(run)
    every = read_episodes(path, skipped=skipped)  # read as shown: `arena replay RUN | head` starts at once
    first = next(every, None)
    if first is None:
        _note_torn(path, skipped)
        status = read_run_info(path.parent).get("status") if path.parent.is_dir() else None
        raise ArenaError(f"{path} holds no episodes{f' (run status: {status})' if status else ''}: "
                         "play some with `arena play ENV --out RUN`")
    episodes = select_lazily(itertools.chain([first], every), episode, episode_id, step)
    if not verify_:
        for ep in episodes:
            render(ep, console, full=full)
        _note_torn(path, skipped)
        return
    total = len(episodes) if isinstance(episodes, list) else count_lines(path)
    checked, bad, problems = _verify_all(episodes, total)
    _note_torn(path, skipped)
    for m in problems[:50]:
        console.print(Text.assemble(("mismatch", "red"), " ", str(m)), soft_wrap=True)  # recorded text is never markup
    if len(problems) > 50:
        console.print(f"... and {len(problems) - 50} more")
    verdict = "[green]all replay exactly[/]" if not bad else f"[red]{bad} differ[/]"
    console.print(f"verified {checked} episodes: {verdict}")
    if bad:
        raise typer.Exit(1)


def _note_torn(path: Path, skipped: list[int]) -> None:
    if skipped:
        err_console.print(f"note: skipped the torn last line {skipped[0]} of {path} (a writer was killed, or is still "
                          "writing it); the next `arena play --append` (of a training run: `arena train --resume`) cuts it off", markup=False, highlight=False, soft_wrap=True)


def _verify_all(episodes: Iterable[Any], total: int) -> tuple[int, int, list[Any]]:
    """Verify every episode under a progress bar (on a terminal); (episodes, how many
    differ, their mismatches). An env that cannot be loaded (its module not importable from
    here) is one line naming it, exit 2: not a `cannot replay` mismatch in every episode."""
    from arena.registry import spec
    from arena.replay import verify

    loaded: set[str] = set()
    checked = bad = 0
    problems: list[Any] = []
    with _progress(disable=not err_console.is_terminal) as progress:
        task = progress.add_task("verify", total=total)
        for ep in episodes:
            if ep.env_id not in loaded:
                spec(ep.env_id).load()
                loaded.add(ep.env_id)
            mismatches = verify(ep)
            checked += 1
            bad += bool(mismatches)
            problems.extend(mismatches)
            progress.advance(task)
        progress.update(task, total=checked)  # the count was of lines: a torn or blank one is no episode
    return checked, bad, problems


@app.command("check")
def check_cmd(
    env_id: str = typer.Argument(..., metavar="ENV_ID", help="Env id to check (see `arena envs`)."),
    fuzz_steps: int = typer.Option(3000, "--fuzz-steps", min=0, help="Random action strings to send."),
    kw: list[str] = typer.Option([], "--kw", help="Env argument KEY=VALUE (JSON values), repeatable."),
) -> None:
    """Check an env against the contract: roles, manual, PettingZoo api_test, own moves, fuzz, replay.

    Every check runs, even after a failure; a failure shows its exception and location.
    Exit 0 when all pass, 1 when any fails.
    """
    from arena import checker

    env_kwargs = _parse_kwargs(kw)
    _make_env(env_id, env_kwargs)  # bad id or arguments: one line, exit 2

    def show(result: checker.CheckResult) -> None:
        style = {"ok": "green", "FAIL": "red"}.get(result.status, "yellow")
        line = Text.assemble((f"{result.status:<6}", style), result.name)
        if result.detail:
            line.append(f": {result.detail}")
        console.print(line, soft_wrap=True)

    results = checker.run_checks(env_id, fuzz_steps=fuzz_steps, on_result=show, **env_kwargs)
    failed = [r for r in results if r.status == "FAIL"]
    if failed:
        console.print(Text(f"{env_id}: {len(failed)} of {len(results)} checks failed"), soft_wrap=True)
        raise typer.Exit(1)
    console.print(Text(f"{env_id}: all checks passed"), soft_wrap=True)


@app.command("version")
def version_cmd() -> None:
    """Print arena's version."""
    print(f"arena {arena.__version__}")


def _version_callback(value: bool) -> None:
    if value:
        print(f"arena {arena.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version_callback,
                                 help="Print arena's version and exit."),
) -> None:
    """Multi-role self-play RL of one language model: train, eval, report; envs, play, replay, check, sandbox."""
    from arena.data_parallel import process_count

    # launched as several processes (torchrun, accelerate launch), each would play, evaluate or
    # write the same thing: twice the episodes in one store, eval-final.json and eval-final-2.json
    if process_count() > 1 and ctx.invoked_subcommand not in (None, "train"):
        raise ArenaError(f"arena {ctx.invoked_subcommand} runs in one process ({process_count()} were launched): "
                         "only `arena train` runs data-parallel; run it without torchrun or accelerate launch")


_mount_sandbox()
app.add_typer(__import__("arena.train_cli").train_cli.app)  # train, eval, report (arena/train_cli.py)


def _is_usage_exception(exc: BaseException) -> bool:
    """True for click's `ClickException` family, whichever click raised it.

    typer >= 0.23 carries its own copy of click (`typer._click`) next to any installed
    `click`: the two `ClickException` classes differ, so the test goes by the class names
    in the exception's MRO, and works with either.
    """
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__) and hasattr(exc, "show")


def _show_usage_exception(exc: Any, quiet: bool = False) -> int:
    """Print a click usage exception the way click does (unless `quiet`); return its exit code.

    A command group run without a subcommand (bare `arena`, `arena sandbox`) prints its
    help on stdout and exits 0, as `--help` does (older click did the same). The exception
    was built from `ctx.get_help()`: typer's rich help printed itself then and left the
    message empty, plain click's returned the text, which is the message. Printing
    `get_help()` again showed typer's help twice.
    """
    if type(exc).__name__ == "NoArgsIsHelpError":
        help_text = getattr(exc, "message", "")
        if help_text and not quiet:
            print(help_text)
        return 0
    if not quiet:
        exc.show()
        hint = _positional_env_hint(exc)
        if hint:
            err_console.print(hint, markup=False, highlight=False, soft_wrap=True)
    return int(getattr(exc, "exit_code", 2))


def _positional_env_hint(exc: Any) -> str | None:
    """`arena play --env ID` (as `arena train` and `arena eval` take it): click suggested
    --agents or --append. The commands whose env id is their argument say so."""
    ctx = getattr(exc, "ctx", None)
    name = getattr(getattr(ctx, "command", None), "name", None)
    if name in ("play", "check") and getattr(exc, "option_name", None) == "--env":
        return f"hint: the env id is arena {name}'s argument, not a flag: arena {name} spiral/TicTacToe-v0 ..."
    return None


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _terminate_like_ctrl_c() -> None:
    """Turn SIGTERM into `Terminated` (a KeyboardInterrupt) so that `kill PID` stops a command
    as cleanly as Ctrl-C: stored episodes closed, `run.json` marked, the resume command printed.
    Only where SIGTERM still has its default action (an embedding program's handler stays)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)


#: How long a process launched as one of several waits, when another prints their common
#: error, before it exits (`_wait_for_the_one_who_says_it`).
QUIET_EXIT_WAIT_S = 10.0


def _wait_for_the_one_who_says_it() -> None:
    """A process that leaves an error for another to print waits for it (killed silently by
    torchrun once that one exits, or after `QUIET_EXIT_WAIT_S`): torchrun stops every process
    as soon as one fails, so a quiet one exiting first once stopped the other before it had
    printed, and the user saw no error at all."""
    import signal
    import threading
    import time

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # torchrun's stop: no "terminated", no traceback
    time.sleep(QUIET_EXIT_WAIT_S)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `arena` command.

    Exit codes: 0 success (and bare `arena`, which prints help); 1 a command's own failure
    (e.g. `replay --verify` found a difference); 2 bad input: a usage error (usage and
    message, as click prints them) or an `ArenaError` (one line that names the fix);
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM, handled like Ctrl-C).
    """
    _terminate_like_ctrl_c()
    try:
        code = app(args=argv, prog_name="arena", standalone_mode=False)  # click returns typer.Exit's code here
        if isinstance(code, int) and code:
            sys.exit(code)
    except ArenaError as exc:
        from arena.data_parallel import said_by_process_zero

        if said_by_process_zero(exc):  # under torchrun: once, not once per process
            _wait_for_the_one_who_says_it()
        else:
            err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)), soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(130)
    except (KeyboardInterrupt, _Interrupted) as exc:
        interrupt = exc.interrupt if isinstance(exc, _Interrupted) else exc
        err_console.print("terminated" if isinstance(interrupt, Terminated) else "interrupted", markup=False)
        sys.exit(interrupt_exit_code(interrupt))
    except Exception as exc:
        if _is_usage_exception(exc):
            from arena.data_parallel import said_by_process_zero

            quiet = said_by_process_zero(exc)  # under torchrun: once
            code = _show_usage_exception(exc, quiet=quiet)
            if quiet:
                _wait_for_the_one_who_says_it()
            sys.exit(code)
        if type(exc).__name__ in ("Exit", "Abort"):  # click's own, where it differs from typer's
            sys.exit(getattr(exc, "exit_code", 130))
        raise


if __name__ == "__main__":
    main()
