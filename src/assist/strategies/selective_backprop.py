"""Selective Backprop (Jiang et al., 2019): back-propagate a sample with a probability that
grows with how its loss ranks among recent losses.

Every raw batch is scored by a no-grad forward (eval mode unless ``scoring_mode=train``).
Its losses join a history of the last ``history`` losses; a sample is kept with probability
``max(floor, percentile^beta)``, the percentile being the share of the history strictly below
its loss (the batch's own losses included, as in the reference code). Kept samples are
accumulated into full batches (overflow carried, never dropped); no reweighting. The first
``prime_epochs`` epochs train on everything without scoring.

The "stale" variant (``staleness`` s > 0) re-scores the data only when the recorded losses
would be more than s epochs old; in between, the recorded losses (from the last scoring
epoch, or from the training forward of the priming epoch) stand in, and no scoring forward
runs at all, so ``samples_scored`` is 0 for those epochs.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import FixedRawBatchKeys, ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy


class SelectiveBackpropOptions(StrategyOptions):
    beta: float = Field(default=3.0, gt=0.0, description="keep probability = percentile(loss) ** beta")
    history: int = Field(default=1024, gt=0, description="recent losses the percentile is taken over")
    floor: float = Field(default=0.0, ge=0.0, le=1.0, description="minimum keep probability")
    staleness: int = Field(default=0, ge=0, description="reuse recorded losses up to this many epochs old")
    prime_epochs: int = Field(default=1, ge=0, description="first epochs that train on everything")


class LossHistory:
    """The last ``capacity`` losses in a ring buffer (a tensor, so it checkpoints as one)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.values = torch.zeros(capacity)
        self.count = 0   # filled slots (<= capacity)
        self.next = 0    # slot the next loss goes to

    def append(self, losses: torch.Tensor) -> None:
        losses = losses.detach().float().cpu().flatten()[-self.capacity:]
        n = int(losses.numel())
        if n == 0:
            return
        slots = (self.next + torch.arange(n)) % self.capacity
        self.values[slots] = losses
        self.next = (self.next + n) % self.capacity
        self.count = min(self.capacity, self.count + n)

    def current(self) -> torch.Tensor:
        return self.values[: self.count] if self.count < self.capacity else self.values

    def state_dict(self) -> dict[str, Any]:
        return {"values": self.values.clone(), "count": self.count, "next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = state["values"].clone()
        self.capacity = int(self.values.numel())
        self.count, self.next = int(state["count"]), int(state["next"])


def percentile_below(history: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
    """Share (in [0, 1]) of ``history`` strictly below each loss; 1 for an empty history."""
    if history.numel() == 0:
        return torch.ones_like(losses, dtype=torch.float32)
    ordered = history.float().sort().values
    below = torch.searchsorted(ordered, losses.float().contiguous(), side="left")
    return below.float() / history.numel()


def keep_probabilities(losses: torch.Tensor, history: torch.Tensor, beta: float, floor: float = 0.0) -> torch.Tensor:
    """Selective Backprop's keep probability: ``max(floor, percentile ** beta)``."""
    return percentile_below(history, losses).pow(beta).clamp(min=floor, max=1.0)


class SelectiveBackpropParams(FixedRawBatchKeys, ScoringKeys):
    strategy_options: SelectiveBackpropOptions = peer_options(SelectiveBackpropOptions)


@register_strategy
class SelectiveBackprop(Strategy):
    name = "selective_backprop"
    Params = SelectiveBackpropParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.history = LossHistory(self.options.history)
        self.recorded: Optional[torch.Tensor] = None   # per-sample loss (NaN: never seen)
        self.last_scored_epoch = 0                      # epoch whose losses are recorded
        self.epoch = 0
        self.mode = "prime"                             # prime | fresh | stale
        self._offered = 0
        self._probability_sum = 0.0

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=self.mode == "fresh", accumulate=True, overflow="carry",
                         scoring_mode=self.params.scoring_mode)

    def raw_batch_size(self) -> int:
        return self.params.accumulation_batch_size or self.setup.batch_size

    def epoch_mode(self, epoch: int) -> str:
        if epoch <= self.options.prime_epochs:
            return "prime"
        stale_ok = epoch - self.last_scored_epoch <= self.options.staleness
        if self.options.staleness and self.last_scored_epoch and stale_ok:
            return "stale"
        return "fresh"

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        if self.recorded is None:
            self.recorded = torch.full((ctx.num_samples,), float("nan"))
        self.epoch = epoch
        self.mode = self.epoch_mode(epoch)
        if self.mode == "fresh":
            self.last_scored_epoch = epoch
        self._offered, self._probability_sum = 0, 0.0
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        device = batch.y.device
        n = len(batch)
        self._offered += n
        if self.mode == "prime":
            self._probability_sum += n
            return Selection(keep=torch.arange(n, device=device))
        indices = batch.indices.cpu()
        if self.mode == "fresh":
            assert scores is not None, "selective_backprop needs scores in a scoring epoch"
            losses = scores.losses.detach().float().cpu()
            self.recorded[indices] = losses
        else:
            losses = self.recorded[indices]
        known = ~torch.isnan(losses)
        self.history.append(losses[known])
        probabilities = torch.ones(n)
        probabilities[known] = keep_probabilities(losses[known], self.history.current(),
                                                  self.options.beta, self.options.floor)
        self._probability_sum += float(probabilities.sum())
        draws = torch.rand(n, generator=ctx.select_generator)
        return Selection(keep=(draws < probabilities).nonzero().flatten().to(device))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                 labels: torch.Tensor) -> None:
        # the priming epoch's training losses seed the record the stale variant reuses
        if self.mode == "prime" and self.recorded is not None:
            self.recorded[indices.cpu()] = losses.detach().float().cpu()
            self.last_scored_epoch = self.epoch

    def epoch_metrics(self) -> dict[str, Any]:
        return {"sb_mode": self.mode,
                "sb_mean_keep_probability": self._probability_sum / self._offered if self._offered else None}

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.state_dict(), "recorded": self.recorded,
                "last_scored_epoch": self.last_scored_epoch, "epoch": self.epoch, "mode": self.mode,
                "offered": self._offered, "probability_sum": self._probability_sum}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history.load_state_dict(state["history"])
        self.recorded = state["recorded"]
        self.last_scored_epoch, self.epoch = int(state["last_scored_epoch"]), int(state["epoch"])
        self.mode = str(state["mode"])
        self._offered, self._probability_sum = int(state["offered"]), float(state["probability_sum"])
