"""Accuracy filters (thesis Algorithms 6 and 7) and the per-sample loss they pair with.

Filters look only at the model's predictions: they return a bool mask of shape (N,)
saying which samples are still worth training on. They never need the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_logits_labels, check_real

Tensor = torch.Tensor


def misclassified_mask(logits: Tensor, labels: Tensor) -> Tensor:
    """Hard accuracy filter (Algorithm 7): True where ``argmax(logits) != label``.

    On tied maxima ``argmax`` takes the first column, as ``torch.argmax`` does."""
    logits, labels = check_logits_labels(logits, labels)
    return logits.argmax(dim=1) != labels


def top2_margin(logits: Tensor) -> Tensor:
    """Top-1 minus top-2 softmax probability per row, in [0, 1] (float32 or wider).

    Softmax runs in at least float32 so half-precision logits give a usable margin."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        raise ValueError("logits must be a floating tensor of shape (N, C)")
    if logits.shape[1] < 2:
        raise ValueError(
            f"logits needs at least 2 classes for a top-2 margin, got C={logits.shape[1]}"
        )
    work = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
    top2 = work.softmax(dim=1).topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def marginal_mask(logits: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Correctly classified samples whose top-two softmax probabilities differ by at most
    ``margin`` (the extra samples the soft filter keeps, Algorithm 6 lines 6-13)."""
    return _split(logits, labels, margin)[1]


def soft_accuracy_mask(logits: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Soft accuracy filter (Algorithm 6): misclassified, or correct with
    ``p_top1 - p_top2 <= margin``. ``margin`` (the config's ``soft_margin``) is in (0, 1)."""
    wrong, marginal = _split(logits, labels, margin)
    return wrong | marginal


def _split(logits: Tensor, labels: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """(misclassified, correct-but-marginal): disjoint bool masks of shape (N,)."""
    margin = check_real(margin, "soft_margin", 0.0, 1.0, closed=False)
    logits, labels = check_logits_labels(logits, labels)
    if logits.shape[1] < 2:
        raise ValueError(
            f"logits has C={logits.shape[1]} class; soft_margin needs at least 2 classes"
        )
    wrong = logits.argmax(dim=1) != labels
    # With tied top probabilities the margin is 0, so a tie counts as marginal whichever
    # column argmax picked: the two masks agree on ties.
    marginal = ~wrong & (top2_margin(logits) <= margin)
    return wrong, marginal


def per_sample_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy per sample, shape (N,) (``reduction='none'``); differentiable."""
    logits, labels = check_logits_labels(logits, labels)
    return F.cross_entropy(logits, labels, reduction="none")
