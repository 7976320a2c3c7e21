"""Importance sampling with a variance-reduction switch (Katharopoulos & Fleuret, ICML 2018).

Score: the norm of the loss gradient with respect to the logits, ``||softmax(z) - onehot(y)||``
for cross-entropy (the paper's upper bound of the per-sample gradient norm).

While off, the run is plain SGD: raw batches of ``b = batch_size`` are trained on as they are
(no scoring forward) and the scores come from the training forward's logits. While on, a raw
batch of ``B = presample * b`` samples is scored by a no-grad forward, ``b`` positions are
drawn *with replacement* with probability ``p_i = g_i / sum(g)``, and each gets the weight
``1 / (B p_i)`` so the weighted mean gradient is an unbiased estimate of the raw batch's mean.

The switch: ``tau`` is a moving average (momentum 0.9) of the variance-reduction estimate
``(1 - ||g - u||^2 / ||g||^2)^(-1/2)`` of each scored batch (g normalised, u uniform), which
simplifies to ``sqrt(n * sum(g^2))``; importance sampling is on while ``tau`` exceeds
``(B + 3b) / (3b)`` (eq. 29 of the paper). It is checked before each raw batch, and the
fraction of steps (raw batches) sampled with importance is recorded per epoch
(``is_on_fraction``). ``always_on`` skips the switch: every raw batch is sampled by
importance (the "grad norm IS" baseline of DivBS's benchmark, preset ``grad_norm_is``).

Differences from the paper: candidates come from the epoch's shuffled plan (each sample is
offered once per epoch) rather than uniformly with replacement from the whole data set, so
an epoch with importance sampling on trains on about 1/presample of its samples.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from pydantic import Field

from assist.strategies.base import LoopNeeds, RawBatch, RunSetup, Scores, Selection, Strategy, StrategyContext
from assist.strategies.options import ScoringKeys, StrategyOptions, peer_options
from assist.strategies.registry import register_strategy


class ImportanceSamplingOptions(StrategyOptions):
    presample: float = Field(default=3.0, gt=1.0, description="raw batch B over batch b (B / b)")
    tau_threshold: Optional[float] = Field(default=None, gt=0.0, description="variance-reduction estimate that "
                                           "switches sampling on; unset: (B + 3b) / (3b)")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="momentum of the estimate's moving average")
    always_on: bool = Field(False, description="sample by importance from the first step, no switch "
                                              "(preset grad_norm_is)")


def gradient_norm_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``||softmax(logits) - onehot(labels)||_2`` per sample: the norm of the cross-entropy
    gradient with respect to the logits."""
    probabilities = torch.softmax(logits.detach().float(), dim=1)
    probabilities[torch.arange(labels.shape[0], device=labels.device), labels] -= 1.0
    return probabilities.norm(dim=1)


def variance_reduction(scores: torch.Tensor) -> float:
    """The paper's estimate ``(1 - ||g - u||^2 / ||g||^2)^(-1/2)`` with ``g = scores / sum``;
    equals ``sqrt(n * sum(g^2))`` (1 for uniform scores, ``sqrt(n)`` for a single non-zero)."""
    n = int(scores.numel())
    total = float(scores.sum())
    if n == 0 or total <= 0.0:
        return 1.0
    g = scores.double() / total
    return math.sqrt(n * float((g * g).sum()))


def importance_sample(scores: torch.Tensor, count: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``count`` positions with replacement, ``p_i ∝ scores_i`` (uniform if all are 0),
    and their unbiased weights ``1 / (n p_i)``: ``E[w * x] = mean(x)`` over the n candidates."""
    n = int(scores.numel())
    scores = scores.detach().double().cpu()
    total = float(scores.sum())
    p = scores / total if total > 0 else torch.full((n,), 1.0 / n, dtype=torch.float64)
    positions = torch.multinomial(p, count, replacement=True, generator=generator)
    return positions, (1.0 / (n * p[positions])).float()


class ImportanceSamplingParams(ScoringKeys):
    strategy_options: ImportanceSamplingOptions = peer_options(ImportanceSamplingOptions)


@register_strategy
class ImportanceSampling(Strategy):
    name = "importance_sampling"
    Params = ImportanceSamplingParams

    def __init__(self, params: Any, setup: RunSetup) -> None:
        super().__init__(params, setup)
        b = setup.batch_size
        self.presample_size = max(b + 1, round(self.options.presample * b))
        big = self.presample_size
        self.threshold = self.options.tau_threshold or (big + 3 * b) / (3 * b)
        self.tau = 0.0
        self.last_on = False          # mode of the raw batch being trained
        self._batches = 0
        self._on_batches = 0

    @property
    def on(self) -> bool:
        return self.options.always_on or self.tau > self.threshold

    def needs(self) -> LoopNeeds:
        return LoopNeeds(scores=self.on, scoring_mode=self.params.scoring_mode)

    def raw_batch_size(self) -> int:
        return self.presample_size if self.on else self.setup.batch_size

    def _update_tau(self, scores: torch.Tensor) -> None:
        m = self.options.momentum
        self.tau = m * self.tau + (1.0 - m) * variance_reduction(scores)

    def plan_epoch(self, epoch: int, ctx: StrategyContext) -> torch.Tensor:
        self._batches = self._on_batches = 0
        return torch.randperm(ctx.num_samples, generator=ctx.shuffle_generator)

    def select(self, batch: RawBatch, scores: Optional[Scores], ctx: StrategyContext) -> Selection:
        device = batch.y.device
        n = len(batch)
        self._batches += 1
        self.last_on = scores is not None
        if not self.last_on:
            return Selection(keep=torch.arange(n, device=device))
        self._on_batches += 1
        g = gradient_norm_scores(scores.logits, batch.y).cpu()
        self._update_tau(g)
        # a short last raw batch keeps the b/B ratio
        count = max(1, round(n * self.setup.batch_size / self.presample_size))
        positions, weights = importance_sample(g, count, ctx.select_generator)
        return Selection(keep=positions.to(device), weights=weights.to(device))

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor,
                 labels: torch.Tensor) -> None:
        # while off, tau is estimated from the training forward (no extra cost)
        if not self.last_on:
            self._update_tau(gradient_norm_scores(logits, labels).cpu())

    def epoch_metrics(self) -> dict[str, Any]:
        return {"is_on_fraction": self._on_batches / self._batches if self._batches else None,
                "is_tau": self.tau, "is_tau_threshold": self.threshold}

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "last_on": self.last_on, "batches": self._batches, "on_batches": self._on_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau, self.last_on = float(state["tau"]), bool(state["last_on"])
        self._batches, self._on_batches = int(state["batches"]), int(state["on_batches"])
