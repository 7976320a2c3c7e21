"""DivBS (Hong et al., "Diversified Batch Selection for Training Acceleration", ICML 2024):
reference-model-free online batch selection that covers the raw batch's gradient.

Each raw batch of ``batch_size / selection`` samples is scored by one no-grad forward that also
returns the penultimate features ``h``. A sample's last-layer gradient embedding is the gradient
of its loss with respect to the classifier's weights and bias, ``(softmax(z) - onehot(y)) ⊗
[h, 1]``. A greedy pass then picks ``batch_size`` samples: each pick is drawn with probability
proportional to how strongly the sample's embedding, orthogonalised against those already
picked, correlates with what is left of the batch's mean embedding; the pick's direction is
then removed from the candidates and from the residual. So a sample whose gradient repeats
one already chosen has (nearly) nothing left and is not picked before a distinct one: the
selection is diverse, not only large. The selected samples are trained on as they are (no
reweighting, no accumulation).

Paper defaults: selection ratio 0.1 of a raw batch of 320 (train batch 32), SGD lr 0.1 with
momentum 0.9 and weight decay 5e-4 under a cosine schedule (``lr_scheduler=cosine``).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies import register_strategy
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.params import StrategyOptions, StrategyParams, params_schema

EPS = 1e-12


class DivBSOptions(StrategyOptions):
    selection: float = Field(default=0.1, gt=0.0, le=1.0, description="share of each raw batch trained on")


def gradient_embeddings(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient of cross-entropy with respect to the last layer's weight and bias,
    flattened: ``(softmax(logits) - onehot(labels)) ⊗ [features, 1]``, shape ``(N, C * (D + 1))``."""
    residual = torch.softmax(logits.float(), dim=1)
    residual[torch.arange(labels.shape[0], device=labels.device), labels] -= 1.0
    inputs = torch.cat([features.float(), torch.ones(features.shape[0], 1, device=features.device)], dim=1)
    return (residual[:, :, None] * inputs[:, None, :]).flatten(1)


def diverse_greedy(embeddings: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Positions (ascending) of ``count`` samples that cover the mean embedding: each pick is
    drawn ∝ |correlation| of the candidates' orthogonalised embeddings with the residual of
    the mean, then orthogonalised out of the candidates and the residual. Candidates with
    nothing left (already spanned) are drawn only when nothing else is (uniformly)."""
    n = int(embeddings.shape[0])
    count = min(count, n)
    remaining = embeddings.double().clone()
    residual = remaining.mean(dim=0)
    free = torch.ones(n, dtype=torch.bool, device=embeddings.device)
    chosen = []
    for _ in range(count):
        norms = remaining.norm(dim=1)
        correlation = (remaining @ residual).abs() / norms.clamp_min(EPS)
        weights = torch.where(free & (norms > EPS * max(1.0, float(norms.max()))), correlation,
                              torch.zeros_like(correlation))
        if float(weights.sum()) <= 0.0:       # nothing correlates (or is left): a uniform draw
            weights = free.double()
        pick = int(torch.multinomial(weights.cpu(), 1, generator=generator))
        chosen.append(pick)
        free[pick] = False
        direction = remaining[pick] / norms[pick].clamp_min(EPS)
        if float(norms[pick]) > EPS:
            remaining -= (remaining @ direction)[:, None] * direction[None, :]
            residual -= (residual @ direction) * direction
    return torch.tensor(sorted(chosen), dtype=torch.long, device=embeddings.device)


@register_strategy
class DivBS(Strategy):
    name = "divbs"
    Params = params_schema("DivBSParams", ("scoring_mode",), options=DivBSOptions)

    def __init__(self, params: StrategyParams, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.options: DivBSOptions = params.strategy_options
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
        count = min(self.setup.batch_size, max(1, round(n * self.options.selection)))
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
