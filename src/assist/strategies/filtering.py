"""The thesis's accuracy-filtering strategies (Algorithms 8, 9 and 10, and both combined).

One ``FilterRule`` (filter, then an optional loss selector) is applied either to the whole
shuffled data set at each epoch start (epochwise) or to every raw batch (batchwise).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from assist.config import TrainConfig
from assist.selection import filter_then_select, misclassified_mask, resolve_count, soft_accuracy_mask
from assist.strategies import register_strategy
from assist.strategies.base import RawBatch, Scores, Selection, Strategy, StrategyContext


class FilterRule:
    """Accuracy filter (hard / soft / none) followed by an optional loss selector."""

    def __init__(self, config: TrainConfig) -> None:
        self.filter = config.filter
        self.margin = config.soft_margin
        self.selector = config.selector
        # a whole number counts samples, a value below 1 is a fraction of the pool
        self.k = None if config.select_k is None else (int(config.select_k) if config.select_k >= 1 else config.select_k)
        self.q = config.select_q
        self.power = config.select_p
        self.buckets = config.select_buckets
        self.fill_random = config.fill_random
        if self.filter == "none" and self.selector is None:
            raise ValueError("filter=none needs a selector (otherwise nothing is filtered)")
        if self.selector in ("top_k", "loss_weighted", "q_split") and self.k is None:
            raise ValueError(f"selector={self.selector!r} needs select_k (a count, or a fraction below 1)")

    def mask(self, scores: Scores, labels: torch.Tensor) -> torch.Tensor:
        if self.filter == "hard":
            return misclassified_mask(scores.logits, labels)
        if self.filter == "soft":
            return soft_accuracy_mask(scores.logits, labels, self.margin)
        return torch.ones_like(labels, dtype=torch.bool)

    def __call__(self, scores: Scores, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Positions (ascending) of the samples that pass."""
        mask = self.mask(scores, labels)
        k = None if self.k is None else resolve_count(self.k, int(labels.shape[0]))
        return filter_then_select(
            mask, scores.losses, self.selector, k, generator,
            q=self.q, buckets=self.buckets, power=self.power, fill_random=self.fill_random,
        )


@register_strategy
class Epochwise(Strategy):
    """Algorithm 8: score the shuffled data set at each epoch start, train on what passed.
    Indices are stored, not data, so with augmentation the trained view is a fresh one
    (the thesis's "soft" filtering) unless the trainer replays the scoring view."""

    name = "epochwise"
    filters = True

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.rule = FilterRule(config)
        self.epoch_passed = 0

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        order = torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)
        scores, labels = ctx.score_indices(order)
        keep = self.rule(scores, labels, ctx.select_generator).cpu()
        self.epoch_passed = int(keep.shape[0])
        return order[keep]

    def epoch_metrics(self) -> dict[str, Any]:
        return {"epoch_filter_passed": self.epoch_passed}


@register_strategy
class Batchwise(Strategy):
    """Algorithms 9 and 10: filter every raw batch; with ``batch_accumulation`` gather the
    accepted samples into batches of exactly ``batch_size`` (raw batches of
    ``accumulation_batch_size``), otherwise train on each filtered batch as it is."""

    name = "batchwise"
    needs_scores = True
    filters = True

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.rule = FilterRule(config)

    @property
    def accumulate(self) -> bool:
        return self.config.batch_accumulation

    def raw_batch_size(self) -> int:
        return self.config.raw_batch_size if self.accumulate else self.config.batch_size

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None, "batchwise filtering needs scores"
        return Selection(keep=self.rule(scores, batch.y, ctx.select_generator))


@register_strategy
class EpochBatchwise(Batchwise):
    """Both at once (thesis 4.1, Table 4.4): the epoch plan holds only what passed the
    epochwise filter, and each raw batch of it is filtered again before training."""

    name = "epoch_batchwise"

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        self.epochwise = Epochwise(config)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        return self.epochwise.plan_epoch(epoch, ctx)

    def epoch_metrics(self) -> dict[str, Any]:
        return self.epochwise.epoch_metrics()
