"""What a Selector hands back per step, and how loader items and chunks become that."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from assist.engine.accumulate import Chunk
from assist.engine.scoring import cross_entropy_losses as cross_entropy_scores  # noqa: F401  (public name)


class TrainBatch(NamedTuple):
    """What to train on: inputs, targets, data-set indices (CPU) and per-sample loss weights."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    weights: torch.Tensor


def as_train_batch(chunk: Chunk) -> TrainBatch:
    weights = chunk.weights
    if weights is None:
        weights = torch.ones(len(chunk), dtype=torch.float32, device=chunk.y.device)
    return TrainBatch(chunk.x, chunk.y, chunk.indices, weights.to(chunk.y.device))


def unpack(item: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, index)`` from a loader item (extra fields between y and index are ignored)."""
    if not isinstance(item, (tuple, list)) or len(item) < 3:
        got = f"{len(item)} fields" if isinstance(item, (tuple, list)) else type(item).__name__
        raise ValueError(f"DataLoader batches must be (x, y, index), got {got}: wrap the dataset in IndexedDataset")
    return item[0], item[1], item[-1]
