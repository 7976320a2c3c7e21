"""torch Samplers that make a user's DataLoader follow a strategy's epoch plan.

The plan is drawn when the loader starts an epoch (``iter(sampler)``), from generators the
:class:`~assist.integration.Selector` owns, so nothing global is seeded or patched. Use
``EpochSampler`` with ``DataLoader(..., batch_size=selector.raw_batch_size)``, or
``EpochBatchSampler`` (``batch_sampler=``) when the strategy chooses its own raw batch size
as it goes (importance sampling, RHO-LOSS).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

from torch.utils.data import Sampler

if TYPE_CHECKING:
    from assist.integration.selector import Selector


class EpochSampler(Sampler[int]):
    """Yields the indices of the strategy's plan for the epoch that starts when iterated."""

    def __init__(self, selector: "Selector") -> None:
        self.selector = selector

    def __iter__(self) -> Iterator[int]:
        return iter(self.selector.plan_next_epoch().tolist())

    def __len__(self) -> int:
        # before the first plan: the whole data set; afterwards: the latest plan's length
        return self.selector.planned_length


class EpochBatchSampler(Sampler[list[int]]):
    """Yields the plan in raw batches, asking the strategy for the size of each one (under
    DDP: this rank's share of each, see ``Selector.local_share``)."""

    def __init__(self, selector: "Selector") -> None:
        self.selector = selector

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.selector.plan_next_epoch()
        start, total = 0, int(plan.shape[0])
        while start < total:
            size = self.selector.raw_batch_size
            yield self.selector.local_share(plan[start:start + size]).tolist()
            start += size

    def __len__(self) -> int:
        return math.ceil(self.selector.planned_length / self.selector.raw_batch_size)
