"""The training loop: Algorithm 1 with the decision points of docs/architecture.md.

Read top to bottom: ``fit`` runs epochs; ``run_epoch`` asks the selection step for the
epoch's plan, walks it in raw batches, hands each to the step and trains every batch the
step hands back, then closes the epoch (the starved-epoch policy) and evaluates. The
strategy decides (through :class:`~assist.engine.step.SelectionStep`); callbacks observe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from assist.data.augment import index_params
from assist.data.base import ImageDataset
from assist.data.pipeline import BatchPipeline, resolve_augmentation
from assist.engine.accumulate import Chunk
from assist.engine.distributed import Group
from assist.engine.exposure import Exposure, class_accuracy
from assist.engine.optim import build_optimizer, build_scheduler
from assist.engine.runtime import Runtime
from assist.engine.schedule import learning_rate, sets_lr_per_step
from assist.engine.scoring import Scorer
from assist.engine.step import SelectionStep
from assist.events import Callback, Event
from assist.metrics import loss_statistics, system_metrics
from assist.models import build_model
from assist.rng import Stream, generator
from assist.strategies import (ReferenceResult, ReferenceSpec, ResolvedRun, Strategy, StrategyContext, build_strategy,
                               resolve_run)

#: the run's generators, by name in checkpoints
GENERATORS = {"shuffle": Stream.SHUFFLE, "augment": Stream.AUGMENT, "select": Stream.SELECT,
              "eval_subset": Stream.EVAL_SUBSET}


class DivergedError(RuntimeError):
    """The training loss became non-finite."""


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


class Trainer:
    def __init__(self, run: ResolvedRun, data: ImageDataset, *, model: Optional[torch.nn.Module] = None,
                 strategy: Optional[Strategy] = None, callbacks: Iterable[Callback] = (),
                 evaluate: bool = True, group: Optional[Group] = None) -> None:
        """``run``: a resolved run (``assist.validation.validate_run``), taken as it is."""
        self.run = run
        self.config = config = run.config   # the run's own keys
        self.data = data
        self.group = group or Group()   # one process, or this rank of a DDP run (engine/distributed.py)
        self.device = self.group.device(config.device)
        self.model = model or build_model(config, data)
        if self.group.active and config.sync_batchnorm:
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        wrap = (lambda m: self.group.wrap(m, self.device)) if self.group.active else None
        self.runtime = Runtime.build(config, self.model, self.device, wrap)  # precision, NHWC, compile, DDP
        self.scaler = self.runtime.scaler()
        self.strategy = strategy or build_strategy(run)
        self.callbacks = list(callbacks)
        self.evaluate_epochs = evaluate  # False: no per-epoch evaluation (reference models)
        self.augmentation = resolve_augmentation(config.data_augmentation, config.augmentation_recipe, data)
        self.train_data = BatchPipeline(data.train_images, data.train_labels, data.mean, data.std,
                                        augmentation=self.augmentation, device=self.device, compiled=config.compile)
        self.train_eval_data = BatchPipeline(self.train_data.images, self.train_data.labels, data.mean,
                                             data.std, augmentation="none", device=self.device)
        self.test_data = BatchPipeline(data.test_images, data.test_labels, data.mean, data.std,
                                       augmentation="none", device=self.device)
        self.optimizer = build_optimizer(config, self.model.parameters())
        self.scheduler = build_scheduler(config, self.optimizer)
        self.generators = {name: generator(config.rng_seed, stream) for name, stream in GENERATORS.items()}
        self.train_eval_indices = self._train_eval_subset()
        scorer = Scorer(self.model, fetch=self.fetch, eval_batch_size=config.eval_batch_size,
                        num_samples=data.num_train, score_every=config.score_every, runtime=self.runtime,
                        group=self.group)
        context = StrategyContext(
            num_samples=data.num_train, batch_size=config.batch_size, epochs=config.epochs,
            shuffle_generator=self.generators["shuffle"], select_generator=self.generators["select"],
            score_indices=scorer.score_indices, labels=data.train_labels, data=data,
            train_reference=self.fit_reference)
        self.selection = SelectionStep(self.strategy, context, scorer, fetch=self.fetch, emit=self.emit)
        self.exposure = Exposure(data)   # who gets trained: per-sample counts (engine/exposure.py)
        scorer.on_scored = self.exposure.scored
        self.state = TrainState()
        self.replay_params: Optional[dict[str, torch.Tensor]] = None
        self.progress = 0.0   # share of the planned passes done (engine/schedule.py)
        self.lr_per_step = sets_lr_per_step(config)
        self.resumed_threads: Optional[int] = None   # the thread count of the run this one resumes
        self.resumed_world_size: Optional[int] = None   # and its number of processes
        self.unavailable_metrics: set[str] = set()   # GPU readings already warned about (metrics/system.py)
        self.step_seconds = 0.0   # this epoch's time in train_step (per rank under DDP)

    @property
    def counters(self):
        """The current epoch's counters (owned by the selection step)."""
        return self.selection.counters

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
        epoch_start = time.perf_counter()
        self.step_seconds = 0.0
        self.group.take_comm_s()
        self.emit(Event.EPOCH_START, epoch=epoch)
        self.exposure.start_epoch()
        if self.strategy.needs().replay_view and self.augmentation != "none":
            # one augmentation draw per sample for the whole epoch, shared by scoring and training
            self.replay_params = self.train_data.sample_params(self.data.num_train, self.generators["augment"])
        plan = self.selection.plan(epoch)
        self.emit(Event.EPOCH_PLANNED, epoch=epoch, plan=plan)
        start, total = 0, int(plan.shape[0])
        while start < total:
            self.progress = (epoch - 1 + start / total) / self.config.epochs
            indices = plan[start:start + self.selection.raw_batch_size()]
            self.emit(Event.BATCH_START, indices=indices)
            x, y = self.fetch(indices)
            for chunk in self.selection.offer(indices, x, y):
                self.train_step(chunk)
            self.emit(Event.BATCH_END, indices=indices)
            start += int(indices.shape[0])
        self.progress = epoch / self.config.epochs
        closing = self.selection.close_epoch()
        for chunk in closing.batches:  # the starved-epoch policy's batch, in the usual event frame
            self.emit(Event.BATCH_START, indices=chunk.indices)
            self.train_step(chunk)
            self.emit(Event.BATCH_END, indices=chunk.indices)
        if closing.stop_reason is not None:
            self.state.status, self.state.reason = "completed", closing.stop_reason
        self.emit(Event.EPOCH_TRAINED, epoch=epoch, starved=closing.starved)
        # the rate this epoch trained at (its last step's, under a per-step schedule), read
        # before the epoch scheduler moves on to the next epoch's
        trained_lr = float(self.optimizer.param_groups[0]["lr"])
        if self.scheduler is not None:
            self.scheduler.step()
        train_seconds = time.perf_counter() - epoch_start
        self.state.train_time_s += train_seconds
        parallel = self.parallel_metrics(train_seconds) if self.group.active else {}
        row = {**self.metrics_row(epoch, closing.starved, trained_lr), **parallel}
        self.state.wall_clock_s = time.perf_counter() - started
        row.update(epoch_time_s=time.perf_counter() - epoch_start, train_time_s=self.state.train_time_s,
                   wall_clock_s=self.state.wall_clock_s)
        self.state.epoch = epoch
        self.state.history.append(row)
        self.emit(Event.EPOCH_END, epoch=epoch, metrics=row)
        return row

    # ------------------------------------------------------------------ forward passes
    def fetch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training inputs for ``indices``: a fresh augmented view, or the epoch's replayed one."""
        if self.replay_params is not None:
            return self.train_data.batch(indices, params=index_params(self.replay_params, indices))
        return self.train_data.batch(indices, self.generators["augment"])

    def train_step(self, chunk: Chunk) -> None:
        started = time.perf_counter()
        self.model.train()
        if self.lr_per_step:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.config, self.progress)
        part, scale = self.selection.share(chunk)   # this rank's rows (all of them on one process)
        with self.runtime.autocast():
            logits = self.runtime.train_forward(self.model, part.x)
        logits = logits.float()  # losses in float32 whatever the forward's precision
        smoothing = self.config.label_smoothing
        losses = F.cross_entropy(logits, part.y, reduction="none", label_smoothing=smoothing)
        weighted = losses if part.weights is None else losses * part.weights.to(losses.device)
        loss = weighted.mean() * scale   # scale is 1.0 on one process (an exact product)
        # strategies read plain per-sample cross-entropy, whatever the training loss smooths
        plain = losses if not smoothing else F.cross_entropy(logits.detach(), part.y, reduction="none")
        # the whole batch's per-sample results, on every rank (one all-gather under DDP): the
        # weighted losses for the loss check, and what the strategy's feedback reads
        trained = self.selection.gather(len(chunk), plain, logits, weighted=weighted)
        batch_loss = trained.weighted.mean()   # the whole batch's weighted loss, the same on every rank
        if not bool(torch.isfinite(batch_loss)):
            raise DivergedError(f"non-finite loss at epoch {self.state.epoch + 1}, "
                                f"step {self.state.total_steps + 1}")
        # one path for every precision: the scaler is disabled (a pass-through) outside fp16,
        # where it scales the loss, unscales before clipping and skips steps with inf/nan
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.total_steps += 1
        self.selection.feedback(chunk.indices, trained.losses, trained.logits, chunk.y)
        self.exposure.trained(chunk.indices)
        self.step_seconds += time.perf_counter() - started
        self.emit(Event.STEP_END, batch_size=int(chunk.y.shape[0]), loss=batch_loss)

    def evaluate(self, pipeline: BatchPipeline, indices: Optional[torch.Tensor] = None,
                 split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample losses and correctness over a split (or a subset of it), eval mode;
        under DDP each rank evaluates its share and every rank gets the whole. Each batch
        emits ``eval_batch`` (split, samples done and the total of this rank's share)."""
        def progress(done: int, total: int) -> None:
            self.emit(Event.EVAL_BATCH, split=split, done=done, total=total)

        if not self.group.active:
            return per_sample_losses(self.model, pipeline, indices, self.config.eval_batch_size, progress)
        if indices is None:
            indices = torch.arange(int(pipeline.labels.shape[0]))
        total = int(indices.shape[0])
        a, b = self.group.span(total)
        losses, correct = per_sample_losses(self.model, pipeline, indices[a:b], self.config.eval_batch_size, progress)
        both = self.group.gather_rows(torch.stack([losses.float(), correct.float()], 1), total, timed=False)
        return both[:, 0], both[:, 1].bool()

    def fit_reference(self, spec: ReferenceSpec) -> ReferenceResult:
        """A reference model for the strategy (RHO-LOSS), trained by this trainer's class (the
        step runs it on rank 0 only under DDP)."""
        return fit_reference(self.data, spec, device=str(self.device), eval_batch_size=self.config.eval_batch_size)

    # ------------------------------------------------------------------ metrics
    def _train_eval_subset(self) -> Optional[torch.Tensor]:
        size = self.config.train_eval_subset
        if size is None or size >= self.data.num_train:
            return None
        return torch.randperm(self.data.num_train, generator=self.generators["eval_subset"])[:size].sort().values

    def parallel_metrics(self, train_seconds: float) -> dict[str, Any]:
        """A DDP epoch's cost per rank: mean time per training step (forward, backward with
        DDP's all-reduce, the feedback gather) and the seconds in selection collectives
        (score and feedback all-gathers), with their largest share of a rank's epoch."""
        ranks = self.group.all_objects((self.step_seconds, self.group.take_comm_s(), train_seconds))
        steps = max(1, self.selection.counters.steps)
        return {"world_size": self.group.world_size,
                "rank_step_time_s": [step / steps for step, _, _ in ranks],
                "rank_selection_comm_s": [comm for _, comm, _ in ranks],
                "selection_comm_share": max(comm / total if total else 0.0 for _, comm, total in ranks)}

    def metrics_row(self, epoch: int, starved: bool, learning_rate: float) -> dict[str, Any]:
        stats = self.selection.stats()
        self.state.cum_samples_scored += stats["samples_scored"]
        self.state.cum_samples_trained += stats["samples_trained"]
        row: dict[str, Any] = {
            "epoch": epoch, "rng_seed": self.config.rng_seed, "strategy": self.strategy.name,
            "num_classes": self.data.num_classes,
            "total_steps": self.state.total_steps,
            "cum_samples_scored": self.state.cum_samples_scored,
            "cum_samples_trained": self.state.cum_samples_trained,
            "learning_rate": learning_rate,
            **stats,
            "starved": starved, "augmentation": self.augmentation,
            "augmentation_view": "replayed" if self.replay_params is not None else "fresh",
            **self.exposure.epoch_metrics(),
        }
        if not self.evaluate_epochs:
            return row
        # each rank's training shares updated its own BatchNorm statistics: evaluate the model
        # rank 0 checkpoints, on every rank (docs/distributed.md)
        self.group.sync_buffers(self.model)
        evaluate_train = epoch % self.config.train_eval_every == 0 or epoch == self.config.epochs
        if evaluate_train:
            row.update(loss_statistics("train", *self.evaluate(self.train_eval_data, self.train_eval_indices, "train")))
        else:
            row.update({key: None for key in loss_statistics("train", torch.zeros(1), torch.zeros(1))})
        test_losses, test_correct = self.evaluate(self.test_data, split="test")
        row.update(loss_statistics("test", test_losses, test_correct))
        row.update(class_accuracy(test_correct, self.data.test_labels, self.data.num_classes))
        row.update(system_metrics(self.device, self.unavailable_metrics))
        return row

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit from an epoch boundary, in plain types
        and tensors only (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "config": self.run.flat(mode="json"),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generators": {name: g.get_state() for name, g in self.generators.items()},
            **self.selection.state_dict(),   # strategy, accumulator, counters, epoch
            "exposure": self.exposure.state_dict(),   # per-sample scoring and training counts
            "state": dict(vars(self.state)),
            # the intra-op threads the run trained with: CPU kernels sum in a thread-dependent
            # order, so a resumed run uses the same count to stay bit-identical (docs/reliability.md)
            "torch_threads": torch.get_num_threads(),
            # the processes it trained on: a data-parallel run resumed on another number does not
            # repeat the uninterrupted one exactly, and is told so (docs/distributed.md)
            "world_size": self.group.world_size,
            **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}),
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint["scheduler"] is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        for name, g_state in checkpoint["generators"].items():
            self.generators[name].set_state(g_state)
        self.selection.load_state_dict(checkpoint, self.device)
        self.exposure.load_state_dict(checkpoint.get("exposure"))
        self.state = TrainState(**checkpoint["state"])
        self.resumed_threads = checkpoint.get("torch_threads")   # applied by the entry point (api.train)
        # checkpoints from before the count was recorded: a data-parallel epoch's metrics name it
        rows = self.state.history
        self.resumed_world_size = checkpoint.get("world_size", rows[-1].get("world_size", 1) if rows else None)
        if self.scaler.is_enabled() and checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])

    def summary(self) -> dict[str, Any]:
        last = self.state.history[-1] if self.state.history else {}
        return {"status": self.state.status, "reason": self.state.reason,
                "epochs_completed": self.state.epoch, "epochs": self.config.epochs,
                "total_steps": self.state.total_steps, "wall_clock_s": self.state.wall_clock_s,
                "train_time_s": self.state.train_time_s, "rng_seed": self.config.rng_seed,
                "strategy": self.strategy.name, "final": last}


@torch.no_grad()
def per_sample_losses(model: torch.nn.Module, pipeline: BatchPipeline, indices: Optional[torch.Tensor],
                      batch_size: int, progress: Optional[Callable[[int, int], None]] = None,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy and correctness of ``model`` (eval mode) over a split, or
    over ``indices`` of it, without augmentation; ``progress(done, total)`` after each batch."""
    model.eval()
    if indices is None:
        indices = torch.arange(int(pipeline.labels.shape[0]))
    losses, correct = [], []
    total = int(indices.shape[0])
    for start in range(0, total, batch_size):
        x, y = pipeline.batch(indices[start:start + batch_size], None)
        logits = model(x)
        losses.append(F.cross_entropy(logits, y, reduction="none"))
        correct.append(logits.argmax(1) == y)
        if progress is not None:
            progress(min(start + batch_size, total), total)
    if not losses:
        return torch.empty(0, device=pipeline.device), torch.empty(0, dtype=torch.bool, device=pipeline.device)
    return torch.cat(losses), torch.cat(correct)


def fit_reference(data: ImageDataset, spec: ReferenceSpec, *, device: str, eval_batch_size: int) -> ReferenceResult:
    """Train a reference model on ``spec.train_indices`` of ``data``'s training split with the
    Trainer (archetype, AdamW, no augmentation, no per-epoch evaluation; seeded by
    ``spec.seed``), and return its loss on every training sample with the cost."""
    started = time.perf_counter()
    held = spec.train_indices.cpu().long()
    subset = ImageDataset(f"{data.name}[reference]", data.train_images[held], data.train_labels[held],
                          data.test_images[:0], data.test_labels[:0], data.num_classes, data.mean, data.std,
                          data.classes, "none")
    run = resolve_run({"dataset": data.name, "model": spec.model, "epochs": spec.epochs,
                          "batch_size": spec.batch_size, "optimizer": "adamw", "learning_rate": spec.learning_rate,
                          "weight_decay": spec.weight_decay, "rng_seed": spec.seed, "data_augmentation": False,
                          "device": device, "eval_batch_size": eval_batch_size})
    trainer = Trainer(run, subset, evaluate=False)
    state = trainer.fit()
    everything = BatchPipeline(data.train_images, data.train_labels, data.mean, data.std, device=trainer.device)
    losses, _ = per_sample_losses(trainer.model, everything, None, eval_batch_size)
    return ReferenceResult(losses=losses.float().cpu(), samples_trained=state.cum_samples_trained,
                           samples_scored=data.num_train, seconds=time.perf_counter() - started)
