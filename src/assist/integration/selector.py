"""Drive any registered strategy from your own training loop.

The built-in trainer owns the loop; here the user does. ``Selector`` is a thin adapter between
DataLoader items and the same :class:`~assist.engine.step.SelectionStep` the built-in trainer
drives (it owns the strategy, the accumulation buffer and the epoch counters): it reads loader
batches, moves them to the model's device, and hands back ``(x, y, indices, weights)`` to
train on. The user's loop keeps its optimizer, scheduler, AMP and loss, and returns the
per-sample losses via ``feedback``.

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
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from assist.config import ConfigError
from assist.engine.accumulate import Chunk
from assist.engine.distributed import Group
from assist.engine.scoring import Scorer, cross_entropy_losses
from assist.engine.step import EpochCounters, SelectionStep
from assist.engine.trainer import fit_reference
from assist.integration.batch import TrainBatch, as_train_batch, unpack
from assist.integration.samplers import EpochBatchSampler, EpochSampler
from assist.rng import Stream, generator
from assist.strategies import StrategyContext, build_strategy, strategy_keys
from assist.validation import validate_run


def option_keys() -> frozenset[str]:
    """Config keys a Selector accepts as options: what shapes the strategy, and the two run keys
    its step reads (the scoring chunk size, how often scores are renewed); nothing else of the run."""
    return frozenset(strategy_keys()) - {"strategy"} | {"eval_batch_size", "score_every"}


class Selector:
    """One strategy, driven from a user's loop. Options are config keys, validated by
    ``validate_run`` exactly as for ``assist train`` (e.g. ``filter="soft"``,
    ``strategy_options={"ratio": 0.3}``). ``data`` (an in-memory ``ImageDataset`` with the
    same training samples) lets strategies that train a reference model (RHO-LOSS) do so."""

    def __init__(self, strategy: str, dataset: Dataset, *, batch_size: int, epochs: int = 1, seed: int = 0,
                 model: Optional[torch.nn.Module] = None, score_fn: Callable = cross_entropy_losses,
                 labels: Optional[torch.Tensor] = None, data: Any = None, extras: Optional[dict[str, Any]] = None,
                 num_workers: int = 0, **options: Any) -> None:
        valid = option_keys()
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(f"Selector: option(s) {unknown} are not strategy keys; valid options: "
                              f"{', '.join(sorted(valid))} (the seed is `seed=`, the model yours)")
        self.config = validate_run({"strategy": strategy, "batch_size": batch_size, "epochs": epochs,
                                    "rng_seed": seed, **options})
        self.strategy = build_strategy(self.config)
        if not hasattr(dataset, "__len__"):
            raise ValueError(f"Selector needs a map-style dataset with a length, got {type(dataset).__name__}")
        self.dataset = dataset
        self.num_samples = len(dataset)  # type: ignore[arg-type]
        if self.num_samples == 0:
            raise ValueError("Selector: the dataset is empty")
        self.num_workers = num_workers
        data = data if data is not None else (extras or {}).get("data")  # `extras` is the older spelling
        self.generators = {"shuffle": generator(seed, Stream.SHUFFLE), "select": generator(seed, Stream.SELECT)}
        # under an initialised process group (yours, Lightning's DDP) selection is global: see
        # batch_sampler() and docs/distributed.md
        self.group = Group.current()
        self._reference_data = data
        reference = None if data is None else self._train_reference
        scorer = Scorer(model, fetch=self._fetch, eval_batch_size=self.config.eval_batch_size,
                        num_samples=self.num_samples, score_every=self.config.score_every, score_fn=score_fn,
                        group=self.group,
                        model_hint=": pass it as Selector(..., model=model) or selector.batches(loader, model)")
        context = StrategyContext(
            num_samples=self.num_samples, batch_size=batch_size, epochs=epochs,
            shuffle_generator=self.generators["shuffle"], select_generator=self.generators["select"],
            score_indices=scorer.score_indices, labels=labels, data=data, train_reference=reference)
        self.selection = SelectionStep(self.strategy, context, scorer, fetch=self._fetch)
        self.pending: deque[TrainBatch] = deque()  # ready batches not yet handed out (step())
        # DDP: the raw batches the batch sampler handed out (whole, in plan order), and the
        # batches handed to the loop, awaiting their feedback (whole indices and targets)
        self.raw_batches: deque[torch.Tensor] = deque()
        self.handed: deque[Chunk] = deque()
        self.epoch = 0                 # epochs started
        self.epoch_open = False
        self.planned_length = self.num_samples
        self.stop_reason: Optional[str] = None

    @property
    def model(self) -> Optional[torch.nn.Module]:
        return self.selection.model

    @model.setter
    def model(self, model: Optional[torch.nn.Module]) -> None:
        self.selection.model = model

    @property
    def counters(self) -> EpochCounters:
        return self.selection.counters

    # ------------------------------------------------------------------ loader plumbing
    @property
    def raw_batch_size(self) -> int:
        """Raw batch size the strategy wants next (the loader's ``batch_size``)."""
        return self.selection.raw_batch_size()

    def epoch_sampler(self) -> EpochSampler:
        """``DataLoader(..., sampler=selector.epoch_sampler())``: the loader follows the plan."""
        if self.group.active:
            raise ValueError("under DDP the loader must read each rank's share of every raw batch: build it with "
                             "batch_sampler=selector.batch_sampler() (docs/distributed.md)")
        return EpochSampler(self)

    def batch_sampler(self) -> EpochBatchSampler:
        """``DataLoader(..., batch_sampler=selector.batch_sampler())``: plan and raw batch
        sizes; under DDP, this rank's contiguous share of each raw batch."""
        return EpochBatchSampler(self)

    def local_share(self, raw: torch.Tensor) -> torch.Tensor:
        """This rank's part of a raw batch of the plan (all of it on one process, or when the
        raw batch is smaller than the group); the whole is remembered for ``offer``."""
        if not self.group.active:
            return raw
        self.raw_batches.append(raw)
        a, b = self.group.span(len(raw))
        return raw[a:b]

    def plan_next_epoch(self) -> torch.Tensor:
        """Start an epoch and return the strategy's index order for it (CPU int64)."""
        self.end_epoch(queue=True)
        self.raw_batches.clear()
        if self.epoch == 0:  # Lightning initialises its process group after the Selector was built
            self.group = self.selection.group = Group.current()
        self.epoch += 1
        self.epoch_open = True
        plan = self.selection.plan(self.epoch).cpu().long()
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
        if self.group.active:  # the whole raw batch on every rank: one all-gather of inputs and targets
            indices, x, y = self._whole_raw_batch(indices, x, y)
        return [self._hand(chunk) for chunk in self.selection.offer(indices, x, y)]

    def _whole_raw_batch(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        if not self.raw_batches:
            raise ValueError("under DDP the loader must follow selector.batch_sampler() (one raw batch "
                             "per loader batch, this rank's share of it)")
        raw = self.raw_batches.popleft()
        total = len(raw)
        if self.group.splits(total):
            a, b = self.group.bounds(total)
            if not torch.equal(indices, raw[a:b]):
                raise ValueError("the loader's batch is not this rank's share of the planned raw batch: build "
                                 "the DataLoader with batch_sampler=selector.batch_sampler()")
            x, y = self.group.gather_rows(x, total), self.group.gather_rows(y, total)
        return raw, x, y

    def _hand(self, chunk: Chunk) -> TrainBatch:
        """The loop's part of a batch to train: this rank's share under DDP, its weights
        scaled so that ``(losses * weights).mean()``, averaged over ranks by DDP, is the
        whole batch's weighted mean loss."""
        if not self.group.active:
            return as_train_batch(chunk)
        part, scale = self.selection.share(chunk)
        self.handed.append(chunk)
        batch = as_train_batch(part)
        return batch._replace(weights=batch.weights * scale)

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, outputs: torch.Tensor,
                 targets: torch.Tensor) -> None:
        """What the training step saw: per-sample losses (``reduction='none'``, before the
        weights), the model outputs and the targets of the batch just trained on."""
        n = int(indices.shape[0])
        if losses.dim() != 1 or int(losses.shape[0]) != n:
            raise ValueError(f"feedback: losses must hold one value per sample (reduction='none'), got shape "
                             f"{tuple(losses.shape)} for {n} indices")
        if self.group.active and self.handed:  # the whole batch's results: one all-gather
            whole = self.handed.popleft()
            trained = self.selection.gather(len(whole), losses, outputs)
            indices, losses, outputs, targets = whole.indices, trained.losses, trained.logits, whole.y
        self.selection.feedback(indices, losses, outputs, targets)

    def _fetch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of data-set ``indices``, read through the dataset, on the model's device."""
        loader = DataLoader(Subset(self.dataset, indices.tolist()), batch_size=max(1, len(indices)),
                            shuffle=False, num_workers=self.num_workers)
        item = next(iter(loader))
        device = self._model_device()
        return item[0].to(device), item[1].to(device)

    # ------------------------------------------------------------------ epochs
    def end_epoch(self, queue: bool = False) -> list[TrainBatch]:
        """Close the epoch: apply ``starved_epoch`` (docs/thesis.md) and return any batch it
        adds (``queue=True``: keep them for the next ``step``/``batches`` instead)."""
        if not self.epoch_open:
            return []
        self.epoch_open = False
        closing = self.selection.close_epoch()
        if closing.stop_reason is not None:
            self.stop_reason = closing.stop_reason
        extra = [self._hand(chunk) for chunk in closing.batches]
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
        return {"epoch": self.epoch, **self.selection.stats()}

    def _open_unplanned_epoch(self) -> None:
        """The loader does not use ``epoch_sampler()``: the strategy still plans (it may keep
        state there), and a plan that leaves samples out cannot be followed, so it is an error."""
        plan = self.plan_next_epoch()
        if int(plan.shape[0]) != self.num_samples:
            raise ValueError(
                f"strategy {self.strategy.name!r} planned {plan.shape[0]} of {self.num_samples} samples for "
                f"epoch {self.epoch}, but the DataLoader does not follow the plan: build it with "
                "sampler=selector.epoch_sampler() (or batch_sampler=selector.batch_sampler())")

    # ------------------------------------------------------------------ checks and state
    def _train_reference(self, spec: Any) -> Any:
        """RHO-LOSS's reference model, trained by the Trainer (the step runs it on rank 0 only under DDP)."""
        return fit_reference(self._reference_data, spec, device=str(self._model_device()),
                             eval_batch_size=self.config.eval_batch_size)

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
        return {**self.selection.state_dict(),   # strategy, accumulator, counters, epoch, open batch, score memory
                "epoch": self.epoch, "epoch_open": self.epoch_open, "planned_length": self.planned_length,
                "generators": {name: g.get_state() for name, g in self.generators.items()},
                "stop_reason": self.stop_reason, "pending": [batch._asdict() for batch in self.pending]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.epoch_open = int(state["epoch"]), bool(state["epoch_open"])
        self.planned_length, self.stop_reason = int(state["planned_length"]), state["stop_reason"]
        for name, g_state in state["generators"].items():
            self.generators[name].set_state(g_state)
        self.selection.load_state_dict(state, self._model_device())
        self.pending = deque(TrainBatch(**batch) for batch in state["pending"])
