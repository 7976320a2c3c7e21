"""RHO-LOSS (Mindermann et al., ICML 2022): train on the points with the highest *reducible*
loss, the training loss minus the loss of a model trained on held-out data.

A random ``holdout`` fraction of the training set is set aside (never trained on by the main
model). Before the first epoch an *irreducible-loss* (IL) model with its own small config
(``il_model``, ``il_epochs``, ``il_learning_rate``, AdamW as in the paper) is trained on it
through the engine's own trainer (``StrategyContext.train_reference``), and its loss on
every training sample is computed once. Each step scores a raw batch of
``batch_size / selection`` samples with a no-grad forward and trains on the ``batch_size``
samples of highest ``loss - irreducible_loss``.

The IL losses are cached per data set (content fingerprint), seed, holdout fraction and IL
config in the cache directory (``$ASSIST_CACHE_DIR``, never the data directory), so twins and
repeated runs do not retrain the IL model. The IL model's cost (samples trained and scored,
seconds) is recorded in the metrics row of the epoch that prepared it (``rho_il_*``), including
when it came from the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from pydantic import Field

from assist.rng import Stream, derive_seed, generator
from assist.selection import resolve_count, top_k
from assist.strategies.base import (LoopNeeds, RawBatch, ReferenceSpec, RunSetup, Scores, Selection, Strategy,
                                    StrategyContext)
from assist.strategies.options import ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy


class RhoLossOptions(StrategyOptions):
    selection: float = Field(default=0.1, gt=0.0, le=1.0, description="share of each raw batch trained on")
    holdout: float = Field(default=0.1, gt=0.0, lt=1.0, description="share of the training set held out for "
                                                                    "the irreducible-loss model")
    il_model: Optional[str] = Field(None, description="the irreducible-loss model; unset: the run's model")
    il_epochs: int = Field(default=10, gt=0, description="epochs of the irreducible-loss model")
    il_learning_rate: float = Field(default=1e-3, gt=0.0,
                                    description="the irreducible-loss model's AdamW learning rate")
    il_weight_decay: float = Field(default=0.01, ge=0.0, description="the irreducible-loss model's AdamW weight decay")
    il_batch_size: Optional[int] = Field(default=None, gt=0,
                                         description="the irreducible-loss model's batch size; unset: the run's")
    cache: bool = Field(True, description="cache the irreducible losses in $ASSIST_CACHE_DIR for twins and reruns")


def reducible_top(losses: torch.Tensor, irreducible: torch.Tensor, k: int) -> torch.Tensor:
    """Positions (ascending) of the ``k`` largest reducible losses ``losses - irreducible``."""
    return top_k(losses.float() - irreducible.to(losses.device).float(), k)


def split_holdout(num_samples: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A bool mask of the held-out samples: a uniform random ``fraction`` (at least one, and
    at least one sample left to train on)."""
    count = resolve_count(fraction, num_samples)
    if not 0 < count < num_samples:
        raise ValueError(f"strategy_options.holdout: {fraction} of {num_samples} samples leaves "
                         "no holdout or no training data")
    mask = torch.zeros(num_samples, dtype=torch.bool)
    mask[torch.randperm(num_samples, generator=generator)[:count]] = True
    return mask


def reference_spec(options: RhoLossOptions, setup: RunSetup, holdout: torch.Tensor) -> ReferenceSpec:
    """The IL model's run: its own seed (a stream of the run's), AdamW, the held-out samples."""
    return ReferenceSpec(model=options.il_model or setup.model, epochs=options.il_epochs,
                         batch_size=options.il_batch_size or setup.batch_size,
                         learning_rate=options.il_learning_rate, weight_decay=options.il_weight_decay,
                         seed=derive_seed(setup.rng_seed, Stream.REFERENCE), train_indices=holdout.nonzero().flatten())


def cache_key(data, options: RhoLossOptions, setup: RunSetup) -> str:
    """Identity of an IL result: data content, seed, holdout and the IL config."""
    digest = hashlib.sha256()
    digest.update(data.train_images.contiguous().numpy().tobytes())
    digest.update(data.train_labels.contiguous().numpy().tobytes())
    identity = {"data": digest.hexdigest(), "seed": setup.rng_seed, "holdout": options.holdout,
                "model": options.il_model or setup.model, "epochs": options.il_epochs,
                "lr": options.il_learning_rate, "wd": options.il_weight_decay,
                "batch_size": options.il_batch_size or setup.batch_size, "version": 2}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def cache_path(data, options: RhoLossOptions, setup: RunSetup) -> Optional[Path]:
    from assist.data.paths import cache_dir

    root = cache_dir()
    if root is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in data.name)
    return root / "rho_loss" / f"{safe}-{cache_key(data, options, setup)}.pt"


def il_cache_problem(result: Any, num_samples: int) -> Optional[str]:
    """Why a loaded irreducible-loss cache cannot be used for a training set of
    ``num_samples``, or None: it must hold one finite loss per sample, a holdout mask over the
    set that holds some samples out and leaves some in, and the cost counts."""
    if not isinstance(result, dict) or not {"irreducible", "holdout", "cost"} <= set(result):
        return "not an irreducible-loss cache (it lacks irreducible, holdout or cost)"
    losses, holdout, cost = result["irreducible"], result["holdout"], result["cost"]
    if not isinstance(losses, torch.Tensor) or losses.shape != (num_samples,) or not losses.is_floating_point():
        return f"its losses are not {num_samples} numbers"
    if not bool(torch.isfinite(losses).all()):
        return "its losses are not all finite"
    if not isinstance(holdout, torch.Tensor) or holdout.dtype != torch.bool or holdout.shape != (num_samples,) \
            or not 0 < int(holdout.sum()) < num_samples:
        return f"its holdout is not a mask of {num_samples} samples holding some out"
    if not isinstance(cost, dict) or not {"samples_trained", "samples_scored", "seconds"} <= set(cost):
        return "its cost counts are missing"
    return None


class RhoLossParams(ScoringKeys):
    strategy_options: RhoLossOptions = peer_options(RhoLossOptions)


@register_strategy
class RhoLoss(Strategy):
    name = "rho_loss"
    Params = RhoLossParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        self.irreducible: Optional[torch.Tensor] = None
        self.holdout: Optional[torch.Tensor] = None
        self.il_cost: dict[str, Any] = {}
        self.il_cached = False
        self.report_il = False   # the IL cost goes into the row of the epoch that prepared it

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=True, scoring_mode=self.params.scoring_mode)

    def raw_batch_size(self) -> int:
        return math.ceil(self.setup.batch_size / self.options.selection - 1e-9)

    def prepare(self, ctx: StrategyContext) -> None:
        """Split the holdout and obtain the IL losses (from the cache, or by training)."""
        if ctx.train_reference is None or ctx.data is None:
            raise ValueError("rho_loss trains an irreducible-loss model on held-out training data and needs the "
                             "in-memory data set: the built-in trainer has it; a Selector needs data=ImageDataset")
        if ctx.data.num_train != ctx.num_samples:
            raise ValueError(f"rho_loss: the data set has {ctx.data.num_train} training samples, "
                             f"the loop {ctx.num_samples}")
        path = cache_path(ctx.data, self.options, self.setup) if self.options.cache else None
        result, self.il_cached = None, False
        if path is not None and path.is_file():
            try:
                result = torch.load(path, weights_only=True)
                problem = il_cache_problem(result, ctx.num_samples)
                if problem:
                    raise ValueError(problem)
                self.il_cached = True
            except Exception as error:  # a truncated, foreign or wrong-shaped file: retrain and overwrite it
                result = None
                warnings.warn(f"rho_loss: ignoring unusable IL cache {path} ({error}); training the "
                              "irreducible-loss model again")
        if result is None:
            holdout = split_holdout(ctx.num_samples, self.options.holdout,
                                    generator(self.setup.rng_seed, Stream.HOLDOUT))
            reference = ctx.train_reference(reference_spec(self.options, self.setup, holdout))
            result = {"irreducible": reference.losses, "holdout": holdout,
                      "cost": {"samples_trained": reference.samples_trained,
                               "samples_scored": reference.samples_scored, "seconds": reference.seconds}}
            if path is not None:
                from assist.data.paths import write_cache

                path.parent.mkdir(parents=True, exist_ok=True)
                write_cache(path, result)  # atomic, safe with concurrent writers
        self.irreducible, self.holdout = result["irreducible"], result["holdout"]
        self.il_cost = dict(result["cost"])
        self.report_il = True

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        if self.irreducible is None:
            self.prepare(ctx)
        else:
            self.report_il = False
        order = torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)
        return order[~self.holdout[order]]

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        assert scores is not None and self.irreducible is not None, "rho_loss needs scores and IL losses"
        n = len(batch)
        k = min(self.setup.batch_size, resolve_count(self.options.selection, n)) if self.options.selection < 1 else n
        return Selection(keep=reducible_top(scores.losses, self.irreducible[batch.indices.cpu()], k))

    def epoch_metrics(self) -> dict[str, Any]:
        report = self.report_il
        # the same numbers whether the IL losses were trained now or read from the cache
        return {"rho_holdout": None if self.holdout is None else int(self.holdout.sum()),
                "rho_il_samples_trained": self.il_cost.get("samples_trained", 0) if report else 0,
                "rho_il_samples_scored": self.il_cost.get("samples_scored", 0) if report else 0,
                "rho_il_time_s": self.il_cost.get("seconds", 0.0) if report else 0.0,
                # from the cache: the time above was spent by an earlier run, not inside this epoch
                "rho_il_cached": bool(report and self.il_cached)}

    def state_dict(self) -> dict[str, Any]:
        return {"irreducible": self.irreducible, "holdout": self.holdout, "il_cost": dict(self.il_cost),
                "il_cached": self.il_cached, "report_il": self.report_il}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.irreducible, self.holdout = state["irreducible"], state["holdout"]
        self.il_cost, self.il_cached = dict(state["il_cost"]), bool(state["il_cached"])
        self.report_il = bool(state["report_il"])
