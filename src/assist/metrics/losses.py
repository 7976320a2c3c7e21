"""Accuracy and loss statistics of one split (thesis 4.1)."""

from __future__ import annotations

import torch

LOSS_QUANTILES = (0.5, 0.9, 0.99)


def loss_statistics(split: str, losses: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """``<split>_accuracy``, ``<split>_loss_{mean,best,worst,q50,q90,q99}`` from per-sample
    losses and correctness flags."""
    if losses.numel() == 0:
        raise ValueError(f"no samples to evaluate on the {split} split")
    losses = losses.detach().double().cpu()
    quantiles = torch.quantile(losses, torch.tensor(LOSS_QUANTILES, dtype=torch.float64))
    stats = {
        f"{split}_accuracy": float(correct.float().mean()),
        f"{split}_loss_mean": float(losses.mean()),
        f"{split}_loss_best": float(losses.min()),
        f"{split}_loss_worst": float(losses.max()),
    }
    for q, value in zip(LOSS_QUANTILES, quantiles.tolist()):
        stats[f"{split}_loss_q{round(q * 100)}"] = value
    return stats
