"""Batch accumulation (Algorithm 10): gather accepted samples into batches of exactly
``batch_size``. Tensors are kept as a list of chunks and concatenated only when a batch is
popped, so each raw batch costs one append."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class Chunk:
    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor
    weights: Optional[torch.Tensor]

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _cat_weights(chunks: list[Chunk]) -> Optional[torch.Tensor]:
    if all(c.weights is None for c in chunks):
        return None
    return torch.cat([c.weights if c.weights is not None else torch.ones_like(c.y, dtype=torch.float32)
                      for c in chunks])


def concat(chunks: list[Chunk]) -> Chunk:
    return Chunk(torch.cat([c.x for c in chunks]), torch.cat([c.y for c in chunks]),
                 torch.cat([c.indices for c in chunks]), _cat_weights(chunks))


class BatchAccumulator:
    """Buffer of accepted samples. ``overflow="discard"`` drops what is left after a batch
    is taken (the thesis's behaviour); ``"carry"`` keeps it for the next batch."""

    def __init__(self, batch_size: int, overflow: str = "discard") -> None:
        if overflow not in ("discard", "carry"):
            raise ValueError(f"overflow must be 'discard' or 'carry', got {overflow!r}")
        self.batch_size = batch_size
        self.overflow = overflow
        self.chunks: list[Chunk] = []
        self.size = 0

    def add(self, chunk: Chunk) -> None:
        if len(chunk):
            self.chunks.append(chunk)
            self.size += len(chunk)

    def ready(self) -> bool:
        return self.size >= self.batch_size

    def pop(self) -> tuple[Chunk, int]:
        """Take exactly ``batch_size`` samples (oldest first); returns the batch and how many
        accepted samples were discarded as overflow."""
        if not self.ready():
            raise RuntimeError("accumulator holds fewer than batch_size samples")
        merged = concat(self.chunks)
        n = self.batch_size
        batch = Chunk(merged.x[:n], merged.y[:n], merged.indices[:n],
                      None if merged.weights is None else merged.weights[:n])
        rest = Chunk(merged.x[n:], merged.y[n:], merged.indices[n:],
                     None if merged.weights is None else merged.weights[n:])
        self.chunks, self.size = [], 0
        if self.overflow == "carry":
            self.add(rest)
            return batch, 0
        return batch, len(rest)

    def pop_partial(self) -> Optional[Chunk]:
        """Everything buffered (fewer than ``batch_size``), emptying the buffer."""
        if not self.size:
            return None
        merged = concat(self.chunks)
        self.chunks, self.size = [], 0
        return merged

    def state_dict(self) -> dict:
        merged = concat(self.chunks) if self.chunks else None
        if merged is None:
            return {"size": 0}
        return {"size": self.size, "x": merged.x.cpu(), "y": merged.y.cpu(),
                "indices": merged.indices.cpu(), "weights": None if merged.weights is None else merged.weights.cpu()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.chunks, self.size = [], 0
        if state.get("size"):
            w = state.get("weights")
            self.add(Chunk(state["x"].to(device), state["y"].to(device), state["indices"],
                           None if w is None else w.to(device)))
