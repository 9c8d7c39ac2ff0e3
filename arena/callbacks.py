"""The trainer's callbacks: its progress bar, its evaluations during training, and what it
writes beside TRL's logs (`metrics.csv`)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

if TYPE_CHECKING:
    from arena.trainer import SelfPlayTrainer



class ProgressBar(ProgressCallback):
    """transformers' progress bar, with a few numbers as its postfix instead of printing
    every step's whole log (all of it goes to metrics.csv and TensorBoard)."""

    KEYS = ("loss", "entropy")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.evaluation: dict[str, str] = {}  # the last evaluation's number, kept until the next

    def on_log(self, args, state, control, logs=None, **kwargs):
        bar = self.training_bar
        if not state.is_world_process_zero or bar is None or not logs:
            return
        post = {k: f"{logs[k]:.3g}" for k in self.KEYS if isinstance(logs.get(k), (int, float))}
        evaluated = False
        for key, value in logs.items():
            if key.endswith("/exploitability") and isinstance(value, (int, float)):
                self.evaluation, evaluated = {"exploitability": f"{value:.3f}"}, True
        if post or evaluated:
            # a step's numbers show with the next step's tick (one redraw a step), an
            # evaluation's at once: it comes every `eval_every` steps and is what one watches
            bar.set_postfix({**post, **self.evaluation}, refresh=evaluated)


class ArenaCallback(TrainerCallback):
    """Evaluates the model during training, and writes every log line into `metrics.csv`
    (process 0 of a data-parallel run; the others are given no `evaluate_fn`). arena's state
    goes into each checkpoint with it (`CheckpointState._save_checkpoint`)."""

    def __init__(self, trainer: SelfPlayTrainer):
        self.trainer = trainer
        self.csv = trainer.run_dir / "metrics.csv"
        self._no_row_at: int | None = None  # a step whose log gets no metrics.csv row (`on_train_begin`)

    def on_train_begin(self, args, state, control, **kwargs):
        """Evaluate the starting model (step 0, or the checkpoint's step of a resumed run,
        unless its last session evaluated it the same way), logged at that step."""
        trainer = self.trainer
        every = trainer.config.eval_every
        if trainer.evaluate_fn is not None and every and state.global_step % every == 0:
            metrics = trainer.run_evaluation(final=state.global_step >= state.max_steps, reuse=True)
            if metrics:
                # a resumed run's metrics.csv has the row of this step already: the evaluation
                # is in eval.jsonl (and TensorBoard), not in a second row of the step
                self._no_row_at = state.global_step if _steps_in(self.csv) & {state.global_step} else None
                trainer.log(metrics)
                self._no_row_at = None
        return control

    def on_step_end(self, args, state, control, **kwargs):
        """Evaluate the weights of every `eval_every`-th step and of the last one, after the
        step's update and before its log (which carries the results) and checkpoint."""
        trainer = self.trainer
        every = trainer.config.eval_every
        final = state.global_step >= state.max_steps
        if trainer.evaluate_fn is not None and every and (final or state.global_step % every == 0):
            for name, value in trainer.run_evaluation(final=final).items():
                trainer._metrics["train"][name].append(value)  # TRL's log averages and clears them
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return control
        # the evaluation's `eval_<name>` (named so for transformers' integrations) as `eval/<name>`
        logs = {("eval/" + k[5:] if k.startswith("eval_") else k): v for k, v in logs.items()}
        if "loss" not in logs and not any(k.startswith(("rollout/", "eval/")) for k in logs):
            return control
        if state.global_step == self._no_row_at:
            return control
        row = {"step": state.global_step, "minutes": round(self.trainer.minutes(), 4), **logs}
        append_csv(self.csv, row)
        return control


def _steps_in(path: Path) -> set[int]:
    """The steps of the rows of a metrics.csv (none when it is missing)."""
    import csv

    if not path.is_file():
        return set()
    with open(path, newline="") as f:
        return {int(float(r["step"])) for r in csv.DictReader(f) if (r.get("step") or "").replace(".", "", 1).isdigit()}


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append a row; a new column rewrites the file with the wider header (old rows keep
    their values, new cells empty)."""
    import csv

    header: list[str] = []
    rows: list[dict[str, Any]] = []
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            if any(k not in header for k in row):
                rows = list(reader)
    new = [k for k in row if k not in header]
    clean = {k: ("" if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    if new or not header:
        header = header + new
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
            writer.writerow(clean)
        os.replace(tmp, path)
    else:
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=header).writerow(clean)
