"""Drive any registered strategy from your own training loop.

The built-in trainer owns the loop; here the user does. ``Selector`` keeps what the trainer
would keep (the strategy, its generators, the accumulation buffer, the epoch counters) and
does the strategy's part of each step: score a raw batch with a no-grad forward when the
strategy asks for it, let it select, gather accepted samples into full batches when it
accumulates, and hand back ``(x, y, indices, weights)`` to train on. The user's loop keeps
its optimizer, scheduler, AMP and loss, and returns the per-sample losses via ``feedback``.

    selector = Selector("batchwise", IndexedDataset(train_set), batch_size=64, epochs=10, seed=1)
    loader = DataLoader(selector.dataset, batch_size=64, sampler=selector.epoch_sampler())
    for epoch in range(10):
        for x, y, index, weight in selector.batches(loader, model):
            out = model(x)
            losses = F.cross_entropy(out, y, reduction="none")
            (losses * weight).mean().backward(); optimizer.step(); optimizer.zero_grad()
            selector.feedback(index, losses, out, y)
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from assist.config import STRATEGY_KEYS, make_config
from assist.engine.accumulate import BatchAccumulator, Chunk, concat
from assist.engine.trainer import EpochCounters, derived_generator
from assist.integration.batch import TrainBatch, as_train_batch, cross_entropy_scores, unpack
from assist.integration.samplers import EpochBatchSampler, EpochSampler
from assist.strategies import RawBatch, Scores, StrategyContext, build_strategy

# config keys a Selector accepts as options: what shapes the strategy, nothing about the run
OPTION_KEYS = frozenset(STRATEGY_KEYS) - {"strategy"} | {"eval_batch_size"}
# the trainer's generator streams, so a Selector draws the same plan as `assist train`
STREAMS = {"shuffle": 0, "select": 2}


class Selector:
    """One strategy, driven from a user's loop. Options are config keys, validated by
    ``make_config`` exactly as for ``assist train`` (e.g. ``filter="soft"``,
    ``strategy_options={"ratio": 0.3}``)."""

    def __init__(self, strategy: str, dataset: Dataset, *, batch_size: int, epochs: int = 1, seed: int = 0,
                 model: Optional[torch.nn.Module] = None, score_fn: Callable = cross_entropy_scores,
                 labels: Optional[torch.Tensor] = None, extras: Optional[dict[str, Any]] = None,
                 num_workers: int = 0, **options: Any) -> None:
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise ValueError(f"Selector: option(s) {unknown} are not strategy keys; valid options: "
                             f"{', '.join(sorted(OPTION_KEYS))} (the seed is `seed=`, the model yours)")
        self.config = make_config({"strategy": strategy, "batch_size": batch_size, "epochs": epochs,
                                   "rng_seed": seed, **options})
        self.strategy = build_strategy(self.config)
        if not hasattr(dataset, "__len__"):
            raise ValueError(f"Selector needs a map-style dataset with a length, got {type(dataset).__name__}")
        self.dataset = dataset
        self.num_samples = len(dataset)  # type: ignore[arg-type]
        if self.num_samples == 0:
            raise ValueError("Selector: the dataset is empty")
        self.model = model
        self.score_fn = score_fn
        self.num_workers = num_workers
        self.generators = {name: derived_generator(seed, stream) for name, stream in STREAMS.items()}
        self.context = StrategyContext(
            num_samples=self.num_samples, batch_size=batch_size, epochs=epochs,
            shuffle_generator=self.generators["shuffle"], select_generator=self.generators["select"],
            score_indices=self.score_indices, labels=labels, extras=dict(extras or {}))
        self.accumulator = BatchAccumulator(batch_size, self.strategy.overflow)
        self.counters = EpochCounters()
        self.pending: deque[TrainBatch] = deque()  # ready batches not yet handed out (step())
        self.epoch = 0                 # epochs started
        self.epoch_open = False
        self.planned_length = self.num_samples
        self.stop_reason: Optional[str] = None

    # ------------------------------------------------------------------ loader plumbing
    @property
    def raw_batch_size(self) -> int:
        """Raw batch size the strategy wants next (the loader's ``batch_size``)."""
        return self.strategy.raw_batch_size()

    def epoch_sampler(self) -> EpochSampler:
        """``DataLoader(..., sampler=selector.epoch_sampler())``: the loader follows the plan."""
        return EpochSampler(self)

    def batch_sampler(self) -> EpochBatchSampler:
        """``DataLoader(..., batch_sampler=selector.batch_sampler())``: plan and raw batch sizes."""
        return EpochBatchSampler(self)

    def plan_next_epoch(self) -> torch.Tensor:
        """Start an epoch and return the strategy's index order for it (CPU int64)."""
        self.end_epoch(queue=True)
        self._open_epoch()
        plan = self.strategy.plan_epoch(self.epoch, self.context).cpu().long()
        self.planned_length = int(plan.shape[0])
        return plan

    # ------------------------------------------------------------------ the per-batch work
    def batches(self, loader: Iterable, model: Optional[torch.nn.Module] = None,
                device: Optional[torch.device | str] = None) -> Iterator[TrainBatch]:
        """One epoch: every batch to train on, from a loader of ``(x, y, index)`` items."""
        if model is not None:
            self.model = model
        while self.pending:
            yield self.pending.popleft()
        for item in loader:
            x, y, indices = unpack(item)
            yield from self.offer(x, y, indices, device)
        yield from self.end_epoch()

    def step(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor,
             device: Optional[torch.device | str] = None) -> Optional[TrainBatch]:
        """At most one batch per raw batch (for loops that own the step, e.g. Lightning's
        ``training_step``); ``None`` while the strategy is still accumulating."""
        self.pending.extend(self.offer(x, y, indices, device))
        return self.pending.popleft() if self.pending else None

    def offer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor,
              device: Optional[torch.device | str] = None) -> list[TrainBatch]:
        """Score (if needed), select and accumulate one raw batch; the batches now ready."""
        if not self.epoch_open:
            self._open_unplanned_epoch()
        indices = self._check_indices(indices, y)
        device = torch.device(device) if device is not None else self._model_device()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        batch = RawBatch(indices=indices, x=x, y=y)
        scores = self.score(x, y) if self.strategy.needs_scores else None
        selection = self.strategy.select(batch, scores, self.context)
        keep = selection.keep.to(device)
        c = self.counters
        c.raw_batches += 1
        c.offered += len(batch)
        c.accepted += len(selection)
        chunk = Chunk(x[keep], y[keep], indices[keep.cpu()], selection.weights)
        if not self.strategy.accumulate:
            return [as_train_batch(chunk)] if len(chunk) else []
        self.accumulator.add(chunk)
        ready = []
        while self.accumulator.ready():
            filled, discarded = self.accumulator.pop()
            c.overflow_discarded += discarded
            ready.append(as_train_batch(filled))
        return ready

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, outputs: torch.Tensor,
                 targets: torch.Tensor) -> None:
        """What the training step saw: per-sample losses (``reduction='none'``, before the
        weights), the model outputs and the targets of the batch just trained on."""
        n = int(indices.shape[0])
        if losses.dim() != 1 or int(losses.shape[0]) != n:
            raise ValueError(f"feedback: losses must hold one value per sample (reduction='none'), got shape "
                             f"{tuple(losses.shape)} for {n} indices")
        outputs, losses = outputs.detach(), losses.detach().float()
        self.strategy.feedback(indices, losses, outputs.argmax(1) == targets)
        self.strategy.feedback_logits(indices, outputs.float(), targets)
        self.counters.steps += 1
        self.counters.samples_trained += n

    # ------------------------------------------------------------------ scoring forwards
    @torch.no_grad()
    def score(self, x: torch.Tensor, y: torch.Tensor) -> Scores:
        """No-grad forward in eval mode (``scoring_mode=train`` keeps train mode); the model's
        own mode is restored afterwards, so the user's ``model.train()`` still holds."""
        model = self._require_model()
        was_training = model.training
        model.train(self.config.scoring_mode == "train")
        try:
            outputs = model(x)
        finally:
            model.train(was_training)
        self.counters.samples_scored += int(y.shape[0])
        return Scores(logits=outputs.float(), losses=self.score_fn(outputs, y).float())

    def score_indices(self, indices: torch.Tensor) -> tuple[Scores, torch.Tensor]:
        """Score data-set samples by index (epochwise filtering plans with this)."""
        device = self._model_device()
        loader = DataLoader(Subset(self.dataset, indices.tolist()), batch_size=self.config.eval_batch_size,
                            shuffle=False, num_workers=self.num_workers)
        parts, labels = [], []
        for item in loader:
            x, y = item[0].to(device), item[1].to(device)
            parts.append(self.score(x, y))
            labels.append(y)
        if not parts:
            empty = torch.empty(0, device=device)
            return Scores(empty.reshape(0, 0), empty), empty.long()
        return Scores(torch.cat([p.logits for p in parts]), torch.cat([p.losses for p in parts])), torch.cat(labels)

    # ------------------------------------------------------------------ epochs
    def end_epoch(self, queue: bool = False) -> list[TrainBatch]:
        """Close the epoch: apply ``starved_epoch`` (SEED-GUIDE.md) and return any batch it
        adds (``queue=True``: keep them for the next ``step``/``batches`` instead)."""
        if not self.epoch_open:
            return []
        self.epoch_open = False
        extra = self._starved_epoch_batches()
        if queue:
            self.pending.extend(extra)
            return []
        return extra

    @property
    def should_stop(self) -> bool:
        """True once ``starved_epoch=stop`` found nothing left to learn (see ``stop_reason``)."""
        return self.stop_reason is not None

    def epoch_stats(self) -> dict[str, Any]:
        """Counters of the current (or last) epoch, named as in ``metrics.jsonl``."""
        c = self.counters
        accumulate = self.strategy.accumulate
        stats: dict[str, Any] = {
            "epoch": self.epoch, "steps": c.steps, "samples_scored": c.samples_scored,
            "samples_trained": c.samples_trained, "raw_batches": c.raw_batches, "accepted": c.accepted,
            "acceptance_ratio": c.accepted / c.offered if c.offered else None,
            "raw_batches_per_step": (c.raw_batches / c.steps if c.steps else None) if accumulate else None,
            "overflow_discarded": c.overflow_discarded if accumulate else None,
            "buffered": self.accumulator.size if accumulate else None,
        }
        stats.update(self.strategy.epoch_metrics())
        return stats

    def _open_epoch(self) -> None:
        self.epoch += 1
        self.epoch_open = True
        self.counters = EpochCounters()

    def _open_unplanned_epoch(self) -> None:
        """The loader does not use ``epoch_sampler()``: the strategy still plans (it may keep
        state there), and a plan that leaves samples out cannot be followed, so it is an error."""
        plan = self.plan_next_epoch()
        if int(plan.shape[0]) != self.num_samples:
            raise ValueError(
                f"strategy {self.strategy.name!r} planned {plan.shape[0]} of {self.num_samples} samples for "
                f"epoch {self.epoch}, but the DataLoader does not follow the plan: build it with "
                "sampler=selector.epoch_sampler() (or batch_sampler=selector.batch_sampler())")

    def _starved_epoch_batches(self) -> list[TrainBatch]:
        policy = self.config.starved_epoch
        if not self.strategy.filters or self.counters.accepted >= self.config.batch_size or policy == "wait":
            return []
        if policy == "stop":
            self.stop_reason = (f"converged: epoch {self.epoch} accepted {self.counters.accepted} samples, "
                                f"fewer than batch_size={self.config.batch_size}")
            return []
        buffered = self.accumulator.pop_partial() if self.strategy.accumulate else None
        if policy == "partial":
            return [] if buffered is None else [as_train_batch(buffered)]
        # fill_random: top the buffer up with uniformly drawn samples to one full batch
        have = 0 if buffered is None else len(buffered)
        extra = torch.randint(self.num_samples, (self.config.batch_size - have,), generator=self.generators["select"])
        x, y = next(iter(DataLoader(Subset(self.dataset, extra.tolist()), batch_size=len(extra))))[:2]
        device = self._model_device()
        filler = Chunk(x.to(device), y.to(device), extra, None)
        return [as_train_batch(filler if buffered is None else concat([buffered, filler]))]

    # ------------------------------------------------------------------ checks and state
    def _require_model(self) -> torch.nn.Module:
        if self.model is None:
            raise ValueError(f"strategy {self.strategy.name!r} scores samples with the model: pass it as "
                             "Selector(..., model=model) or selector.batches(loader, model)")
        return self.model

    def _model_device(self) -> torch.device:
        if self.model is None:
            return torch.device("cpu")
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")

    def _check_indices(self, indices: Any, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.int64, torch.int32):
            raise ValueError("batch indices must be an integer tensor: wrap the loader's dataset in IndexedDataset")
        indices = indices.cpu().long()
        if indices.dim() != 1 or indices.shape[0] != y.shape[0]:
            raise ValueError(f"batch indices of shape {tuple(indices.shape)} do not match {y.shape[0]} targets")
        if len(indices) and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(f"batch index {int(indices.max())} is outside the Selector's dataset of "
                             f"{self.num_samples} samples: give the Selector the dataset the DataLoader reads")
        return indices

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue from an epoch boundary (save it with your checkpoint)."""
        return {"epoch": self.epoch, "epoch_open": self.epoch_open, "planned_length": self.planned_length,
                "generators": {name: g.get_state() for name, g in self.generators.items()},
                "strategy": self.strategy.state_dict(), "accumulator": self.accumulator.state_dict(),
                "counters": asdict(self.counters), "stop_reason": self.stop_reason,
                "pending": [batch._asdict() for batch in self.pending]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.epoch_open = int(state["epoch"]), bool(state["epoch_open"])
        self.planned_length, self.stop_reason = int(state["planned_length"]), state["stop_reason"]
        for name, g_state in state["generators"].items():
            self.generators[name].set_state(g_state)
        self.strategy.load_state_dict(state["strategy"])
        self.accumulator.load_state_dict(state["accumulator"], self._model_device())
        self.counters = EpochCounters(**state["counters"])
        self.pending = deque(TrainBatch(**batch) for batch in state["pending"])
