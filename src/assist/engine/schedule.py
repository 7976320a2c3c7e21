"""Learning-rate schedules as pure functions of the share of training done.

Strategies change how many optimizer steps an epoch has (filtering, pruning, InfoBatch's
annealing), so a schedule written in steps would end early or overshoot. Here a schedule is a
function of *progress*, the share of the run's planned passes over the data done when a step
happens: ``(epoch - 1 + planned samples visited this epoch / the epoch's plan) / epochs``. It
reaches 1 at the end of the last epoch whatever the strategy did, and the learning rate is set
before every optimizer step (docs/schedules.md). The thesis's exponential and multistep
schedules stay per-epoch PyTorch schedulers (``engine/optim.py``).
"""

from __future__ import annotations

import math
from typing import Any

STEP_SCHEDULES = ("cosine", "onecycle", "linear")


def warmup_factor(progress: float, warmup_epochs: float, epochs: int) -> float:
    """Linear warm-up from 0 over the first ``warmup_epochs`` epochs, then 1."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, progress * epochs / warmup_epochs)


def schedule_factor(kind: str, progress: float, *, base: float, floor: float, start: float = 0.04,
                    end: float = 1e-4, peak_at: float = 0.3) -> float:
    """The learning rate at ``progress`` in [0, 1] as a multiple of ``base``.

    cosine: from 1 down to ``floor / base`` along a half cosine; linear: straight down to
    ``floor / base``; onecycle: a half cosine up from ``start`` to 1 at ``peak_at``, then down
    to ``end`` (factors of the peak, which is ``base``)."""
    p = min(max(progress, 0.0), 1.0)
    low = floor / base
    if kind == "cosine":
        return low + (1 - low) * (1 + math.cos(math.pi * p)) / 2
    if kind == "linear":
        return 1 - (1 - low) * p
    if kind == "onecycle":
        if p < peak_at:
            return start + (1 - start) * (1 - math.cos(math.pi * p / peak_at)) / 2
        return end + (1 - end) * (1 + math.cos(math.pi * (p - peak_at) / (1 - peak_at))) / 2
    raise ValueError(f"unknown step schedule {kind!r}; available: {', '.join(STEP_SCHEDULES)}")


def learning_rate(config: Any, progress: float) -> float:
    """The learning rate of ``config`` at ``progress``: its step schedule (or the constant
    ``learning_rate``) times the warm-up."""
    factor = 1.0
    if config.lr_scheduler in STEP_SCHEDULES:
        factor = schedule_factor(config.lr_scheduler, progress, base=config.learning_rate,
                                 floor=config.min_learning_rate, start=config.onecycle_start_factor,
                                 end=config.onecycle_end_factor, peak_at=config.onecycle_peak_at)
    return config.learning_rate * factor * warmup_factor(progress, config.warmup_epochs, config.epochs)


def sets_lr_per_step(config: Any) -> bool:
    return config.lr_scheduler in STEP_SCHEDULES or config.warmup_epochs > 0
