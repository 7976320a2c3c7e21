"""The uniform random subset: the control every selection method should beat at equal budget.

``mode=batch`` (default) keeps a uniformly random ``fraction`` of each raw batch (raw batches
of ``accumulation_batch_size``, else ``batch_size``) and accumulates the kept samples into full
batches, exactly like a batchwise selector with the same acceptance rate; it scores nothing.
``mode=epoch`` trains each epoch on a uniformly random ``fraction`` of the data set, in the
archetype's shuffled order. Set ``fraction`` to another run's acceptance ratio (its
``samples_trained / samples offered``) to give the control the same training budget.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from assist.selection import resolve_count, uniform_random
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import FixedRawBatchKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy


class RandomSubsetOptions(StrategyOptions):
    fraction: float = Field(default=0.5, gt=0.0, le=1.0, description="share trained on, drawn uniformly")
    mode: Literal["batch", "epoch"] = Field("batch", description="draw from each raw batch, or from the data set "
                                                                 "once per epoch")


def subset_count(fraction: float, n: int) -> int:
    """How many of ``n`` samples a ``fraction`` keeps (rounded half up, at least 1 of a
    non-empty pool)."""
    return n if fraction >= 1.0 else resolve_count(float(fraction), n)


class RandomSubsetParams(FixedRawBatchKeys):
    strategy_options: RandomSubsetOptions = peer_options(RandomSubsetOptions)


@register_strategy
class RandomSubset(Strategy):
    name = "random_subset"
    Params = RandomSubsetParams

    def needs(self) -> LoopNeeds:
        return LoopNeeds(accumulate=self.options.mode == "batch", overflow="carry")

    def raw_batch_size(self) -> int:
        if self.options.mode == "batch":
            return self.params.accumulation_batch_size or self.setup.batch_size
        return self.setup.batch_size

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        order = torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)
        if self.options.mode == "epoch":
            return order[: subset_count(self.options.fraction, ctx.num_samples)]
        return order

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        n = len(batch)
        if self.options.mode == "epoch":
            return Selection(keep=torch.arange(n, device=batch.y.device))
        keep = uniform_random(n, subset_count(self.options.fraction, n), ctx.select_generator)
        return Selection(keep=keep.to(batch.y.device))

    def epoch_metrics(self) -> dict[str, Any]:
        return {"subset_fraction": self.options.fraction, "subset_mode": self.options.mode}
