"""The scoring half of the selection step: no-grad forwards of the samples a strategy asks
about, split over the ranks of a data-parallel run, and the record of recent scores that
``score_every`` reuses (engine/score_memory.py). The step (engine/step.py) asks it for the
scores of a raw batch; a strategy reaches it through ``StrategyContext.score_indices``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F

from assist.engine.distributed import Group
from assist.engine.score_memory import ScoreMemory
from assist.models import features_and_logits
from assist.strategies.base import LoopNeeds, Scores

if TYPE_CHECKING:
    from assist.engine.runtime import Runtime

#: ``fetch(indices) -> (x, y)``: model-ready inputs and labels of data-set indices, on the model's device
Fetch = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy_losses(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of model outputs (equals NLL for log-probability outputs)."""
    return F.cross_entropy(outputs.float(), targets, reduction="none")


class Scorer:
    """Scores samples with ``model`` (which may be set or replaced later, before the first
    forward). ``fetch`` and ``eval_batch_size`` serve scoring by index (epochwise plans);
    ``score_every > 1`` keeps a record of ``num_samples`` samples' logits. ``scored`` and
    ``reused`` count this epoch's samples scored by a forward and taken from the record."""

    def __init__(self, model: Optional[torch.nn.Module], *, fetch: Fetch, eval_batch_size: int, num_samples: int,
                 score_every: int = 1,
                 score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = cross_entropy_losses,
                 runtime: Optional["Runtime"] = None, group: Optional[Group] = None, model_hint: str = "") -> None:
        self.model = model
        self.fetch = fetch
        self.eval_batch_size = eval_batch_size
        self.score_fn = score_fn
        self.runtime = runtime  # precision, memory format, compiled forward (engine/runtime.py); None: plain
        self.group = group or Group()   # DDP: each rank scores its share (engine/distributed.py)
        self.model_hint = model_hint
        self.strategy_name = ""   # for the message when there is no model (set by the step)
        self.memory = ScoreMemory(num_samples, score_every) if score_every > 1 else None
        self.needs = LoopNeeds(scores=True)   # the strategy's, set by the step before each raw batch
        self.epoch = 0
        self.scored = 0
        self.reused = 0
        #: told the data-set indices of every sample scored by a forward (engine/exposure.py)
        self.on_scored: Optional[Callable[[torch.Tensor], None]] = None

    def start_epoch(self, epoch: int, scored: int = 0, reused: int = 0) -> None:
        self.epoch, self.scored, self.reused = epoch, scored, reused

    def score_batch(self, indices: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> Scores:
        """Scores of samples ``indices``: a fresh forward, or (``score_every`` > 1) the recorded
        logits of those scored or trained recently, and a forward of the rest only. Strategies
        that need features always score fresh."""
        if self.memory is None or self.needs.features:
            self._scored(indices)
            return self.score(x, y)
        indices = indices.cpu()
        reuse = self.memory.fresh(indices, self.epoch)
        if not bool(reuse.any()):
            self._scored(indices)
            scores = self.score(x, y)
            self.memory.record(indices, scores.logits, self.epoch)
            return scores
        logits = self.memory.logits[indices].to(x.device)
        stale = ~reuse
        if bool(stale.any()):
            on_device = stale.to(x.device)
            self._scored(indices[stale])
            fresh = self.score(x[on_device], y[on_device])
            logits[on_device] = fresh.logits
            self.memory.record(indices[stale], fresh.logits, self.epoch)
        self.reused += int(reuse.sum())
        return Scores(logits=logits, losses=self.score_fn(logits, y).float())

    def _scored(self, indices: torch.Tensor) -> None:
        if self.on_scored is not None:
            self.on_scored(indices)

    def record(self, indices: torch.Tensor, logits: torch.Tensor) -> None:
        """A training forward's logits are the newest scores of its samples."""
        if self.memory is not None:
            self.memory.record(indices, logits, self.epoch)

    @torch.no_grad()
    def score(self, x: torch.Tensor, y: torch.Tensor) -> Scores:
        """No-grad forward in eval mode (``scoring_mode=train`` keeps train mode); the model's
        own mode is restored afterwards. Under DDP each rank runs its share and one all-gather
        gives every rank the whole."""
        model, needs, runtime, group = self.model, self.needs, self.runtime, self.group
        if model is None:
            raise ValueError(f"strategy {self.strategy_name!r} scores samples with the model, "
                             f"but none was given{self.model_hint}")
        was_training = model.training
        model.train(needs.scoring_mode == "train")
        features = None
        total = int(y.shape[0])
        a, b = group.span(total)
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
        self.scored += total
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
            return Scores(empty.reshape(0, 0), empty), empty.long()
        return (Scores(torch.cat([p.logits for p in parts]), torch.cat([p.losses for p in parts])),
                torch.cat(labels))

    def state_dict(self) -> dict:
        return {} if self.memory is None else {"score_memory": self.memory.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.memory is not None and state.get("score_memory") is not None:
            self.memory.load_state_dict(state["score_memory"])
