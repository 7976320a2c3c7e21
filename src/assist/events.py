"""Training events and the callback base class.

The loop, in the order events fire (one source of truth for hook names)::

    train_start
    for each epoch:
        epoch_start
        epoch_planned                  (strategy.plan_epoch chose the indices)
        for each raw batch:
            batch_start
            batch_scored               (only for strategies that score raw batches)
            batch_selected             (strategy.select decided)
            step_end                   (0..n optimizer steps: train step + feedback)
            batch_end
        epoch_trained                  (end-of-epoch accumulation policy applied)
        eval_batch                     (0..n: after each evaluation batch, per split: train, test)
        epoch_end                      (after evaluation, with the epoch's metrics row)
    train_end

Callbacks observe; they do not decide what is trained. A subclass that defines an
``on_*`` method that is not one of these hooks is rejected at class creation, so a
misspelt hook fails loudly instead of never running.
"""

from __future__ import annotations

from enum import Enum
from typing import Any


class Event(str, Enum):
    TRAIN_START = "train_start"
    EPOCH_START = "epoch_start"
    EPOCH_PLANNED = "epoch_planned"
    BATCH_START = "batch_start"
    BATCH_SCORED = "batch_scored"
    BATCH_SELECTED = "batch_selected"
    STEP_END = "step_end"
    BATCH_END = "batch_end"
    EPOCH_TRAINED = "epoch_trained"
    EVAL_BATCH = "eval_batch"
    EPOCH_END = "epoch_end"
    TRAIN_END = "train_end"

    @property
    def hook(self) -> str:
        return f"on_{self.value}"


_HOOKS = {event.hook for event in Event}


class Callback:
    """Observer of training events. Each hook receives the trainer and event details."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [name for name in vars(cls) if name.startswith("on_") and name not in _HOOKS]
        if unknown:
            raise TypeError(f"{cls.__name__} defines unknown hooks {unknown}; known: {sorted(_HOOKS)}")

    def on_train_start(self, trainer: Any, **info: Any) -> None: ...
    def on_epoch_start(self, trainer: Any, **info: Any) -> None: ...
    def on_epoch_planned(self, trainer: Any, **info: Any) -> None: ...
    def on_batch_start(self, trainer: Any, **info: Any) -> None: ...
    def on_batch_scored(self, trainer: Any, **info: Any) -> None: ...
    def on_batch_selected(self, trainer: Any, **info: Any) -> None: ...
    def on_step_end(self, trainer: Any, **info: Any) -> None: ...
    def on_batch_end(self, trainer: Any, **info: Any) -> None: ...
    def on_epoch_trained(self, trainer: Any, **info: Any) -> None: ...
    def on_eval_batch(self, trainer: Any, **info: Any) -> None: ...
    def on_epoch_end(self, trainer: Any, **info: Any) -> None: ...
    def on_train_end(self, trainer: Any, **info: Any) -> None: ...


class EventRecorder(Callback):
    """Records every event name in order (used by tests and for debugging)."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if name in _HOOKS:
            events = object.__getattribute__(self, "events")
            return lambda trainer, **info: events.append(name[3:])
        return object.__getattribute__(self, name)
