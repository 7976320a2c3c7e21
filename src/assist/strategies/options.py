"""The base of every strategy's option schema, and the keys several strategies share.

A strategy declares the flat config keys it takes as one plain class (``Params``) in its own
file; rules between its keys are validators of that class (docs/architecture.md, "Options").
The keys more than one strategy takes are declared once, here: the raw batch and accumulation
keys and the scoring forward's mode. A peer method's own options sit in one flat key,
``strategy_options``, validated by the method's ``StrategyOptions`` class.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from assist.config import refuse_booleans_for_numbers


class StrategyParams(BaseModel):
    """Base of a strategy's schema: the config keys it takes, validated together, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, values: Any) -> Any:
        return refuse_booleans_for_numbers(cls, values)


class StrategyOptions(StrategyParams):
    """Base of a peer method's ``strategy_options`` (its own options, named as in its paper)."""


class ScoringKeys(StrategyParams):
    """Strategies that score raw batches with a no-grad forward."""

    scoring_mode: Literal["eval", "train"] = Field("eval", description="module mode of the no-grad scoring "
                                                                       "forward")


class RawBatchKeys(StrategyParams):
    """Strategies that read raw batches larger than a training batch."""

    # raw batch size; None: batch_size; "auto" (batchwise filtering only): estimated from the
    # recent acceptance ratio so that one raw batch yields about one training batch (thesis 5.2.2)
    accumulation_batch_size: Optional[Union[int, Literal["auto"]]] = Field(
        None, description="raw batch size, or auto (one raw batch yields about one batch); unset: batch_size")

    @field_validator("accumulation_batch_size")
    @classmethod
    def _positive_or_auto(cls, value: Any) -> Any:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be a positive count or 'auto'")
        return value


class FixedRawBatchKeys(RawBatchKeys):
    """A raw batch of fixed size (no ``accumulation_batch_size=auto``)."""

    @model_validator(mode="after")
    def _fixed(self) -> "FixedRawBatchKeys":
        if self.accumulation_batch_size == "auto":
            raise ValueError("accumulation_batch_size='auto' is for batchwise filtering only; give a size")
        return self


class AccumulationKeys(RawBatchKeys):
    """The thesis's accumulation of filtered samples into full batches (Algorithm 10)."""

    batch_accumulation: bool = Field(True, description="gather filtered samples into full batches; false: "
                                                       "train each filtered raw batch (Algorithm 9)")
    # auto's upper bound; None: 4x batch_size (larger scoring batches cost more per sample on a
    # CPU: docs/benchmarks.md, "Adaptive raw batch size"; on a GPU a larger bound may pay)
    accumulation_batch_size_max: Optional[int] = Field(default=None, gt=0, description="upper bound of "
                                                       "accumulation_batch_size=auto; unset: 4 x batch_size")
    overflow: Literal["discard", "carry"] = Field(
        "discard", description="accepted samples beyond a full batch: discard (the thesis) or carry them over")

    @model_validator(mode="after")
    def _accumulation(self) -> "AccumulationKeys":
        if self.accumulation_batch_size != "auto" and self.accumulation_batch_size_max is not None:
            raise ValueError("accumulation_batch_size_max has no effect without accumulation_batch_size=auto")
        if not self.batch_accumulation:
            for key in ("accumulation_batch_size", "accumulation_batch_size_max"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}={getattr(self, key)!r} has no effect with batch_accumulation=false "
                                     "(Algorithm 9 trains each filtered raw batch as it is)")
            if self.overflow != "discard":
                raise ValueError(f"overflow={self.overflow!r} has no effect with batch_accumulation=false "
                                 "(Algorithm 9 trains each filtered raw batch as it is)")
        return self


def peer_options(options: type[StrategyOptions]) -> Any:
    """The ``strategy_options`` field of a peer method's schema: ``options``, all defaults when unset."""
    return Field(default_factory=options, description="the peer method's own options, named as in its paper")
