"""The strategy interface: what a sampling strategy decides, independent of any loop.

A strategy answers a few questions at fixed points of the loop (docs/architecture.md):

* ``needs``       what the loop must do for it: score raw batches, accumulate, overflow
                  policy, whether it filters (and so may starve an epoch);
* ``raw_batch_size`` how many planned samples make the next raw batch;
* ``plan_epoch``  which training indices this epoch visits, in which order;
* ``select``      which samples of a raw batch to train on (optionally with loss weights);
* ``feedback``    what the training step saw: indices, per-sample losses, logits, labels;
* ``state_dict``  everything needed to resume it.

It never touches a model or an optimizer: scoring over data-set indices, and training an
auxiliary reference model (RHO-LOSS), go through the ``StrategyContext`` the loop provides.
Only :class:`assist.engine.step.SelectionStep` calls these methods during training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import torch

from assist.config import TrainConfig
from assist.strategies.options import StrategyParams

if TYPE_CHECKING:  # pragma: no cover
    from assist.data.base import ImageDataset


@dataclass
class RawBatch:
    """A raw mini-batch: data-set indices (CPU int64) with the model-ready inputs and labels."""

    indices: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass
class Scores:
    """No-grad forward results for a batch: logits and per-sample cross-entropy losses, and
    the penultimate features when the strategy asks for them (``LoopNeeds.features``)."""

    logits: torch.Tensor
    losses: torch.Tensor
    features: Optional[torch.Tensor] = None


@dataclass
class Selection:
    """Positions (into the raw batch) to train on, with optional per-sample loss weights."""

    keep: torch.Tensor
    weights: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.keep.shape[0])


@dataclass(frozen=True)
class LoopNeeds:
    """What the loop must do for a strategy; asked before every raw batch (it may change
    between epochs, e.g. Selective Backprop scores only in its scoring epochs)."""

    scores: bool = False               # a no-grad forward of each raw batch before ``select``
    accumulate: bool = False           # gather selected samples into batches of exactly batch_size
    overflow: str = "discard"          # accumulated samples beyond a full batch: discard | carry
    starved_epoch: Optional[str] = None  # rejects samples: the policy for an epoch that starves
    scoring_mode: str = "eval"         # model mode of scoring forwards: eval | train
    features: bool = False             # scoring also returns the penultimate features (models/)
    replay_view: bool = False          # train on the augmented view the epoch plan was scored on

    @property
    def filters(self) -> bool:
        return self.starved_epoch is not None


@dataclass(frozen=True)
class RunSetup:
    """The few facts of the run a strategy may read besides its own options."""

    batch_size: int
    epochs: int
    rng_seed: int
    model: str
    device: str
    eval_batch_size: int

    @classmethod
    def from_config(cls, config: TrainConfig) -> "RunSetup":
        return cls(config.batch_size, config.epochs, config.rng_seed, config.model, config.device,
                   config.eval_batch_size)


@dataclass(frozen=True)
class ReferenceSpec:
    """A reference model to train on some training samples (RHO-LOSS's irreducible-loss model)."""

    model: str
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    train_indices: torch.Tensor        # training-set indices it trains on


@dataclass
class ReferenceResult:
    """The trained reference model's loss on every training sample, and what it cost."""

    losses: torch.Tensor
    samples_trained: int
    samples_scored: int
    seconds: float


@dataclass
class StrategyContext:
    """What a strategy may use from its surroundings.

    ``score_indices(indices) -> (Scores, labels)`` runs a no-grad forward over training samples
    (counted as scoring cost). ``train_reference`` trains a reference model through the
    engine's trainer (None where the loop has no in-memory data set). Generators are the run's.
    """

    num_samples: int
    batch_size: int
    epochs: int
    shuffle_generator: torch.Generator
    select_generator: torch.Generator
    score_indices: Callable[[torch.Tensor], tuple[Scores, torch.Tensor]]
    labels: Optional[torch.Tensor] = None
    data: Optional["ImageDataset"] = None
    train_reference: Optional[Callable[[ReferenceSpec], ReferenceResult]] = None


class Strategy:
    """Base class; the archetype behaviour (shuffle everything, train on everything)."""

    name: ClassVar[str] = "base"
    #: the config keys this strategy takes, a class of assist.strategies.options.StrategyParams
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams, setup: RunSetup) -> None:
        """``params``: this strategy's options, already validated (``validate_run``)."""
        self.params = params
        self.setup = setup
        #: a peer method's own options (its ``strategy_options``); None for the thesis's strategies
        self.options: Any = getattr(params, "strategy_options", None)

    # -- shape of the loop
    def needs(self) -> LoopNeeds:
        return LoopNeeds()

    def raw_batch_size(self) -> int:
        """Size of the next raw batch; the loop asks before each one."""
        return self.setup.batch_size

    # -- decisions
    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        return Selection(keep=torch.arange(len(batch), device=batch.y.device))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                 labels: torch.Tensor) -> None:
        """The samples just trained on: indices, per-sample losses (before weights), the
        training forward's logits and the labels, all detached."""

    # -- bookkeeping
    def epoch_metrics(self) -> dict[str, Any]:
        """Strategy-specific numbers for this epoch's metrics row."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"strategy {self.name!r} has no state to load, got keys {sorted(state)}")
