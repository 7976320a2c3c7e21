"""Argument checks and device helpers shared by the selection functions.

Every check raises ``ValueError`` with a one-line message that names the offending
argument, so a bad config value is traced back to its key at once.
"""

from __future__ import annotations

import math
import numbers

import torch

Tensor = torch.Tensor


def check_losses(losses: object, n: int | None = None, name: str = "losses") -> Tensor:
    """A 1-D floating tensor of finite per-sample losses (NaN/inf mean a diverged run)."""
    if not isinstance(losses, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(losses).__name__}")
    if losses.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(losses.shape)}")
    if not losses.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {losses.dtype}")
    if n is not None and losses.numel() != n:
        raise ValueError(f"{name} must have {n} entries (one per sample), got {losses.numel()}")
    if losses.numel() and not bool(torch.isfinite(losses).all()):
        raise ValueError(f"{name} must be finite; got NaN or inf (diverged model?)")
    return losses


def check_mask(mask: object, n: int | None, name: str) -> Tensor:
    """A 1-D bool tensor, of length ``n`` when given."""
    if not isinstance(mask, Tensor):
        raise ValueError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError(
            f"{name} must be a 1-D bool tensor, got {mask.dtype} of shape {tuple(mask.shape)}"
        )
    if n is not None and mask.numel() != n:
        raise ValueError(f"{name} must have {n} entries (one per sample), got {mask.numel()}")
    return mask


def check_logits_labels(logits: object, labels: object) -> tuple[Tensor, Tensor]:
    """``logits`` (N, C) floating with C >= 1 and ``labels`` (N,) integer class ids."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating tensor of shape (N, C), got {shape}")
    if logits.shape[1] < 1:
        raise ValueError("logits must have at least one class column, got C=0")
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor of class ids, got {shape}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() != logits.shape[0]:
        raise ValueError(
            f"labels must have one entry per logits row: {labels.numel()} labels, "
            f"{logits.shape[0]} rows"
        )
    return logits, labels.to(device=logits.device, dtype=torch.int64)


def check_real(value: object, name: str, low: float, high: float, *, closed: bool) -> float:
    """A real number in [low, high] (``closed``) or (low, high) (open); bools refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    inside = (low <= v <= high) if closed else (low < v < high)
    if not inside or math.isnan(v):
        bounds = f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")
    return v


def check_int(value: object, name: str, low: int) -> int:
    """An int >= ``low``; bools refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def require_generator(generator: torch.Generator | None, what: str) -> torch.Generator:
    """Random draws must come from a generator the run owns (never the global RNG)."""
    if generator is None:
        raise ValueError(
            f"generator is required for {what}: pass the run's torch.Generator "
            "(the global RNG is never used)"
        )
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator


def random_permutation(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``randperm(n)`` drawn on the generator's device, then moved to ``device``.

    A CPU generator can thus drive selection on CUDA tensors (and vice versa)."""
    perm = torch.randperm(n, generator=generator, device=generator.device)
    return perm.to(device)


def pool_positions(candidates: Tensor | None, n: int, device: torch.device) -> Tensor:
    """Ascending positions of the candidate pool (every position when no mask is given)."""
    if candidates is None:
        return torch.arange(n, device=device)
    check_mask(candidates, n, "candidates")
    return candidates.to(device).nonzero().squeeze(1)


def empty_positions(device: torch.device) -> Tensor:
    return torch.empty(0, dtype=torch.int64, device=device)
