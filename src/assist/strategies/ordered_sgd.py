"""Ordered SGD (Kawaguchi & Lu, AISTATS 2020): descend on the top-q losses of each batch.

``q`` starts at ``s`` (default: the batch size, as in the paper's s = 64 with batches of 64)
and, as in the authors' code, shrinks at an epoch start to s/2, s/4, s/8, s/16 once the
previous epoch's training accuracy has passed 80, 90, 95 and 99.5 %; it never grows back.

How it runs here: while ``q`` covers the whole batch the step is plain SGD (no scoring). Once
``q`` is smaller, each batch is scored by a no-grad forward and only its top-q samples are
forwarded and back-propagated for training. The paper instead forwards the whole batch with
gradients and back-propagates the top-q mean, so its cost per step is one full training
forward; here the cost is ``batch`` no-grad forwards plus ``q`` training passes, and both are
counted (``samples_scored``, ``samples_trained``). The authors also halve the learning rate at
the 99.5 % switch; strategies here never touch the optimizer, so that is left out.

The training accuracy that drives ``q`` is estimated during the epoch from every sample of
every batch: the scoring forward's predictions while scoring, the training forward's while
all samples are trained (the trained top-q alone would be biased towards mistakes).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field, field_validator

from assist.selection import top_k
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy

PAPER_THRESHOLDS = (0.80, 0.90, 0.95, 0.995)


class OrderedSGDOptions(StrategyOptions):
    s: Optional[int] = Field(default=None, gt=0, description="q at the start (losses trained per batch); "
                                                             "unset: the batch size")
    thresholds: tuple[float, ...] = Field(PAPER_THRESHOLDS, description="training accuracies that halve q, ascending")

    @field_validator("thresholds")
    @classmethod
    def _ascending_accuracies(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < t <= 1.0 for t in value) or list(value) != sorted(value):
            raise ValueError("must be ascending accuracies in (0, 1]")
        return value


def q_level(accuracy: float, thresholds: tuple[float, ...] = PAPER_THRESHOLDS) -> int:
    """How many accuracy thresholds ``accuracy`` has reached."""
    return sum(accuracy >= t for t in thresholds)


def q_for_level(s: int, level: int) -> int:
    """``s / 2**level``, at least 1 (s, s/2, s/4, s/8, s/16 for levels 0..4)."""
    return max(1, s // (2 ** level))


class OrderedSGDParams(ScoringKeys):
    strategy_options: OrderedSGDOptions = peer_options(OrderedSGDOptions)


@register_strategy
class OrderedSGD(Strategy):
    name = "ordered_sgd"
    Params = OrderedSGDParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.s = self.options.s or setup.batch_size
        self.level = 0
        self.correct = 0     # this epoch's accuracy estimate: correct / seen
        self.seen = 0
        self.last_accuracy: Optional[float] = None

    @property
    def q(self) -> int:
        return q_for_level(self.s, self.level)

    @property
    def scoring(self) -> bool:
        return self.q < self.setup.batch_size

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=self.scoring, scoring_mode=self.params.scoring_mode)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        if self.seen:
            self.last_accuracy = self.correct / self.seen
            self.level = max(self.level, q_level(self.last_accuracy, self.options.thresholds))
        self.correct = self.seen = 0
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        if scores is None:
            return Selection(keep=torch.arange(len(batch), device=batch.y.device))
        self.correct += int((scores.logits.argmax(1) == batch.y).sum())
        self.seen += len(batch)
        return Selection(keep=top_k(scores.losses, min(self.q, len(batch))))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                 labels: torch.Tensor) -> None:
        if not self.scoring:  # every sample is trained: the training forward is the estimate
            self.correct += int((logits.argmax(1) == labels).sum())
            self.seen += int(labels.numel())

    def epoch_metrics(self) -> dict[str, Any]:
        return {"osgd_q": self.q, "osgd_accuracy_estimate": self.correct / self.seen if self.seen else None}

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "correct": self.correct, "seen": self.seen,
                "last_accuracy": self.last_accuracy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.level, self.correct, self.seen = int(state["level"]), int(state["correct"]), int(state["seen"])
        self.last_accuracy = None if state["last_accuracy"] is None else float(state["last_accuracy"])
