"""Built-in callbacks: write the run directory, and report progress."""

from __future__ import annotations

import shutil
import sys
from typing import Any, Optional, TextIO

from assist.events import Callback
from assist.tracking import RunStore


class RunRecorder(Callback):
    """Appends each epoch's metrics to ``metrics.jsonl`` and writes ``summary.json`` at the end."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def on_train_start(self, trainer: Any, **info: Any) -> None:
        self.store.log(f"start: strategy={trainer.strategy.name} seed={trainer.config.rng_seed} "
                       f"augmentation={trainer.augmentation} device={trainer.device}")

    def on_epoch_end(self, trainer: Any, *, epoch: int, metrics: dict[str, Any], **info: Any) -> None:
        self.store.append_metrics(metrics)
        self.store.log(format_epoch(metrics, trainer.config.epochs))

    def on_train_end(self, trainer: Any, *, status: str, reason: Optional[str], **info: Any) -> None:
        self.store.write_summary(trainer.summary())
        self.store.log(f"end: {status}" + (f" ({reason})" if reason else ""))


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    train = row.get("train_accuracy")
    train_text = "  -   " if train is None else f"{100 * train:5.2f}%"
    return (f"epoch {row['epoch']}/{epochs}  steps {row['steps']:4d}  "
            f"train acc {train_text}  test acc {100 * row['test_accuracy']:5.2f}%  "
            f"test loss {row['test_loss_mean']:.4f}  {row['epoch_time_s']:.1f}s")


class ProgressReporter(Callback):
    """On a terminal: a bar through each epoch's plan (samples visited, optimizer steps so far),
    then through its evaluation (split, samples evaluated, its own timer), that gives way to one
    line per finished epoch, so the history stays on screen. Elsewhere (logs, CI): just the line
    per epoch."""

    def __init__(self, stream: Optional[TextIO] = None, label: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr   # looked up now, not at import
        self.label = label
        self.bar = None
        self.steps = 0
        self.tty = False
        self.desc = ""
        self.split: Optional[str] = None   # the split being evaluated, None while training

    def on_train_start(self, trainer: Any, **info: Any) -> None:
        self.tty = self.stream.isatty()
        done = int(trainer.state.epoch)
        if done:   # a resumed run says so, and from where
            prefix = f"[{self.label}] " if self.label else ""
            print(f"{prefix}resuming after epoch {done} (its checkpoint); {trainer.config.epochs - done} epoch(s) "
                  "to go", file=self.stream, flush=True)

    def on_epoch_planned(self, trainer: Any, *, epoch: int, plan: Any, **info: Any) -> None:
        if not self.tty:
            return
        from tqdm import tqdm

        self.steps = 0
        self.split = None
        self.desc = f"{self.label + ' ' if self.label else ''}epoch {epoch}/{trainer.config.epochs}"
        # a terminal that reports no size (a fresh pseudo-terminal) would get an empty bar
        size = shutil.get_terminal_size(fallback=(100, 24))
        self.bar = tqdm(total=int(len(plan)), desc=self.desc, unit="sample", unit_scale=True, leave=False,
                        file=self.stream, ncols=min(size.columns, 120), nrows=size.lines, mininterval=0.2)

    def on_step_end(self, trainer: Any, **info: Any) -> None:
        self.steps += 1

    def on_batch_end(self, trainer: Any, *, indices: Any, **info: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"steps {self.steps}", refresh=False)
            self.bar.update(int(len(indices)) if self.bar.n + int(len(indices)) <= self.bar.total else 0)

    def on_eval_batch(self, trainer: Any, *, split: str, done: int, total: int, **info: Any) -> None:
        """The bar restarts for each split's evaluation: ``... evaluating test`` and its samples."""
        if self.bar is None:
            return
        if split != self.split:
            self.split = split
            self.bar.set_description_str(f"{self.desc} evaluating {split}", refresh=False)
            self.bar.set_postfix_str(f"steps {self.steps}", refresh=False)
            self.bar.reset(total=total)   # also restarts the bar's timer
        self.bar.update(max(0, min(done, total) - self.bar.n))

    def on_epoch_end(self, trainer: Any, *, metrics: dict[str, Any], **info: Any) -> None:
        prefix = f"[{self.label}] " if self.label else ""
        line = prefix + format_epoch(metrics, trainer.config.epochs)
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(line, file=self.stream, flush=True)

    def on_train_end(self, trainer: Any, **info: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
