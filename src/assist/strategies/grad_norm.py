"""Top gradient-norm bound: the "grad norm" baseline of DivBS's benchmark (Hong et al., 2024).

Each raw batch (``accumulation_batch_size``, default ``batch_size / fraction``) is scored by a
no-grad forward; the ``fraction`` of it with the largest ``||softmax(z) - onehot(y)||`` (the
upper bound of the per-sample gradient norm of Katharopoulos & Fleuret, 2018) is kept, and
kept samples are accumulated into full training batches. Its sampling sibling is the preset
``grad_norm_is`` (importance sampling by the same bound, always on).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field

from assist.selection import top_k
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.importance_sampling import gradient_norm_scores
from assist.strategies.options import FixedRawBatchKeys, ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy
from assist.strategies.random_subset import subset_count


class GradNormOptions(StrategyOptions):
    fraction: float = Field(default=0.1, gt=0.0, le=1.0,
                            description="share of each raw batch trained on (the largest bounds)")


class GradNormParams(FixedRawBatchKeys, ScoringKeys):
    strategy_options: GradNormOptions = peer_options(GradNormOptions)


@register_strategy
class GradNorm(Strategy):
    name = "grad_norm"
    Params = GradNormParams

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=True, accumulate=True, overflow="carry", scoring_mode=self.params.scoring_mode)

    def raw_batch_size(self) -> int:
        return self.params.accumulation_batch_size or max(1, round(self.setup.batch_size / self.options.fraction))

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None, "grad_norm scores every raw batch"
        bound = gradient_norm_scores(scores.logits, batch.y)
        return Selection(keep=top_k(bound, subset_count(self.options.fraction, len(batch))))

    def epoch_metrics(self) -> dict[str, Any]:
        return {"grad_norm_fraction": self.options.fraction}
