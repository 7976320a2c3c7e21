"""The thesis's accuracy-filtering strategies (Algorithms 8, 9 and 10, and both combined).

One ``FilterRule`` (filter, then an optional loss selector) is applied either to the whole
shuffled data set at each epoch start (epochwise) or to every raw batch (batchwise). Where
each algorithm of the thesis lives, and the choices it leaves open: docs/thesis.md.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Literal, Optional

import torch
from pydantic import Field, ValidationError, field_validator, model_validator

from assist.selection import (fill_up, filter_then_select, misclassified_mask, resolve_count, soft_accuracy_mask,
                              soft_filter_top_k)
from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import AccumulationKeys, ScoringKeys, StrategyParams
from assist.strategies.registry import register_strategy

# The thesis's two flags (epoch_filtering, batch_filtering) and the strategy each pair selects.
THESIS_FLAGS: dict[str, tuple[bool, bool]] = {
    "archetype": (False, False), "epochwise": (True, False),
    "batchwise": (False, True), "epoch_batchwise": (True, True),
}
ADAPT_MOMENTUM = 0.8      # weight of the previous acceptance estimate under accumulation_batch_size=auto
COUNT_SELECTORS = ("top_k", "loss_weighted", "q_split")


class FilterKeys(StrategyParams):
    """The filter and selector of the thesis's filtering strategies (Algorithms 5 and 6), with
    the rules between them: what each key needs, and what has no effect without what."""

    filter: Literal["hard", "soft", "none"] = Field(
        "hard", description="hard: keep misclassified samples; soft: and near misses (soft_margin); none: all")
    soft_margin: float = Field(0.1, description="soft filter: keep a correct sample whose top-two "
                                                "probabilities differ by at most this, in (0, 1)")
    selector: Optional[Literal["top_k", "top_q", "loss_weighted", "q_split"]] = Field(
        None, description="a loss selector applied to what passed the filter; unset: none")
    select_k: Optional[float] = Field(default=None, gt=0, description="top_k, loss_weighted, q_split: "
                                                                      "samples kept, a count (>= 1) or a fraction (< 1)")
    select_q: float = Field(default=0.5, ge=0, le=1, description="top_q: keep losses at or above this quantile")
    select_p: float = Field(default=2.0, gt=0, description="q_split: power of the losses (at the first epoch)")
    select_p_end: Optional[float] = Field(default=None, gt=0, description="q_split: the power at the last "
                                                                          "epoch; unset: constant select_p")
    select_p_schedule: Literal["linear", "cosine"] = Field(
        "linear", description="how select_p moves to select_p_end")
    select_buckets: int = Field(default=2, ge=2, description="q_split: number of loss buckets")
    # q-split buckets: "prose" (thesis 3.2.1, docs/thesis.md) or the pseudo-code's "literal" cut
    select_split: Literal["prose", "literal"] = Field(
        "prose", description="q_split: cut buckets as the thesis's prose says, or as its pseudo-code")
    # q-split: a short bucket's shortfall is drawn from the others ("share"), or not ("literal",
    # Algorithm 4 as printed); docs/thesis.md
    select_quota: Literal["share", "literal"] = Field(
        "share", description="q_split: a short bucket's shortfall is drawn from the others, or not (literal)")
    # fill to k with random samples when fewer pass the filter and selector ("defaulting back to
    # SGD", the thesis's go-to, 3.2.1); None: on exactly when select_k is set, stored resolved so
    # run directories written when the default was off keep their value and identity
    fill_random: Optional[bool] = Field(None, description="fill up to select_k with random samples when too "
                                                          "few pass; unset: on when select_k is set")

    @field_validator("soft_margin")
    @classmethod
    def _margin_in_open_unit_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError("must lie in (0, 1)")
        return value

    @field_validator("select_k")
    @classmethod
    def _count_or_fraction(cls, value: Optional[float]) -> Optional[float]:
        if value is not None and value >= 1 and value != int(value):
            raise ValueError("must be a whole count (>= 1) or a fraction below 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "FilterKeys":
        if self.filter == "none" and self.selector is None:
            raise ValueError("filter=none needs a selector (otherwise nothing is filtered)")
        if self.selector in COUNT_SELECTORS and self.select_k is None:
            raise ValueError(f"selector={self.selector!r} needs select_k (a count, or a fraction below 1)")
        if self.fill_random is None:
            object.__setattr__(self, "fill_random", self.select_k is not None)
        q_split = self.selector == "q_split"
        needs = {"soft_margin": (self.filter == "soft", "filter=soft"),
                 "select_q": (self.selector == "top_q", "selector=top_q"),
                 "select_p": (q_split, "selector=q_split"), "select_p_end": (q_split, "selector=q_split"),
                 "select_buckets": (q_split, "selector=q_split"), "select_split": (q_split, "selector=q_split"),
                 "select_quota": (q_split, "selector=q_split"),
                 "select_p_schedule": (self.select_p_end is not None, "select_p_end"),
                 "fill_random": (self.select_k is not None, "select_k")}
        for key, (used, what) in needs.items():
            default = False if key == "fill_random" else type(self).model_fields[key].default
            if not used and getattr(self, key) != default:
                raise ValueError(f"{key}={getattr(self, key)!r} has no effect without {what}")
        return self


class StarvedEpochKeys(ScoringKeys):
    """What a filtering strategy does with an epoch that accepted less than one batch."""

    starved_epoch: Literal["wait", "partial", "fill_random", "stop"] = Field(
        "wait", description="an epoch that accepts less than a batch: wait, partial, fill_random or stop")


class EpochPlanKeys(StrategyParams):
    """Strategies whose epoch plan is filtered."""

    # epochwise filtering stores indices, so by default a sample is trained on a fresh view,
    # not the one it was scored on ("soft", the thesis); "replay" reuses the scored view
    epoch_filter_augmentation: Literal["fresh", "replay"] = Field(
        "fresh", description="epochwise: train a sample on a fresh augmented view, or replay the scored one")


class EpochwiseParams(FilterKeys, StarvedEpochKeys, EpochPlanKeys):
    pass


class BatchwiseParams(FilterKeys, AccumulationKeys, StarvedEpochKeys):
    pass


class EpochLevelKeys(StrategyParams):
    """Epoch + batch filtering: the epoch level's own filter and selector (None: the batch level's)."""

    epoch_filter: Optional[Literal["hard", "soft", "none"]] = Field(
        None, description="epoch+batch filtering: the epoch level's filter; unset: filter")
    epoch_soft_margin: Optional[float] = Field(default=None, gt=0, lt=1, description="the epoch level's "
                                                                                     "soft_margin; unset: soft_margin")
    epoch_selector: Optional[Literal["none", "top_k", "top_q", "loss_weighted", "q_split"]] = Field(
        None, description="the epoch level's selector; unset: selector")
    epoch_select_k: Optional[float] = Field(default=None, gt=0, description="the epoch level's select_k; "
                                                                            "unset: select_k")


def epoch_level(params: Any) -> dict[str, Any]:
    """The epoch level's filter keys under epoch + batch filtering: the batch level's, with
    the ``epoch_*`` keys that are set in their place (``epoch_selector="none"``: no selector)."""
    values = {key: getattr(params, key) for key in EpochwiseParams.model_fields}
    for key in EpochLevelKeys.model_fields:
        value = getattr(params, key)
        if value is not None:
            values[key.removeprefix("epoch_")] = None if value == "none" else value
    return values


class EpochBatchwiseParams(BatchwiseParams, EpochLevelKeys, EpochPlanKeys):

    @model_validator(mode="after")
    def _epoch_level(self) -> "EpochBatchwiseParams":
        try:
            EpochwiseParams.model_validate(epoch_level(self))
        except ValidationError as error:
            raise ValueError("epoch level: " + "; ".join(e["msg"].removeprefix("Value error, ")
                                                        for e in error.errors())) from None
        return self


def scheduled_power(start: float, end: Optional[float], schedule: str, epoch: int, epochs: int) -> float:
    """q-split's power at ``epoch`` (1-based): ``start`` throughout when ``end`` is None, else
    moving from ``start`` at the first epoch to ``end`` at the last (thesis 3.2.1: a high power
    early, a lower one later), linearly or along a half cosine."""
    if end is None or epochs <= 1:
        return start
    progress = (epoch - 1) / (epochs - 1)
    if schedule == "cosine":
        progress = (1 - math.cos(math.pi * progress)) / 2
    return start + (end - start) * progress


def adaptive_raw_batch_size(batch_size: int, acceptance: Optional[float], upper: int) -> int:
    """Thesis 5.2.2: raw batches sized so that they yield one training batch with two standard
    deviations of headroom (the accepted count of ``n`` samples is binomial, spread
    ``sqrt(n a (1 - a))``): ``n = (b + 2 sqrt(b (1 - a))) / a`` samples for batch size ``b``
    and acceptance ``a``, so a batch rarely needs one more raw batch and little is discarded.
    When ``n`` exceeds ``upper``, the ``m = ceil(n / upper)`` raw batches that together make
    one batch are each ``ceil(n / m)``: splitting evenly keeps the overflow at the headroom
    (a raw batch just under ``n`` would need a second one and discard most of it). At least
    ``b``; ``b`` before any acceptance has been seen."""
    if acceptance is None:
        return batch_size
    upper = max(upper, batch_size)
    wanted = (batch_size + 2 * math.sqrt(batch_size * max(0.0, 1.0 - acceptance))) / max(acceptance, 1e-6)
    parts = math.ceil(wanted / upper - 1e-9)
    return max(batch_size, min(upper, math.ceil(wanted / parts - 1e-9)))


class FilterRule:
    """Accuracy filter (hard / soft / none) followed by an optional loss selector.

    ``filter=soft selector=top_k`` is Algorithm 6: the top-k *misclassified* samples by loss,
    plus every correct sample whose top-two softmax margin is at most ``soft_margin``."""

    def __init__(self, params: Any) -> None:
        self.filter = params.filter
        self.margin = params.soft_margin
        self.selector = params.selector
        # a whole number counts samples, a value below 1 is a fraction of the pool
        k = params.select_k
        self.k = None if k is None else (int(k) if k >= 1 else k)
        self.q = params.select_q
        self.params = params
        self.power = params.select_p
        self.buckets = params.select_buckets
        self.split = params.select_split
        self.quota = params.select_quota
        self.fill_random = params.fill_random

    def set_epoch(self, epoch: int, epochs: int) -> None:
        p = self.params
        self.power = scheduled_power(p.select_p, p.select_p_end, p.select_p_schedule, epoch, epochs)

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
        if self.filter == "soft" and self.selector == "top_k":
            chosen = soft_filter_top_k(scores.logits, labels, scores.losses, k, self.margin)
            return fill_up(chosen, mask, k, generator) if self.fill_random else chosen
        return filter_then_select(
            mask, scores.losses, self.selector, k, generator,
            q=self.q, buckets=self.buckets, power=self.power, fill_random=self.fill_random, split=self.split,
            quota=self.quota,
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
        self.epoch_passed = self.epoch_scored = 0

    def needs(self) -> LoopNeeds:
        return LoopNeeds(starved_epoch=self.params.starved_epoch, scoring_mode=self.params.scoring_mode,
                         replay_view=self.params.epoch_filter_augmentation == "replay")

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        self.rule.set_epoch(epoch, ctx.epochs)
        order = torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)
        scores, labels = ctx.score_indices(order)
        keep = self.rule(scores, labels, ctx.select_generator).cpu()
        self.epoch_passed, self.epoch_scored = int(keep.shape[0]), int(order.shape[0])
        return order[keep]

    def epoch_metrics(self) -> dict[str, Any]:
        share = self.epoch_passed / self.epoch_scored if self.epoch_scored else None
        # the filter's pass rate is this strategy's acceptance (raw batches accept everything)
        return {"epoch_filter_passed": self.epoch_passed, "epoch_filter_acceptance": share, "acceptance_ratio": share}


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
        self.acceptance: Optional[float] = None   # recent acceptance ratio (accumulation_batch_size=auto)

    def needs(self) -> LoopNeeds:
        p = self.params
        return LoopNeeds(scores=True, accumulate=p.batch_accumulation, overflow=p.overflow,
                         starved_epoch=p.starved_epoch, scoring_mode=p.scoring_mode)

    def raw_batch_size(self) -> int:
        size, batch = self.params.accumulation_batch_size, self.setup.batch_size
        if not self.params.batch_accumulation or size is None:
            return batch
        if size != "auto":
            return size
        return adaptive_raw_batch_size(batch, self.acceptance, self.params.accumulation_batch_size_max or 4 * batch)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        self.rule.set_epoch(epoch, ctx.epochs)
        return super().plan_epoch(epoch, ctx)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None, "batchwise filtering needs scores"
        keep = self.rule(scores, batch.y, ctx.select_generator)
        if self.params.accumulation_batch_size == "auto" and len(batch):
            rate = int(keep.shape[0]) / len(batch)
            self.acceptance = rate if self.acceptance is None else (
                ADAPT_MOMENTUM * self.acceptance + (1 - ADAPT_MOMENTUM) * rate)
        return Selection(keep=keep)

    def state_dict(self) -> dict[str, Any]:
        # fixed raw batches keep the first landing's empty state (its checkpoints still load)
        return {} if self.params.accumulation_batch_size != "auto" else {"acceptance": self.acceptance}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        value = state.get("acceptance") if state else None
        self.acceptance = None if value is None else float(value)


@register_strategy
class EpochBatchwise(Batchwise):
    """Both at once (thesis 4.1, Table 4.4): the epoch plan holds only what passed the
    epochwise filter, and each raw batch of it is filtered again before training."""

    name = "epoch_batchwise"
    Params = EpochBatchwiseParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.epochwise = Epochwise(EpochwiseParams.model_validate(epoch_level(params)), setup)

    def needs(self) -> LoopNeeds:
        return replace(super().needs(), replay_view=self.params.epoch_filter_augmentation == "replay")

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        self.rule.set_epoch(epoch, ctx.epochs)
        return self.epochwise.plan_epoch(epoch, ctx)  # sets the epoch level's own rule

    def epoch_metrics(self) -> dict[str, Any]:
        metrics = self.epochwise.epoch_metrics()
        del metrics["acceptance_ratio"]   # here acceptance is the batch filter's, per raw batch
        return metrics
