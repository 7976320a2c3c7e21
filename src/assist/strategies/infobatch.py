"""InfoBatch (Qin et al., ICLR 2024): prune well-learned samples at random, rescale the rest.

Scores are each sample's latest *training* loss (from ``feedback``; no extra forward), all
equal at the start so the first epoch prunes nothing. At each epoch start, samples scoring
below the mean are dropped at random with probability ``ratio``; the below-mean samples kept
get loss weight 1/(1 - ratio), so the expected gradient is unchanged. From the epoch after a
fraction ``delta`` of the epochs on, the full data set is used with unit weights (annealing).

Differences from the reference code, on purpose: indices are passed explicitly (no patched
DataLoader), pruning draws from the run's selection generator (not a reseeded global NumPy
RNG), and pruning stops after exactly ``ceil(delta * epochs)`` epochs. The trainer's learning
rate schedules step once per epoch, so the shorter pruned epochs do not shift them; the
number of optimizer steps of every epoch is recorded in the ``steps`` column.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies.base import RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import StrategyOptions, StrategyParams, peer_options
from assist.strategies.registry import register_strategy

INITIAL_SCORE = 3.0  # any constant works: equal scores mean nothing is below the mean


class InfoBatchOptions(StrategyOptions):
    ratio: float = Field(default=0.5, ge=0.0, lt=1.0, description="r: pruning probability of a below-mean sample")
    delta: float = Field(default=0.875, gt=0.0, le=1.0, description="share of the epochs that prune")


def infobatch_prune(scores: torch.Tensor, ratio: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One pruning decision over the whole data set.

    Returns ``(keep, weights)``: a bool mask of the samples kept and their loss weights
    (1/(1-ratio) for kept below-mean samples, 1 otherwise). Exactly
    ``floor((1 - ratio) * n_below)`` below-mean samples are kept, chosen uniformly."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must lie in [0, 1), got {ratio!r}")
    below = scores < scores.mean()
    candidates = below.nonzero().flatten()
    n_keep = int(math.floor((1.0 - ratio) * int(candidates.numel()) + 1e-9))
    keep = ~below
    weights = torch.ones(scores.shape[0], dtype=torch.float32)
    if candidates.numel():
        chosen = candidates[torch.randperm(int(candidates.numel()), generator=generator)[:n_keep]]
        keep[chosen] = True
        weights[chosen] = 1.0 / (1.0 - ratio)
    return keep, weights


def prunes_in_epoch(epoch: int, epochs: int, delta: float) -> bool:
    """Epoch ``epoch`` (1-based) prunes while fewer than ``delta * epochs`` epochs are done."""
    return epoch - 1 < delta * epochs - 1e-9


class InfoBatchParams(StrategyParams):
    strategy_options: InfoBatchOptions = peer_options(InfoBatchOptions)


@register_strategy
class InfoBatch(Strategy):
    name = "infobatch"
    Params = InfoBatchParams

    def __init__(self, params: StrategyParams, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.scores: Optional[torch.Tensor] = None
        self.weights: Optional[torch.Tensor] = None  # this epoch's loss weights; None: all 1
        self.pruned = 0
        self.pruning = False

    def _ensure_scores(self, n: int) -> torch.Tensor:
        if self.scores is None:
            self.scores = torch.full((n,), INITIAL_SCORE)
        elif self.scores.shape[0] != n:
            raise ValueError(f"infobatch: state holds scores for {self.scores.shape[0]} samples, "
                             f"the data set has {n}")
        return self.scores

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        scores = self._ensure_scores(ctx.num_samples)
        # the archetype's shuffle, thinned: with nothing pruned the plan equals the twin's
        order = torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)
        self.pruning = prunes_in_epoch(epoch, ctx.epochs, self.options.delta)
        if not self.pruning or self.options.ratio == 0.0:
            self.weights, self.pruned = None, 0
            return order
        keep, weights = infobatch_prune(scores, self.options.ratio, ctx.select_generator)
        self.weights = weights
        self.pruned = int((~keep).sum())
        return order[keep[order]]

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        keep = torch.arange(len(batch), device=batch.y.device)
        if self.weights is None:
            return Selection(keep=keep)
        return Selection(keep=keep, weights=self.weights[batch.indices].to(batch.y.device))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                 labels: torch.Tensor) -> None:
        # the unweighted loss is the score, as in the paper
        if self.scores is not None:
            self.scores[indices.cpu()] = losses.detach().float().cpu()

    def epoch_metrics(self) -> dict[str, Any]:
        return {"infobatch_pruning": self.pruning, "infobatch_pruned": self.pruned,
                "infobatch_mean_score": None if self.scores is None else float(self.scores.mean())}

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores, "weights": self.weights, "pruned": self.pruned, "pruning": self.pruning}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores, self.weights = state["scores"], state["weights"]
        self.pruned, self.pruning = int(state["pruned"]), bool(state["pruning"])
