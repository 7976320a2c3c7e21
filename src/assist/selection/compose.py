"""Filter first, then select (thesis Algorithms 5 and 6).

A filter mask decides which samples may be trained on; a selector then picks among those
by loss. When fewer than ``k`` samples pass, the thesis "defaults back to SGD" and fills up
with uniformly random samples from those that did not pass (section 3.2.1).
"""

from __future__ import annotations

import torch

from ._checks import check_losses, check_mask, empty_positions
from .filters import _split, per_sample_cross_entropy
from .selectors import Count, resolve_count, select, top_k, uniform_random

Tensor = torch.Tensor


def filter_then_select(
    mask: Tensor,
    losses: Tensor | None,
    selector: str | None,
    k: Count | None = None,
    generator: torch.Generator | None = None,
    *,
    q: float = 0.5,
    buckets: int = 2,
    power: float = 2.0,
    fill_random: bool = True,
    split: str = "prose",
    quota: str = "share",
) -> Tensor:
    """Positions (ascending) chosen from a batch of N = ``mask.numel()`` samples.

    - ``selector`` None: every sample that passed ``mask`` (``losses`` may be None).
    - otherwise the named selector (``SELECTOR_NAMES``) runs on the samples that passed;
      count selectors take ``min(k, passed)``, ``top_q`` keeps its variable count.
    - ``k`` (an int, or a fraction in (0, 1) *of the whole batch N*) is required by the
      count selectors. When ``fill_random`` and fewer than k samples were *selected*,
      ``k - selected`` uniformly random samples that were not selected are added, those that
      did not pass first (the thesis's "defaulting back to SGD"), so count selectors and
      ``top_q`` return exactly ``min(k, N)``. Nothing is filled when ``k`` is None.
    """
    check_mask(mask, None, "mask")
    n = mask.numel()
    count = None if k is None else resolve_count(k, n)
    if selector is None:
        device = losses.device if isinstance(losses, Tensor) else mask.device
        mask = mask.to(device)
        chosen = mask.nonzero().squeeze(1)
    else:
        check_losses(losses, n)
        device = losses.device
        mask = mask.to(device)
        chosen = select(selector, losses, count, generator, candidates=mask,
                        q=q, buckets=buckets, power=power, split=split, quota=quota)
    if not fill_random or count is None:
        return chosen
    return fill_up(chosen, mask, count, generator)


def fill_up(chosen: Tensor, passed: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """``chosen`` topped up to ``count`` positions with uniformly random ones not chosen:
    first those that did not pass the filter (the thesis's "defaulting back to SGD"), then,
    if still short, passed ones the selector left out. Positions ascending."""
    missing = count - int(chosen.numel())
    if missing <= 0:
        return chosen
    n, device = passed.numel(), chosen.device
    passed = passed.to(device)
    failed = ~passed
    fill = uniform_random(n, min(missing, int(failed.sum())), generator, candidates=failed, device=device)
    if missing > fill.numel():
        unpicked = passed.clone()
        unpicked[chosen] = False
        fill = torch.cat([fill, uniform_random(n, missing - fill.numel(), generator, candidates=unpicked,
                                               device=device)])
    return torch.sort(torch.cat([chosen, fill])).values


def soft_filter_top_k(
    logits: Tensor,
    labels: Tensor,
    losses: Tensor | None,
    k: Count,
    margin: float,
) -> Tensor:
    """Algorithm 6, faithfully: the top-``k`` misclassified samples by loss, plus *all*
    correctly classified samples whose top-two softmax probabilities differ by at most
    ``margin`` (so the result may exceed k). No random fill. ``k`` is an int or a fraction
    of the batch size N. ``losses`` None means per-sample cross-entropy. Positions ascending.
    """
    wrong, marginal = _split(logits, labels, margin)
    n = wrong.numel()
    if losses is None:
        losses = per_sample_cross_entropy(logits, labels).detach()
    check_losses(losses, n)
    count = resolve_count(k, n)
    wrong, marginal = wrong.to(losses.device), marginal.to(losses.device)
    hardest = top_k(losses, count, candidates=wrong) if count else empty_positions(losses.device)
    return torch.sort(torch.cat([hardest, marginal.nonzero().squeeze(1)])).values
