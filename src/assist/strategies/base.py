"""The strategy interface: what a sampling strategy decides, independent of any trainer.

A strategy answers four questions at fixed points of the training loop (DESIGN.md):

* ``plan_epoch``  which training indices this epoch visits, in which order;
* ``select``      which samples of a raw batch to train on (optionally with weights),
                  given scores from a no-grad forward when ``needs_scores`` is set;
* ``feedback``    what the training step saw (per-sample losses, correctness);
* ``state_dict``  everything needed to resume it.

It never touches a model or an optimizer: scoring over data-set indices goes through the
``StrategyContext`` the caller provides, so the same object serves the built-in trainer and a
user's own loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import torch

from assist.config import TrainConfig


@dataclass
class RawBatch:
    """A raw mini-batch: data-set indices (CPU int64) with the model-ready inputs and labels."""

    indices: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass
class Scores:
    """No-grad forward results for a batch: logits and per-sample cross-entropy losses."""

    logits: torch.Tensor
    losses: torch.Tensor


@dataclass
class Selection:
    """Positions (into the raw batch) to train on, with optional per-sample loss weights."""

    keep: torch.Tensor
    weights: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.keep.shape[0])


@dataclass
class StrategyContext:
    """What a strategy may use from its surroundings.

    ``score_indices(indices) -> (Scores, labels)`` runs a no-grad forward over training samples
    (the caller counts it as scoring cost). Generators are owned by the run.
    """

    num_samples: int
    batch_size: int
    epochs: int
    shuffle_generator: torch.Generator
    select_generator: torch.Generator
    score_indices: Callable[[torch.Tensor], tuple[Scores, torch.Tensor]]
    labels: Optional[torch.Tensor] = None
    extras: dict[str, Any] = field(default_factory=dict)


class Strategy:
    """Base class; the archetype behaviour (shuffle everything, train on everything)."""

    name: ClassVar[str] = "base"
    #: score raw batches with a no-grad forward before ``select``
    needs_scores: ClassVar[bool] = False
    #: rejects samples, so an epoch can be "starved" (see Trainer.end_of_epoch_policy)
    filters: ClassVar[bool] = False

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    # -- shape of the loop
    @property
    def accumulate(self) -> bool:
        """Gather selected samples into batches of exactly ``batch_size`` (Algorithm 10)."""
        return False

    def raw_batch_size(self) -> int:
        """Size of the next raw batch; the trainer asks before each one."""
        return self.config.batch_size

    @property
    def overflow(self) -> str:
        """What the accumulator does with accepted samples beyond a full batch
        (``discard``, the thesis, or ``carry``); the config's ``overflow`` by default."""
        return self.config.overflow

    # -- decisions
    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        return Selection(keep=torch.arange(len(batch), device=batch.y.device))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, correct: torch.Tensor) -> None:
        """Per-sample losses and correctness of the samples just trained on."""

    def feedback_logits(self, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """The training forward's logits (detached) of the samples just trained on."""

    # -- bookkeeping
    def epoch_metrics(self) -> dict[str, Any]:
        """Strategy-specific numbers for this epoch's metrics row (reset by the caller's cadence)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} has no state to load, got keys {sorted(state)}")
