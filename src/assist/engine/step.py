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

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

import torch

from assist.engine.accumulate import BatchAccumulator, Chunk, concat
from assist.engine.distributed import Group
from assist.engine.scoring import Fetch, Scorer
from assist.events import Event
from assist.selection import uniform_random
from assist.strategies.base import RawBatch, ReferenceResult, ReferenceSpec, Strategy, StrategyContext


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

    def reset(self, **values: Any) -> None:
        """Back to a new epoch's zeros, or to ``values`` (a checkpoint's), in place."""
        for f in fields(self):
            setattr(self, f.name, values.get(f.name, f.default))


@dataclass
class TrainedBatch:
    """The whole batch's per-sample results of a training step, on every rank: the weighted
    losses (what the loss check reads), and what feedback reads, when something wants it."""

    weighted: Optional[torch.Tensor]
    losses: Optional[torch.Tensor]
    logits: Optional[torch.Tensor]


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


@dataclass
class OnMainRank:
    """A reference model trained on rank 0 only, its result sent to every rank (so all select
    alike); the scorer's group is read at each call (a Selector learns its group late)."""

    scorer: Scorer
    train: Callable[[ReferenceSpec], ReferenceResult]

    def __call__(self, spec: ReferenceSpec) -> ReferenceResult:
        group = self.scorer.group
        return group.broadcast(self.train(spec) if group.is_main else None)


class SelectionStep:
    """One strategy's part of every training step, for any loop (see the module docstring).

    ``context`` is what the strategy may use (its ``score_indices`` is ``scorer.score_indices``);
    ``scorer`` runs the scoring forwards; ``fetch`` reads samples by index (the starved-epoch
    filler); ``emit(event, **info)`` receives ``batch_scored`` and ``batch_selected``. The
    step also holds the data-parallel protocol of selection (docs/distributed.md): a rank's
    share of a batch to train (``share``), the gathered results of the training step
    (``gather``), and a reference model trained on rank 0 and sent to every rank.
    """

    def __init__(self, strategy: Strategy, context: StrategyContext, scorer: Scorer, *, fetch: Fetch,
                 emit: Optional[Callable[..., None]] = None) -> None:
        self.strategy = strategy
        self.scorer = scorer
        scorer.strategy_name = strategy.name
        self.fetch = fetch
        self.emit = emit or _ignore
        self.context = context
        if context.train_reference is not None:
            context.train_reference = OnMainRank(scorer, context.train_reference)
        self.num_samples = context.num_samples
        self.batch_size = context.batch_size
        self.accumulator = BatchAccumulator(self.batch_size, strategy.needs().overflow)
        self._counters = EpochCounters()
        self.epoch = 0
        self.epoch_accepted: list[torch.Tensor] = []   # indices trained this epoch (non-accumulating filters)
        self.open_raw_batches = 0   # raw batches the batch now gathering has consumed (across epochs)

    @property
    def counters(self) -> EpochCounters:
        """This epoch's counters (the scorer's tallies included)."""
        self._counters.samples_scored, self._counters.samples_reused = self.scorer.scored, self.scorer.reused
        return self._counters

    @property
    def model(self) -> Optional[torch.nn.Module]:
        return self.scorer.model

    @model.setter
    def model(self, model: Optional[torch.nn.Module]) -> None:
        self.scorer.model = model

    @property
    def group(self) -> Group:
        return self.scorer.group

    @group.setter
    def group(self, group: Group) -> None:
        self.scorer.group = group

    # ------------------------------------------------------------------ the epoch
    def plan(self, epoch: int) -> torch.Tensor:
        """Open epoch ``epoch`` (1-based): reset the counters, return the strategy's plan."""
        self.epoch = epoch
        self._counters.reset()
        self.scorer.start_epoch(epoch)
        self.scorer.needs = self.strategy.needs()
        self.epoch_accepted = []
        return self.strategy.plan_epoch(epoch, self.context)

    def raw_batch_size(self) -> int:
        """Planned samples in the next raw batch (asked per raw batch: it may change mid-epoch)."""
        return self.strategy.raw_batch_size()

    def offer(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> list[Chunk]:
        """Score (when the strategy asks), select and accumulate one raw batch; the batches
        now ready to train, in order. ``indices`` are CPU int64 data-set indices."""
        needs = self.scorer.needs = self.strategy.needs()
        batch = RawBatch(indices=indices, x=x, y=y)
        scores = None
        if needs.scores:
            scores = self.scorer.score_batch(indices, x, y)
            self.emit(Event.BATCH_SCORED, batch=batch, scores=scores)
        selection = self.strategy.select(batch, scores, self.context)
        self.emit(Event.BATCH_SELECTED, batch=batch, selection=selection)
        keep = selection.keep.to(x.device)
        c = self._counters
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
        accepted = self._counters.accepted
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
        extra = uniform_random(self.num_samples, self.batch_size - int(taken.numel()), self.context.select_generator,
                               candidates=free)
        x, y = self.fetch(extra)
        filler = Chunk(x, y, extra, None)
        return EpochClose([filler if buffered is None else concat([buffered, filler])], starved=True)

    @property
    def wants_feedback(self) -> bool:
        """Whether the training forward's per-sample results feed anything: the strategy's
        own ``feedback``, or the score record (``score_every``). Without, a data-parallel
        step gathers only the batch's loss."""
        return self.scorer.memory is not None or type(self.strategy).feedback is not Strategy.feedback

    def feedback(self, indices: torch.Tensor, losses: Optional[torch.Tensor], logits: Optional[torch.Tensor],
                 labels: torch.Tensor) -> None:
        """What the training step saw for a batch the step handed out: per-sample losses
        (before weights), the training forward's outputs and the labels (losses and logits
        may be None when nothing wants them, see ``wants_feedback``)."""
        if losses is not None and logits is not None:
            self.strategy.feedback(indices, losses.detach().float(), logits.detach().float(), labels)
            self.scorer.record(indices, logits)
        self._counters.steps += 1
        self._counters.samples_trained += int(indices.shape[0])

    # ------------------------------------------------------------------ data-parallel protocol
    def share(self, chunk: Chunk) -> tuple[Chunk, float]:
        """This rank's rows of a batch to train, and the scale of its mean loss that makes DDP's
        gradient average the whole batch's mean (all rows and 1.0 on one process)."""
        return self.group.share(chunk)

    def gather(self, total: int, losses: torch.Tensor, logits: torch.Tensor,
               weighted: Optional[torch.Tensor] = None) -> TrainedBatch:
        """This rank's per-sample results of a training step, made the whole batch's of
        ``total`` rows on every rank with one all-gather; losses and logits only where
        ``wants_feedback`` (the weighted losses always, when given)."""
        columns = {"weighted": None if weighted is None else weighted.detach().float()[:, None]}
        if self.wants_feedback:
            columns.update(losses=losses.detach().float()[:, None], logits=logits.detach().float())
        present = {name: part for name, part in columns.items() if part is not None}
        if not present:
            return TrainedBatch(None, None, None)
        rows = self.group.gather_rows(torch.cat(list(present.values()), 1), total)
        named, start = {}, 0
        for name, part in present.items():
            width = int(part.shape[1])
            named[name] = rows[:, start:start + width] if name == "logits" else rows[:, start]
            start += width
        return TrainedBatch(named.get("weighted"), named.get("losses"), named.get("logits"))

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
        if self.scorer.memory is not None:
            looked_up = c.samples_reused + c.samples_scored
            stats["scores_reused"] = c.samples_reused
            stats["scores_reused_share"] = c.samples_reused / looked_up if looked_up else None
        stats.update(self.strategy.epoch_metrics())
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy.state_dict(), "accumulator": self.accumulator.state_dict(),
                "counters": asdict(self.counters), "epoch": self.epoch, "open_raw_batches": self.open_raw_batches,
                "epoch_accepted": torch.cat(self.epoch_accepted) if self.epoch_accepted else torch.zeros(0).long(),
                **self.scorer.state_dict()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore; checkpoints written before the step existed carry no counters or epoch."""
        self.strategy.load_state_dict(state["strategy"])
        self.accumulator.load_state_dict(state["accumulator"], device)
        counters = state.get("counters", {})
        self._counters.reset(**counters)
        self.epoch = int(state.get("epoch", self.epoch))
        self.scorer.start_epoch(self.epoch, counters.get("samples_scored", 0), counters.get("samples_reused", 0))
        self.open_raw_batches = int(state.get("open_raw_batches", 0))
        accepted = state.get("epoch_accepted")
        self.epoch_accepted = [accepted] if accepted is not None and accepted.numel() else []
        self.scorer.load_state_dict(state)
