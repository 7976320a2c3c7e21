"""The thesis's accuracy-filtering strategies (Algorithms 8, 9 and 10, and both combined).

One ``FilterRule`` (filter, then an optional loss selector) is applied either to the whole
shuffled data set at each epoch start (epochwise) or to every raw batch (batchwise). Where
each algorithm of the thesis lives, and the choices it leaves open: docs/thesis.md.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import model_validator

from assist.config import config_default
from assist.selection import filter_then_select, misclassified_mask, resolve_count, soft_accuracy_mask
from assist.strategies import register_strategy
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.params import StrategyParams, params_schema

FILTER_KEYS = ("filter", "soft_margin", "selector", "select_k", "select_q", "select_p", "select_buckets",
               "fill_random")
EPOCH_KEYS = ("starved_epoch", "scoring_mode", "epoch_filter_augmentation")
BATCH_KEYS = ("batch_accumulation", "accumulation_batch_size", "overflow", "starved_epoch", "scoring_mode")
COUNT_SELECTORS = ("top_k", "loss_weighted", "q_split")


def _changed(params: Any, key: str) -> bool:
    return getattr(params, key) != config_default(key)


class FilterChecks(StrategyParams):
    """Rules between the filter keys: what each needs, and what has no effect without what."""

    @model_validator(mode="after")
    def _consistent(self) -> "FilterChecks":
        if self.filter == "none" and self.selector is None:
            raise ValueError("filter=none needs a selector (otherwise nothing is filtered)")
        if self.selector in COUNT_SELECTORS and self.select_k is None:
            raise ValueError(f"selector={self.selector!r} needs select_k (a count, or a fraction below 1)")
        idle = {"soft_margin": self.filter != "soft", "select_q": self.selector != "top_q",
                "select_p": self.selector != "q_split", "select_buckets": self.selector != "q_split",
                "fill_random": self.select_k is None}
        for key, unused in idle.items():
            if unused and _changed(self, key):
                needs = {"soft_margin": "filter=soft", "select_q": "selector=top_q", "select_p": "selector=q_split",
                         "select_buckets": "selector=q_split", "fill_random": "select_k"}[key]
                raise ValueError(f"{key}={getattr(self, key)!r} has no effect without {needs}")
        return self


class BatchChecks(FilterChecks):
    @model_validator(mode="after")
    def _accumulation(self) -> "BatchChecks":
        if not self.batch_accumulation:
            for key in ("accumulation_batch_size", "overflow"):
                if _changed(self, key):
                    raise ValueError(f"{key}={getattr(self, key)!r} has no effect with batch_accumulation=false "
                                     "(Algorithm 9 trains each filtered raw batch as it is)")
        return self


EpochwiseParams = params_schema("EpochwiseParams", FILTER_KEYS + EPOCH_KEYS, base=FilterChecks)
BatchwiseParams = params_schema("BatchwiseParams", FILTER_KEYS + BATCH_KEYS, base=BatchChecks)
EpochBatchwiseParams = params_schema("EpochBatchwiseParams", FILTER_KEYS + BATCH_KEYS + EPOCH_KEYS[2:],
                                     base=BatchChecks)


class FilterRule:
    """Accuracy filter (hard / soft / none) followed by an optional loss selector."""

    def __init__(self, params: Any) -> None:
        self.filter = params.filter
        self.margin = params.soft_margin
        self.selector = params.selector
        # a whole number counts samples, a value below 1 is a fraction of the pool
        k = params.select_k
        self.k = None if k is None else (int(k) if k >= 1 else k)
        self.q = params.select_q
        self.power = params.select_p
        self.buckets = params.select_buckets
        self.fill_random = params.fill_random

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
    Params = EpochwiseParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.rule = FilterRule(params)
        self.epoch_passed = 0

    def needs(self) -> LoopNeeds:
        return LoopNeeds(starved_epoch=self.params.starved_epoch, scoring_mode=self.params.scoring_mode)

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
    Params = BatchwiseParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.rule = FilterRule(params)

    def needs(self) -> LoopNeeds:
        p = self.params
        return LoopNeeds(scores=True, accumulate=p.batch_accumulation, overflow=p.overflow,
                         starved_epoch=p.starved_epoch, scoring_mode=p.scoring_mode)

    def raw_batch_size(self) -> int:
        if self.params.batch_accumulation:
            return self.params.accumulation_batch_size or self.setup.batch_size
        return self.setup.batch_size

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None, "batchwise filtering needs scores"
        return Selection(keep=self.rule(scores, batch.y, ctx.select_generator))


@register_strategy
class EpochBatchwise(Batchwise):
    """Both at once (thesis 4.1, Table 4.4): the epoch plan holds only what passed the
    epochwise filter, and each raw batch of it is filtered again before training."""

    name = "epoch_batchwise"
    Params = EpochBatchwiseParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.epochwise = Epochwise(params, setup)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        return self.epochwise.plan_epoch(epoch, ctx)

    def epoch_metrics(self) -> dict[str, Any]:
        return self.epochwise.epoch_metrics()
