"""RS2: repeated random sampling without replacement (Okanovic et al., NeurIPS 2023).

Each epoch trains on a fresh random ``fraction`` of the training set, taken in order from a
random permutation of the whole set that carries over between epochs: the data set is cycled
through without replacement, so every sample is trained once before any sample is trained
twice. When a cycle runs out in the middle of an epoch, the epoch takes what is left of it and
fills up from the next cycle's permutation, in which the samples this epoch already holds are
moved to the end (an epoch never holds a sample twice, and the once-before-twice rule holds
within each cycle). It scores nothing. It is the random control the time-to-accuracy
literature finds hardest to beat; ``assist.strategies.controls`` makes it any strategy's
control at that strategy's budget (docs/peers.md).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies.base import RawBatch, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import StrategyOptions, StrategyParams, peer_options
from assist.strategies.random_subset import subset_count
from assist.strategies.registry import register_strategy


class RS2Options(StrategyOptions):
    fraction: float = Field(default=0.5, gt=0.0, le=1.0, description="share of the data set trained each epoch, "
                                                                      "cycling through it without replacement")


class RS2Params(StrategyParams):
    strategy_options: RS2Options = peer_options(RS2Options)


def next_round(cycle: torch.Tensor, position: int, count: int,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The next ``count`` samples of a cycle through ``len(cycle)`` samples, starting at
    ``position``: (the round's indices, the cycle they end in, the position after them). A
    round that runs past the cycle's end continues in a new permutation, whose samples already
    in this round go last."""
    n = int(cycle.shape[0])
    taken = cycle[position:position + count]
    if taken.shape[0] == count:
        return taken, cycle, position + count
    fresh = torch.randperm(n, generator=generator)
    held = torch.zeros(n, dtype=torch.bool)
    held[taken] = True
    fresh = torch.cat([fresh[~held[fresh]], fresh[held[fresh]]])
    rest = count - int(taken.shape[0])
    return torch.cat([taken, fresh[:rest]]), fresh, rest


@register_strategy
class RS2(Strategy):
    name = "rs2"
    Params = RS2Params

    def __init__(self, params: RS2Params, setup) -> None:
        super().__init__(params, setup)
        self.cycle: Optional[torch.Tensor] = None   # the current cycle's permutation
        self.position = 0                          # samples of it already trained
        self.cycles = 0                            # cycles started

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        n = ctx.num_samples
        if self.cycle is None or int(self.cycle.shape[0]) != n:
            self.cycle, self.position, self.cycles = torch.randperm(n, generator=ctx.shuffle_generator), 0, 1
        before = self.cycle
        plan, self.cycle, self.position = next_round(self.cycle, self.position, subset_count(self.options.fraction, n),
                                                     ctx.shuffle_generator)
        self.cycles += int(self.cycle is not before)
        return plan

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        return Selection(keep=torch.arange(len(batch), device=batch.y.device))

    def epoch_metrics(self) -> dict[str, Any]:
        return {"rs2_fraction": self.options.fraction, "rs2_cycle": self.cycles}

    def state_dict(self) -> dict[str, Any]:
        if self.cycle is None:
            return {}
        return {"cycle": self.cycle.clone(), "position": self.position, "cycles": self.cycles}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        unknown = set(state) - {"cycle", "position", "cycles"}
        if unknown:
            raise ValueError(f"strategy 'rs2': unknown state keys {sorted(unknown)}")
        self.cycle = state["cycle"].cpu().long()
        self.position, self.cycles = int(state["position"]), int(state["cycles"])
