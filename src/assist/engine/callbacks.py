"""Built-in callbacks: write the run directory, and report progress."""

from __future__ import annotations

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
    """A progress bar on a terminal; one plain line per epoch otherwise (logs, CI)."""

    def __init__(self, stream: TextIO = sys.stderr, label: str = "") -> None:
        self.stream = stream
        self.label = label
        self.bar = None

    def on_train_start(self, trainer: Any, **info: Any) -> None:
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=trainer.config.epochs, initial=trainer.state.epoch, desc=self.label or "train",
                            unit="epoch", file=self.stream, leave=False)

    def on_epoch_end(self, trainer: Any, *, metrics: dict[str, Any], **info: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(test_acc=f"{100 * metrics['test_accuracy']:.2f}%", steps=metrics["steps"])
        else:
            prefix = f"[{self.label}] " if self.label else ""
            print(prefix + format_epoch(metrics, trainer.config.epochs), file=self.stream, flush=True)

    def on_train_end(self, trainer: Any, **info: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
