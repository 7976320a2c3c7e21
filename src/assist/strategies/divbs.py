"""DivBS (Hong et al., "Diversified Batch Selection for Training Acceleration", ICML 2024):
reference-model-free online batch selection that covers the raw batch's gradient.

Each raw batch of ``batch_size / selection`` samples is scored by one no-grad forward that also
returns the penultimate features ``h``. A sample's gradient embedding is the gradient of its
loss with respect to the classifier's weight matrix, ``(softmax(z) - onehot(y)) ⊗ h`` (the
authors' code leaves the bias out; so does ASSIST). A greedy pass then picks the samples: the
residual starts as the batch's mean embedding; each pick is drawn with probability
proportional to ``|d_i · r|``, the candidate's own embedding against the current residual, with
no normalisation of ``d_i``; the pick's direction, orthogonalised against the earlier picks, is
then subtracted from the residual. So a sample whose gradient repeats one already chosen has
(nearly) no correlation left with the residual and is not picked before a distinct one, and a
large gradient that points along what is left of the mean is preferred: the selection covers
the batch's mean gradient. When no candidate correlates any more, the rest of the budget is
drawn uniformly from the samples not yet picked. The selected samples are trained on as they
are (no reweighting, no accumulation). This is the rule of the authors' public code; how it was
checked is in docs/peers.md.

Paper defaults: selection ratio 0.1 of a raw batch of 320 (train batch 32), SGD lr 0.1 with
momentum 0.9 and weight decay 5e-4 under a cosine schedule (``lr_scheduler=cosine``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy

EPS = 1e-12


class DivBSOptions(StrategyOptions):
    selection: float = Field(default=0.1, gt=0.0, le=1.0, description="share of each raw batch trained on")


def gradient_embeddings(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient of cross-entropy with respect to the last layer's weight matrix,
    flattened: ``(softmax(logits) - onehot(labels)) ⊗ features``, shape ``(N, C * D)``."""
    residual = torch.softmax(logits.float(), dim=1)
    residual[torch.arange(labels.shape[0], device=labels.device), labels] -= 1.0
    return (residual[:, :, None] * features.float()[:, None, :]).flatten(1)


def pick_weights(embeddings: torch.Tensor, residual: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """The draw weights of one greedy step: ``|d_i · r|`` for every sample not yet picked, 0 for
    the picked ones (whose correlation is already zero up to rounding)."""
    return torch.where(free, (embeddings @ residual).abs(), torch.zeros((), dtype=embeddings.dtype,
                                                                       device=embeddings.device))


def diverse_greedy(embeddings: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Positions (ascending) of ``count`` samples that cover the mean embedding: each pick is
    drawn ∝ ``|d_i · r|`` (:func:`pick_weights`), its embedding is orthonormalised against the
    earlier picks and removed from the residual ``r``. When nothing correlates any more, the
    remaining budget is drawn uniformly without replacement from the samples not picked."""
    n = int(embeddings.shape[0])
    count = min(count, n)
    embeddings = embeddings.double()
    residual = embeddings.mean(dim=0)
    free = torch.ones(n, dtype=torch.bool, device=embeddings.device)
    basis: list[torch.Tensor] = []
    chosen: list[int] = []
    while len(chosen) < count:
        weights = pick_weights(embeddings, residual, free).cpu()
        if not bool(torch.isfinite(weights).all()) or float(weights.sum()) <= 0.0:
            break
        pick = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(pick)
        free[pick] = False
        direction = embeddings[pick].clone()
        for earlier in basis:                       # Gram-Schmidt against the earlier picks
            direction -= (direction @ earlier) * earlier
        norm = float(direction.norm())
        if norm > EPS:
            direction /= norm
            basis.append(direction)
            residual = residual - (residual @ direction) * direction
    if len(chosen) < count:                         # nothing correlates: uniform over the rest
        rest = free.nonzero().flatten().cpu()
        order = torch.randperm(int(rest.numel()), generator=generator)
        chosen.extend(rest[order[:count - len(chosen)]].tolist())
    return torch.tensor(sorted(chosen), dtype=torch.long, device=embeddings.device)


class DivBSParams(ScoringKeys):
    strategy_options: DivBSOptions = peer_options(DivBSOptions)


@register_strategy
class DivBS(Strategy):
    name = "divbs"
    Params = DivBSParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self._picked = 0
        self._offered = 0

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=True, features=True, scoring_mode=self.params.scoring_mode)

    def raw_batch_size(self) -> int:
        return math.ceil(self.setup.batch_size / self.options.selection - 1e-9)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        self._picked = self._offered = 0
        return super().plan_epoch(epoch, ctx)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None and scores.features is not None, "divbs needs scores with features"
        n = len(batch)
        # the authors' count: int(n * ratio), here at least one sample
        count = min(self.setup.batch_size, max(1, math.floor(n * self.options.selection + 1e-9)))
        embeddings = gradient_embeddings(scores.features, scores.logits, batch.y)
        keep = diverse_greedy(embeddings, count, ctx.select_generator)
        self._picked += int(keep.numel())
        self._offered += n
        return Selection(keep=keep.to(batch.y.device))

    def epoch_metrics(self) -> dict[str, Any]:
        return {"divbs_selected_share": self._picked / self._offered if self._offered else None}

    def state_dict(self) -> dict[str, Any]:
        return {"picked": self._picked, "offered": self._offered}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._picked, self._offered = int(state.get("picked", 0)), int(state.get("offered", 0))
