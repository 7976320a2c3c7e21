"""The training loop: Algorithm 1 with the five decision points of DESIGN.md.

Read top to bottom: ``fit`` runs epochs; ``run_epoch`` asks the strategy for a plan, walks
it in raw batches, scores and selects each, accumulates or trains directly, then applies the
end-of-epoch policy and evaluates. The strategy decides; callbacks observe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from assist.config import TrainConfig
from assist.data.augment import index_params
from assist.data.base import ImageDataset
from assist.data.pipeline import BatchPipeline
from assist.engine.accumulate import BatchAccumulator, Chunk, concat
from assist.engine.events import Callback, Event
from assist.engine.optim import build_optimizer, build_scheduler
from assist.metrics import loss_statistics, system_metrics
from assist.strategies import RawBatch, Scores, Strategy, StrategyContext, build_strategy


class DivergedError(RuntimeError):
    """The training loss became non-finite."""


def derived_generator(seed: int, stream: int, device: str = "cpu") -> torch.Generator:
    """An independent generator per purpose (shuffle, augment, select, ...) from one seed."""
    state = np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & ((1 << 63) - 1))


@dataclass
class EpochCounters:
    steps: int = 0
    samples_scored: int = 0
    samples_trained: int = 0
    raw_batches: int = 0
    offered: int = 0
    accepted: int = 0
    overflow_discarded: int = 0


@dataclass
class TrainState:
    epoch: int = 0                    # epochs completed
    total_steps: int = 0
    cum_samples_scored: int = 0
    cum_samples_trained: int = 0
    train_time_s: float = 0.0
    wall_clock_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    reason: Optional[str] = None


def resolve_augmentation(config: TrainConfig, data: ImageDataset) -> str:
    if config.data_augmentation is None:
        return data.default_augmentation
    return config.augmentation_recipe if config.data_augmentation else "none"


def build_model(config: TrainConfig, data: ImageDataset) -> torch.nn.Module:
    """The model, initialised from ``rng_seed`` alone: twins start from identical weights and
    the process's global RNG is left untouched."""
    from assist.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.rng_seed)
        return create_model(config.model, in_channels=data.in_channels,
                            num_classes=data.num_classes, image_size=data.image_size)


class Trainer:
    def __init__(self, config: TrainConfig, data: ImageDataset, *, model: Optional[torch.nn.Module] = None,
                 strategy: Optional[Strategy] = None, callbacks: Iterable[Callback] = ()) -> None:
        self.config = config
        self.data = data
        self.device = torch.device(config.device)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.model = (model or build_model(config, data)).to(self.device)
        self.strategy = strategy or build_strategy(config)
        self.callbacks = list(callbacks)
        self.augmentation = resolve_augmentation(config, data)
        self.train_data = BatchPipeline(data.train_images, data.train_labels, data.mean, data.std,
                                        augmentation=self.augmentation, device=self.device)
        self.train_eval_data = BatchPipeline(self.train_data.images, self.train_data.labels, data.mean,
                                             data.std, augmentation="none", device=self.device)
        self.test_data = BatchPipeline(data.test_images, data.test_labels, data.mean, data.std,
                                       augmentation="none", device=self.device)
        self.optimizer = build_optimizer(config, self.model.parameters())
        self.scheduler = build_scheduler(config, self.optimizer)
        self.accumulator = BatchAccumulator(config.batch_size, self.strategy.overflow)
        seed = config.rng_seed
        self.generators = {name: derived_generator(seed, stream) for stream, name in
                           enumerate(("shuffle", "augment", "select", "eval_subset"))}
        self.train_eval_indices = self._train_eval_subset()
        self.context = StrategyContext(
            num_samples=data.num_train, batch_size=config.batch_size, epochs=config.epochs,
            shuffle_generator=self.generators["shuffle"], select_generator=self.generators["select"],
            score_indices=self.score_indices, labels=data.train_labels, extras={"data": data})
        self.state = TrainState()
        self.counters = EpochCounters()
        self.replay_params: Optional[dict[str, torch.Tensor]] = None

    # ------------------------------------------------------------------ events
    def emit(self, event: Event, **info: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event.hook)(self, **info)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainState:
        self.emit(Event.TRAIN_START)
        started = time.perf_counter() - self.state.wall_clock_s
        try:
            while self.state.epoch < self.config.epochs and self.state.status == "running":
                self.run_epoch(self.state.epoch + 1, started)
        except DivergedError as error:
            self.state.status, self.state.reason = "failed", str(error)
        if self.state.status == "running":
            self.state.status = "completed"
        self.emit(Event.TRAIN_END, status=self.state.status, reason=self.state.reason)
        return self.state

    def run_epoch(self, epoch: int, started: float) -> dict[str, Any]:
        self.counters = EpochCounters()
        epoch_start = time.perf_counter()
        self.emit(Event.EPOCH_START, epoch=epoch)
        if self.config.epoch_filter_augmentation == "replay" and self.augmentation != "none":
            # one augmentation draw per sample for the whole epoch, shared by scoring and training
            self.replay_params = self.train_data.sample_params(self.data.num_train, self.generators["augment"])
        plan = self.strategy.plan_epoch(epoch, self.context)
        self.emit(Event.EPOCH_PLANNED, epoch=epoch, plan=plan)
        start, total = 0, int(plan.shape[0])
        while start < total:
            # asked per raw batch: a strategy may change it mid-epoch (importance sampling)
            raw_size = self.strategy.raw_batch_size()
            self.train_raw_batch(plan[start:start + raw_size])
            start += raw_size
        starved = self.end_of_epoch_policy(epoch)
        self.emit(Event.EPOCH_TRAINED, epoch=epoch, starved=starved)
        if self.scheduler is not None:
            self.scheduler.step()
        train_seconds = time.perf_counter() - epoch_start
        self.state.train_time_s += train_seconds
        row = self.metrics_row(epoch, starved)
        self.state.wall_clock_s = time.perf_counter() - started
        row.update(epoch_time_s=time.perf_counter() - epoch_start, train_time_s=self.state.train_time_s,
                   wall_clock_s=self.state.wall_clock_s)
        self.state.epoch = epoch
        self.state.history.append(row)
        self.emit(Event.EPOCH_END, epoch=epoch, metrics=row)
        return row

    def train_raw_batch(self, indices: torch.Tensor) -> None:
        self.emit(Event.BATCH_START, indices=indices)
        x, y = self.fetch(indices)
        batch = RawBatch(indices=indices, x=x, y=y)
        scores = None
        if self.strategy.needs_scores:
            scores = self.score(x, y)
            self.emit(Event.BATCH_SCORED, batch=batch, scores=scores)
        selection = self.strategy.select(batch, scores, self.context)
        self.emit(Event.BATCH_SELECTED, batch=batch, selection=selection)
        keep = selection.keep.to(self.device)
        self.counters.raw_batches += 1
        self.counters.offered += len(batch)
        self.counters.accepted += len(selection)
        chunk = Chunk(x[keep], y[keep], indices[keep.cpu()], selection.weights)
        if not self.strategy.accumulate:
            if len(chunk):
                self.train_step(chunk)
        else:
            self.accumulator.add(chunk)
            while self.accumulator.ready():
                filled, discarded = self.accumulator.pop()
                self.counters.overflow_discarded += discarded
                self.train_step(filled)
        self.emit(Event.BATCH_END, indices=indices)

    def end_of_epoch_policy(self, epoch: int) -> bool:
        """"Nothing left to learn" (SEED-GUIDE.md): a filtering strategy whose epoch accepted
        fewer samples than one batch is *starved*; the configured policy decides what follows.
        ``wait`` (the thesis) keeps any buffered samples for the next epoch."""
        if not self.strategy.filters:
            return False
        starved = self.counters.accepted < self.config.batch_size
        if not starved:
            return False
        policy = self.config.starved_epoch
        if policy == "partial" and self.strategy.accumulate:
            partial = self.accumulator.pop_partial()
            if partial is not None:
                self.train_step(partial)
        elif policy == "fill_random":
            buffered = self.accumulator.pop_partial() if self.strategy.accumulate else None
            have = 0 if buffered is None else len(buffered)
            extra = torch.randint(self.data.num_train, (self.config.batch_size - have,),
                                  generator=self.generators["select"])
            x, y = self.train_data.batch(extra, self.generators["augment"])
            filler = Chunk(x, y, extra, None)
            self.train_step(filler if buffered is None else concat([buffered, filler]))
        elif policy == "stop":
            self.state.status = "completed"
            self.state.reason = (f"converged: epoch {epoch} accepted {self.counters.accepted} samples, "
                                 f"fewer than batch_size={self.config.batch_size}")
        return True

    # ------------------------------------------------------------------ forward passes
    def fetch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs for ``indices``: a fresh augmented view, or the epoch's replayed one."""
        if self.replay_params is not None:
            return self.train_data.batch(indices, params=index_params(self.replay_params, indices))
        return self.train_data.batch(indices, self.generators["augment"])

    @torch.no_grad()
    def score(self, x: torch.Tensor, y: torch.Tensor) -> Scores:
        """No-grad forward for selection; eval mode unless ``scoring_mode=train``."""
        self.model.train(self.config.scoring_mode == "train")
        logits = self.model(x)
        self.counters.samples_scored += int(y.shape[0])
        return Scores(logits=logits, losses=F.cross_entropy(logits, y, reduction="none"))

    def score_indices(self, indices: torch.Tensor) -> tuple[Scores, torch.Tensor]:
        """Score training samples by index, in chunks (used by epochwise filtering)."""
        parts, labels = [], []
        for start in range(0, int(indices.shape[0]), self.config.eval_batch_size):
            x, y = self.fetch(indices[start:start + self.config.eval_batch_size])
            parts.append(self.score(x, y))
            labels.append(y)
        if not parts:
            empty = torch.empty(0, device=self.device)
            return Scores(empty.reshape(0, self.data.num_classes), empty), empty.long()
        return (Scores(torch.cat([p.logits for p in parts]), torch.cat([p.losses for p in parts])),
                torch.cat(labels))

    def train_step(self, chunk: Chunk) -> None:
        self.model.train()
        logits = self.model(chunk.x)
        losses = F.cross_entropy(logits, chunk.y, reduction="none")
        weighted = losses if chunk.weights is None else losses * chunk.weights.to(losses.device)
        loss = weighted.mean()
        if not torch.isfinite(loss):
            raise DivergedError(f"non-finite loss at epoch {self.state.epoch + 1}, "
                                f"step {self.state.total_steps + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        n = int(chunk.y.shape[0])
        self.counters.steps += 1
        self.counters.samples_trained += n
        self.state.total_steps += 1
        self.strategy.feedback(chunk.indices, losses.detach(), logits.detach().argmax(1) == chunk.y)
        self.strategy.feedback_logits(chunk.indices, logits.detach(), chunk.y)
        self.emit(Event.STEP_END, batch_size=n, loss=loss.detach())

    @torch.no_grad()
    def evaluate(self, pipeline: BatchPipeline, indices: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample losses and correctness over a split (or a subset of it), eval mode."""
        self.model.eval()
        if indices is None:
            indices = torch.arange(int(pipeline.labels.shape[0]))
        losses, correct = [], []
        for start in range(0, int(indices.shape[0]), self.config.eval_batch_size):
            x, y = pipeline.batch(indices[start:start + self.config.eval_batch_size], None)
            logits = self.model(x)
            losses.append(F.cross_entropy(logits, y, reduction="none"))
            correct.append(logits.argmax(1) == y)
        return torch.cat(losses), torch.cat(correct)

    # ------------------------------------------------------------------ metrics
    def _train_eval_subset(self) -> Optional[torch.Tensor]:
        size = self.config.train_eval_subset
        if size is None or size >= self.data.num_train:
            return None
        return torch.randperm(self.data.num_train, generator=self.generators["eval_subset"])[:size].sort().values

    def metrics_row(self, epoch: int, starved: bool) -> dict[str, Any]:
        c = self.counters
        self.state.cum_samples_scored += c.samples_scored
        self.state.cum_samples_trained += c.samples_trained
        accumulate = self.strategy.accumulate
        row: dict[str, Any] = {
            "epoch": epoch, "rng_seed": self.config.rng_seed, "strategy": self.strategy.name,
            "steps": c.steps, "total_steps": self.state.total_steps,
            "samples_scored": c.samples_scored, "samples_trained": c.samples_trained,
            "cum_samples_scored": self.state.cum_samples_scored,
            "cum_samples_trained": self.state.cum_samples_trained,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "raw_batches": c.raw_batches, "accepted": c.accepted,
            "acceptance_ratio": c.accepted / c.offered if c.offered else None,
            "raw_batches_per_step": (c.raw_batches / c.steps if c.steps else None) if accumulate else None,
            "overflow_discarded": c.overflow_discarded if accumulate else None,
            "buffered": self.accumulator.size if accumulate else None,
            "starved": starved, "augmentation": self.augmentation,
            "augmentation_view": "replayed" if self.replay_params is not None else "fresh",
        }
        row.update(self.strategy.epoch_metrics())
        evaluate_train = epoch % self.config.train_eval_every == 0 or epoch == self.config.epochs
        if evaluate_train:
            row.update(loss_statistics("train", *self.evaluate(self.train_eval_data, self.train_eval_indices)))
        else:
            row.update({key: None for key in loss_statistics("train", torch.zeros(1), torch.zeros(1))})
        row.update(loss_statistics("test", *self.evaluate(self.test_data)))
        row.update(system_metrics(self.device))
        return row

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit from an epoch boundary, in plain types
        and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            "strategy": self.strategy.state_dict(),
            "accumulator": self.accumulator.state_dict(),
            "state": dict(vars(self.state)),
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        for name, g_state in checkpoint["generators"].items():
            self.generators[name].set_state(g_state)
        self.strategy.load_state_dict(checkpoint["strategy"])
        self.accumulator.load_state_dict(checkpoint["accumulator"], self.device)
        self.state = TrainState(**checkpoint["state"])

    def summary(self) -> dict[str, Any]:
        last = self.state.history[-1] if self.state.history else {}
        return {"status": self.state.status, "reason": self.state.reason,
                "epochs_completed": self.state.epoch, "epochs": self.config.epochs,
                "total_steps": self.state.total_steps, "wall_clock_s": self.state.wall_clock_s,
                "train_time_s": self.state.train_time_s, "rng_seed": self.config.rng_seed,
                "strategy": self.strategy.name, "final": last}
