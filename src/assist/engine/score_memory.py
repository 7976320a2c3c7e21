"""Recorded scores, reused while fresh enough: ``score_every`` (docs/speed.md).

Selective Backprop's "stale" variant, generalised to every strategy that scores: each
sample's latest logits are recorded, from its scoring forward or from its training forward,
with the epoch they were recorded in. With ``score_every = n > 1``, a sample is scored again
only when its record is ``n`` or more epochs old. Otherwise its recorded logits stand in for
the forward, and the losses are recomputed from them. With ``n = 1`` (the default) nothing is
recorded and every score is fresh.

Memory: one float32 row of logits per training sample (50,000 x 10 classes: 2 MB; 1.28 M x
1,000 classes: 5 GB, so leave it off for ImageNet-scale data). It is checkpointed with the run,
so a resumed run reuses exactly what the uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Optional

import torch


class ScoreMemory:
    def __init__(self, num_samples: int, every: int) -> None:
        self.every = every
        self.num_samples = num_samples
        self.logits: Optional[torch.Tensor] = None   # made at the first record (its width: the classes)
        self.epoch = torch.full((num_samples,), -(10**9), dtype=torch.long)  # never recorded

    def fresh(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Which of ``indices`` hold a record young enough to reuse at ``epoch``."""
        return (epoch - self.epoch[indices]) < self.every

    def record(self, indices: torch.Tensor, logits: torch.Tensor, epoch: int) -> None:
        indices = indices.cpu()
        if self.logits is None:
            self.logits = torch.zeros(self.num_samples, int(logits.shape[1]))
        self.logits[indices] = logits.detach().float().cpu()
        self.epoch[indices] = epoch

    def state_dict(self) -> dict[str, Any]:
        return {"logits": None if self.logits is None else self.logits.clone(), "epoch": self.epoch.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits = None if state["logits"] is None else state["logits"].clone()
        self.epoch.copy_(state["epoch"])
