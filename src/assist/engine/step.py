"""The selection step: score a raw batch, select, accumulate, close the epoch.

Every loop that trains with a strategy drives one :class:`SelectionStep`: the built-in
:class:`~assist.engine.trainer.Trainer`, a user's loop through
:class:`~assist.integration.Selector`, and Lightning through the Selector. The loop owns the
model's training (forward, loss, backward, optimizer) and the data; the step owns the
strategy, its context, the accumulation buffer and the epoch's counters, and is the only
place that calls a strategy's ``plan_epoch``, ``select`` and ``feedback``. So what a user
compares is the same algorithm whichever loop runs it (docs/architecture.md)::

    plan = step.plan(epoch)
    for each raw batch of plan (sizes from step.raw_batch_size()):
        for batch in step.offer(indices, x, y):   train on batch, then step.feedback(...)
    closing = step.close_epoch()                  # starved-epoch policy
    for batch in closing.batches:                 train on batch, then step.feedback(...)
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
import torch.nn.functional as F

from assist.engine.accumulate import BatchAccumulator, Chunk, concat
from assist.engine.distributed import Group
from assist.engine.score_memory import ScoreMemory
from assist.events import Event
from assist.models import features_and_logits
from assist.selection import uniform_random
if TYPE_CHECKING:
    from assist.engine.runtime import Runtime
from assist.strategies.base import (LoopNeeds, RawBatch, ReferenceResult, ReferenceSpec, Scores, Strategy,
                                    StrategyContext)

#: ``fetch(indices) -> (x, y)``: model-ready inputs and labels of data-set indices, on the model's device
Fetch = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy_losses(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of model outputs (equals NLL for log-probability outputs)."""
    return F.cross_entropy(outputs.float(), targets, reduction="none")


def _ignore(event: str, **info: Any) -> None:
    """The event sink of a step nobody listens to."""


@dataclass
class EpochCounters:
    steps: int = 0
    samples_scored: int = 0
    samples_trained: int = 0
    raw_batches: int = 0
    offered: int = 0
    accepted: int = 0
    overflow_discarded: int = 0
    # Figure 6 (docs/thesis.md): accumulated batches completed this epoch, and the raw batches
    # they consumed (counted across epoch boundaries), in all and at most
    accumulated_batches: int = 0
    batch_raw_batches_sum: int = 0
    batch_raw_batches_max: int = 0
    raw_size_min: Optional[int] = None
    raw_size_max: Optional[int] = None
    samples_reused: int = 0   # scores taken from the record instead of a forward (score_every)


@dataclass
class EpochClose:
    """What closing an epoch adds: batches to train (starved-epoch policies ``partial`` and
    ``fill_random``), whether the epoch was starved, and why training should stop (``stop``)."""

    batches: list[Chunk] = field(default_factory=list)
    starved: bool = False
    stop_reason: Optional[str] = None


def figure6(c: EpochCounters, open_raw_batches: int) -> dict[str, Any]:
    """The thesis's accumulation statistics (appendix Fig. 6) for one epoch: mean and maximum
    raw batches per accumulated batch, over the batches completed in the epoch; in an epoch
    that completed none, the raw batches the open batch has consumed so far (a lower bound,
    so the epochs Figure 6a is about are not blank); and the overflow per batch."""
    if not c.accumulated_batches:
        return {"raw_batches_per_batch_mean": open_raw_batches, "raw_batches_per_batch_max": open_raw_batches,
                "overflow_per_batch": None}
    return {"raw_batches_per_batch_mean": c.batch_raw_batches_sum / c.accumulated_batches,
            "raw_batches_per_batch_max": c.batch_raw_batches_max,
            "overflow_per_batch": c.overflow_discarded / c.accumulated_batches}


class SelectionStep:
    """One strategy's part of every training step, for any loop (see the module docstring).

    ``emit(event, **info)`` receives ``batch_scored`` and ``batch_selected`` as they happen;
    ``model`` may be set (or replaced) after construction, before the first scoring forward.
    """

    def __init__(self, strategy: Strategy, *, num_samples: int, batch_size: int, epochs: int,
                 shuffle_generator: torch.Generator, select_generator: torch.Generator, fetch: Fetch,
                 eval_batch_size: int, model: Optional[torch.nn.Module] = None,
                 score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_losses,
                 num_classes: Optional[int] = None, labels: Optional[torch.Tensor] = None, data: Any = None,
                 train_reference: Optional[Callable[[ReferenceSpec], ReferenceResult]] = None,
                 emit: Optional[Callable[..., None]] = None, model_hint: str = "",
                 runtime: Optional["Runtime"] = None, score_every: int = 1,
                 group: Optional[Group] = None) -> None:
        self.strategy = strategy
        self.group = group or Group()   # DDP: scoring forwards split over ranks (engine/distributed.py)
        self.runtime = runtime  # precision, memory format, compiled forward (engine/runtime.py); None: plain
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.fetch = fetch
        self.eval_batch_size = eval_batch_size
        self.model = model
        self.score_fn = score_fn
        self.num_classes = num_classes
        self.emit = emit or _ignore
        self.model_hint = model_hint
        self.select_generator = select_generator
        self.context = StrategyContext(
            num_samples=num_samples, batch_size=batch_size, epochs=epochs, shuffle_generator=shuffle_generator,
            select_generator=select_generator, score_indices=self.score_indices, labels=labels, data=data,
            train_reference=train_reference)
        self.accumulator = BatchAccumulator(batch_size, strategy.needs().overflow)
        self.counters = EpochCounters()
        self.epoch = 0
        self.epoch_accepted: list[torch.Tensor] = []   # indices trained this epoch (non-accumulating filters)
        self.open_raw_batches = 0   # raw batches the batch now gathering has consumed (across epochs)
        # score_every > 1: recorded logits (engine/score_memory.py)
        self.memory = ScoreMemory(num_samples, score_every) if score_every > 1 else None

    # ------------------------------------------------------------------ the epoch
    def plan(self, epoch: int) -> torch.Tensor:
        """Open epoch ``epoch`` (1-based): reset the counters, return the strategy's plan."""
        self.epoch = epoch
        self.counters = EpochCounters()
        self.epoch_accepted = []
        return self.strategy.plan_epoch(epoch, self.context)

    def raw_batch_size(self) -> int:
        """Planned samples in the next raw batch (asked per raw batch: it may change mid-epoch)."""
        return self.strategy.raw_batch_size()

    def offer(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> list[Chunk]:
        """Score (when the strategy asks), select and accumulate one raw batch; the batches
        now ready to train, in order. ``indices`` are CPU int64 data-set indices."""
        needs = self.strategy.needs()
        batch = RawBatch(indices=indices, x=x, y=y)
        scores = None
        if needs.scores:
            scores = self.score_batch(indices, x, y, needs)
            self.emit(Event.BATCH_SCORED, batch=batch, scores=scores)
        selection = self.strategy.select(batch, scores, self.context)
        self.emit(Event.BATCH_SELECTED, batch=batch, selection=selection)
        keep = selection.keep.to(x.device)
        c = self.counters
        c.raw_batches += 1
        c.offered += len(batch)
        c.accepted += len(selection)
        c.raw_size_min = len(batch) if c.raw_size_min is None else min(c.raw_size_min, len(batch))
        c.raw_size_max = len(batch) if c.raw_size_max is None else max(c.raw_size_max, len(batch))
        chunk = Chunk(x[keep], y[keep], indices[keep.cpu()], selection.weights)
        if not needs.accumulate:
            if needs.filters:  # what a starved epoch already trained (see close_epoch)
                self.epoch_accepted.append(chunk.indices)
            return [chunk] if len(chunk) else []
        self.accumulator.add(chunk)
        self.open_raw_batches += 1
        ready = []
        while self.accumulator.ready():
            filled, discarded = self.accumulator.pop()
            c.overflow_discarded += discarded
            c.accumulated_batches += 1
            c.batch_raw_batches_sum += self.open_raw_batches
            c.batch_raw_batches_max = max(c.batch_raw_batches_max, self.open_raw_batches)
            self.open_raw_batches = 0   # a second batch of the same raw batch consumed no new one
            ready.append(filled)
        return ready

    def close_epoch(self) -> EpochClose:
        """"Nothing left to learn" (docs/thesis.md): a filtering strategy whose epoch accepted
        fewer samples than one batch is *starved*, and its ``starved_epoch`` policy decides:
        ``wait`` (the thesis) keeps the buffer for the next epoch, ``partial`` trains on it,
        ``fill_random`` tops it up to one batch with uniformly drawn samples, ``stop`` ends."""
        needs = self.strategy.needs()
        accepted = self.counters.accepted
        if not needs.filters or accepted >= self.batch_size:
            return EpochClose()
        policy = needs.starved_epoch
        if policy == "wait":
            return EpochClose(starved=True)
        if policy == "stop":
            return EpochClose(starved=True, stop_reason=(
                f"converged: epoch {self.epoch} accepted {accepted} samples, fewer than batch_size={self.batch_size}"))
        buffered = self.accumulator.pop_partial() if needs.accumulate else None
        if buffered is not None:
            self.open_raw_batches = 0   # the buffer is trained now; the next batch starts afresh
        if policy == "partial":
            return EpochClose([] if buffered is None else [buffered], starved=True)
        # fill_random: one batch's worth, the samples drawn without replacement among those not
        # already in it (the buffer, or what this epoch trained when nothing accumulates)
        taken = buffered.indices if buffered is not None else torch.cat(self.epoch_accepted or [torch.zeros(0).long()])
        free = torch.ones(self.num_samples, dtype=torch.bool)
        free[taken] = False
        extra = uniform_random(self.num_samples, self.batch_size - int(taken.numel()), self.select_generator,
                               candidates=free)
        x, y = self.fetch(extra)
        filler = Chunk(x, y, extra, None)
        return EpochClose([filler if buffered is None else concat([buffered, filler])], starved=True)

    @property
    def wants_feedback(self) -> bool:
        """Whether the training forward's per-sample results feed anything: the strategy's
        own ``feedback``, or the score record (``score_every``). Without, a data-parallel
        step gathers only the batch's loss."""
        return self.memory is not None or type(self.strategy).feedback is not Strategy.feedback

    def feedback(self, indices: torch.Tensor, losses: Optional[torch.Tensor], logits: Optional[torch.Tensor],
                 labels: torch.Tensor) -> None:
        """What the training step saw for a batch the step handed out: per-sample losses
        (before weights), the training forward's outputs and the labels (losses and logits
        may be None when nothing wants them, see ``wants_feedback``)."""
        if losses is not None and logits is not None:
            self.strategy.feedback(indices, losses.detach().float(), logits.detach().float(), labels)
            if self.memory is not None:  # the training forward's logits are the newest record
                self.memory.record(indices, logits, self.epoch)
        self.counters.steps += 1
        self.counters.samples_trained += int(indices.shape[0])

    # ------------------------------------------------------------------ scoring forwards
    def score_batch(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    needs: Optional[LoopNeeds] = None) -> Scores:
        """Scores of samples ``indices``: a fresh forward, or (``score_every`` > 1) the recorded
        logits of those scored or trained recently, and a forward of the rest only. Strategies
        that need features always score fresh."""
        needs = needs or self.strategy.needs()
        if self.memory is None or needs.features:
            return self.score(x, y, needs)
        indices = indices.cpu()
        reuse = self.memory.fresh(indices, self.epoch)
        if not bool(reuse.any()):
            scores = self.score(x, y, needs)
            self.memory.record(indices, scores.logits, self.epoch)
            return scores
        logits = self.memory.logits[indices].to(x.device)
        stale = ~reuse
        if bool(stale.any()):
            on_device = stale.to(x.device)
            fresh = self.score(x[on_device], y[on_device], needs)
            logits[on_device] = fresh.logits
            self.memory.record(indices[stale], fresh.logits, self.epoch)
        self.counters.samples_reused += int(reuse.sum())
        return Scores(logits=logits, losses=self.score_fn(logits, y).float())

    @torch.no_grad()
    def score(self, x: torch.Tensor, y: torch.Tensor, needs: Optional[LoopNeeds] = None) -> Scores:
        """No-grad forward in eval mode (``scoring_mode=train`` keeps train mode); the model's
        own mode is restored afterwards. ``needs``: the strategy's, when the caller has them."""
        model = self.model
        if model is None:
            raise ValueError(f"strategy {self.strategy.name!r} scores samples with the model, "
                             f"but none was given{self.model_hint}")
        needs = needs or self.strategy.needs()
        was_training = model.training
        model.train(needs.scoring_mode == "train")
        features = None
        runtime = self.runtime
        total, group = int(y.shape[0]), self.group
        a, b = group.span(total)   # this rank scores its share; the whole is gathered below
        x = x[a:b]
        try:
            with runtime.autocast(scoring=True) if runtime else nullcontext():
                if needs.features:
                    features, outputs = features_and_logits(model, runtime.inputs(x) if runtime else x)
                    features = features.float()
                else:
                    outputs = runtime.forward(model, x) if runtime else model(x)
        finally:
            model.train(was_training)
        outputs = outputs.float()
        if group.splits(total):   # one all-gather of logits (and features) for the whole batch
            width = int(outputs.shape[1])
            both = group.gather_rows(outputs if features is None else torch.cat([outputs, features], 1), total)
            outputs, features = both[:, :width], (None if features is None else both[:, width:])
        self.counters.samples_scored += total
        return Scores(logits=outputs, losses=self.score_fn(outputs, y).float(), features=features)

    def score_indices(self, indices: torch.Tensor) -> tuple[Scores, torch.Tensor]:
        """Score training samples by index, in chunks of ``eval_batch_size`` (epochwise plans)."""
        parts, labels = [], []
        for start in range(0, int(indices.shape[0]), self.eval_batch_size):
            part = indices[start:start + self.eval_batch_size]
            x, y = self.fetch(part)
            parts.append(self.score_batch(part, x, y))
            labels.append(y)
        if not parts:
            empty = torch.empty(0)
            return Scores(empty.reshape(0, self.num_classes or 0), empty), empty.long()
        return (Scores(torch.cat([p.logits for p in parts]), torch.cat([p.losses for p in parts])),
                torch.cat(labels))

    # ------------------------------------------------------------------ bookkeeping
    def stats(self) -> dict[str, Any]:
        """The epoch's counters, named as in ``metrics.jsonl``, and the strategy's own numbers."""
        c = self.counters
        accumulate = self.strategy.needs().accumulate
        stats: dict[str, Any] = {
            "steps": c.steps, "samples_scored": c.samples_scored, "samples_trained": c.samples_trained,
            "raw_batches": c.raw_batches, "accepted": c.accepted,
            "acceptance_ratio": c.accepted / c.offered if c.offered else None,
            "trained_share": c.samples_trained / c.samples_scored if c.samples_scored else None,
            "raw_batch_size_mean": c.offered / c.raw_batches if c.raw_batches else None,
            "raw_batch_size_min": c.raw_size_min, "raw_batch_size_max": c.raw_size_max,
            "raw_batches_per_step": (c.raw_batches / c.steps if c.steps else None) if accumulate else None,
            "overflow_discarded": c.overflow_discarded if accumulate else None,
            "buffered": self.accumulator.size if accumulate else None,
            **(figure6(c, self.open_raw_batches) if accumulate else
               {"raw_batches_per_batch_mean": None, "raw_batches_per_batch_max": None, "overflow_per_batch": None}),
        }
        if self.memory is not None:
            looked_up = c.samples_reused + c.samples_scored
            stats["scores_reused"] = c.samples_reused
            stats["scores_reused_share"] = c.samples_reused / looked_up if looked_up else None
        stats.update(self.strategy.epoch_metrics())
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "accumulator": self.accumulator.state_dict(),
                "counters": asdict(self.counters), "epoch": self.epoch, "open_raw_batches": self.open_raw_batches,
                "epoch_accepted": torch.cat(self.epoch_accepted) if self.epoch_accepted else torch.zeros(0).long(),
                **({"score_memory": self.memory.state_dict()} if self.memory is not None else {})}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore; checkpoints written before the step existed carry no counters or epoch."""
        self.strategy.load_state_dict(state["strategy"])
        self.accumulator.load_state_dict(state["accumulator"], device)
        self.counters = EpochCounters(**state.get("counters", {}))
        self.epoch = int(state.get("epoch", self.epoch))
        self.open_raw_batches = int(state.get("open_raw_batches", 0))
        accepted = state.get("epoch_accepted")
        self.epoch_accepted = [accepted] if accepted is not None and accepted.numel() else []
        if self.memory is not None and state.get("score_memory") is not None:
            self.memory.load_state_dict(state["score_memory"])
