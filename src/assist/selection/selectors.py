"""Loss-based selectors (thesis section 3.2.1, Algorithms 3 and 4).

Each selector takes per-sample ``losses`` (N,) and returns int64 *positions* into the
batch, sorted ascending. An optional bool ``candidates`` mask restricts the pool; positions
still index the full batch. Inputs are never modified. Random selectors draw from the
caller's ``torch.Generator`` on the generator's own device and move the result, so a CPU
generator can drive selection on CUDA tensors.

``k`` is an int count or a float fraction in (0, 1) of the pool (see ``resolve_count``).
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import torch

from ._checks import (
    check_int,
    check_losses,
    check_real,
    empty_positions,
    pool_positions,
    random_permutation,
    require_generator,
)

Tensor = torch.Tensor
Count = int | float

# Relative weight floor of the loss-weighted selector: a zero-loss sample weighs 1e-9 of
# the largest loss, so all-zero losses give a uniform draw and k may exceed the number of
# non-zero losses, while the probabilities of positive losses are unchanged in practice.
WEIGHT_FLOOR = 1e-9


def resolve_count(k: Count, n: int) -> int:
    """How many of ``n`` samples ``k`` asks for, clipped to [0, n].

    An int is a count (``k <= 0`` gives 0, ``k > n`` gives n). A float in (0, 1) is a
    fraction of ``n``, rounded half up and at least 1 when ``n > 0``."""
    n = check_int(n, "n", 0)
    if isinstance(k, bool):
        raise ValueError(f"k must be an int count or a float fraction in (0, 1), got {k!r}")
    if isinstance(k, numbers.Integral):
        return max(0, min(int(k), n))
    if isinstance(k, numbers.Real):
        fraction = check_real(k, "k (as a fraction)", 0.0, 1.0, closed=False)
        return 0 if n == 0 else min(n, max(1, math.floor(fraction * n + 0.5)))
    raise ValueError(f"k must be an int count or a float fraction in (0, 1), got {k!r}")


def top_k(losses: Tensor, k: Count, *, candidates: Tensor | None = None) -> Tensor:
    """The ``k`` largest losses (Algorithm 3); equal losses go to the lower position first."""
    check_losses(losses)
    pool = pool_positions(candidates, losses.numel(), losses.device)
    count = resolve_count(k, pool.numel())
    if count == 0:
        return empty_positions(losses.device)
    # A stable descending sort keeps the pool's ascending order among equal losses.
    order = torch.sort(losses[pool], descending=True, stable=True).indices[:count]
    return torch.sort(pool[order]).values


def top_q(losses: Tensor, q: float, *, candidates: Tensor | None = None) -> Tensor:
    """Every sample whose loss is at or above the ``q``-quantile of the pool's losses
    (``torch.quantile``, linear interpolation). The count varies: q=0 keeps all, q=1 the
    maximum (with its ties)."""
    q = check_real(q, "q", 0.0, 1.0, closed=True)
    check_losses(losses)
    pool = pool_positions(candidates, losses.numel(), losses.device)
    if pool.numel() == 0:
        return empty_positions(losses.device)
    values = losses[pool]
    if values.dtype not in (torch.float32, torch.float64):  # quantile needs float/double
        values = values.float()
    threshold = torch.quantile(values, q)
    return pool[values >= threshold]


def loss_weighted_random(
    losses: Tensor,
    k: Count,
    generator: torch.Generator | None = None,
    *,
    candidates: Tensor | None = None,
) -> Tensor:
    """``k`` samples without replacement, each draw with probability proportional to the
    loss (clamped at 0) among those not yet drawn (``torch.multinomial``).

    A floor of ``WEIGHT_FLOOR`` times the largest loss is added to every weight, so zero
    losses can still be drawn once the positive ones run out, and all-zero losses give a
    uniform draw. For k=1 the probability of sample i is loss_i / sum(loss)."""
    check_losses(losses)
    pool = pool_positions(candidates, losses.numel(), losses.device)
    count = resolve_count(k, pool.numel())
    if count == 0:
        return empty_positions(losses.device)
    gen = require_generator(generator, "loss_weighted_random")
    dtype = torch.float32 if gen.device.type == "mps" else torch.float64
    weights = losses[pool].to(device=gen.device, dtype=dtype).clamp_min(0)
    scale = weights.max().clamp_min(torch.finfo(dtype).tiny)
    weights = weights / scale + WEIGHT_FLOOR
    picked = torch.multinomial(weights, count, replacement=False, generator=gen)
    return torch.sort(pool[picked.to(losses.device)]).values


QSPLIT_RULES = ("prose", "literal")


def _sorted_bucket_ids(sorted_losses: Tensor, buckets: int, power: float, rule: str = "prose") -> Tensor:
    """Bucket of each loss in an ascending sequence (``rule``: see ``loss_qsplit_random``)."""
    if rule == "prose":
        return _mass_bucket_ids(sorted_losses, buckets, power)
    if rule == "literal":
        return _literal_bucket_ids(sorted_losses, buckets, power)
    raise ValueError(f"q-split rule must be one of {', '.join(QSPLIT_RULES)}; got {rule!r}")


def _mass_bucket_ids(sorted_losses: Tensor, buckets: int, power: float) -> Tensor:
    """The prose of thesis 3.2.1: q equal portions of the cumulative loss**power mass, each
    sample in the portion that holds most of its own mass (ties go to the higher portion).
    A dominant sample can so form the top portion alone, and the top portion always holds
    the largest sample. All-zero mass: every sample in the last bucket (a uniform draw)."""
    mass = sorted_losses.to(torch.float64).clamp_min(0).pow(power)
    high = torch.cumsum(mass, dim=0)
    total = high[-1]
    if not total > 0:
        return torch.full((mass.numel(),), buckets - 1, dtype=torch.int64, device=mass.device)
    size = total / buckets
    low = high - mass
    first = torch.floor(low / size).long().clamp(0, buckets - 1)
    last = (torch.ceil(high / size).long() - 1).clamp(0, buckets - 1)
    last = torch.maximum(first, last)
    first_share = (first + 1) * size - low          # mass inside the first portion it touches
    last_share = high - last * size                  # mass inside the last one
    spans_middle = last - first >= 2                 # whole portions in between hold `size` each
    slack = 1e-9 * total                             # equal shares up to rounding are ties
    pick_last = last_share + slack >= torch.maximum(first_share, torch.where(spans_middle, size, first_share))
    pick_middle = ~pick_last & spans_middle & (size + slack >= first_share)
    return torch.where(pick_last, last, torch.where(pick_middle, last - 1, first))


def _literal_bucket_ids(sorted_losses: Tensor, buckets: int, power: float) -> Tensor:
    """Bucket of each loss in an ascending sequence: Algorithm 4, lines 5-14, vectorised.

    The thesis loop appends sample t to bucket b, then moves on to b+1 when the cumulative
    mass c[t] of loss**power reaches the cut (b+1) * total/buckets. So the bucket moves at
    most one step per sample: b[t+1] = min(b[t] + 1, g[t]) with g[t] the number of cuts at
    or below c[t]. Unrolled, b[t] = t - 1 + min(1, min over s < t of (g[s] - s)), a running
    minimum (``torch.cummin``), with no per-sample loop. The last bucket absorbs the rest.
    All-zero mass carries no loss information: every sample goes to the last bucket, which
    makes the draw uniform."""
    mass = sorted_losses.to(torch.float64).clamp_min(0).pow(power)
    cumulative = torch.cumsum(mass, dim=0)
    total = cumulative[-1]
    cuts = (total / buckets) * torch.arange(1, buckets + 1, dtype=torch.float64,
                                            device=mass.device)
    reached = torch.searchsorted(cuts, cumulative, right=True)  # g[t]: cuts <= c[t]
    steps = torch.arange(mass.numel(), device=mass.device)
    lag = torch.cummin(reached - steps, dim=0).values.clamp_max(1)
    ids = torch.cat([steps.new_zeros(1), steps[1:] - 1 + lag[:-1]]).clamp_max(buckets - 1)
    return torch.where(total > 0, ids, torch.full_like(ids, buckets - 1))


def qsplit_buckets(
    losses: Tensor, buckets: int = 2, power: float = 2.0, *, candidates: Tensor | None = None,
    rule: str = "prose",
) -> Tensor:
    """Bucket id (0 = lowest losses) of every position under ``loss_qsplit_random``'s split;
    -1 outside ``candidates``. Ties in loss are ordered by position."""
    buckets = check_int(buckets, "buckets", 1)
    power = _check_power(power)
    check_losses(losses)
    ids = torch.full((losses.numel(),), -1, dtype=torch.int64, device=losses.device)
    pool = pool_positions(candidates, losses.numel(), losses.device)
    if pool.numel():
        order = torch.sort(losses[pool], stable=True).indices
        ids[pool[order]] = _sorted_bucket_ids(losses[pool][order], buckets, power, rule)
    return ids


def _check_power(power: object) -> float:
    p = check_real(power, "power", 0.0, math.inf, closed=False)
    if math.isinf(p):
        raise ValueError(f"power must be finite and > 0, got {power!r}")
    return p


QSPLIT_QUOTAS = ("share", "literal")


def split_quota(count: int, sizes: list[int], quota: str = "share") -> list[int]:
    """How many to draw from each bucket (water-filling, loops over buckets only).

    Each bucket's share is ``count // len(sizes)``, the remainder one apiece to the
    highest-loss buckets (the last ones). ``quota="share"`` (default): a bucket holding no
    more than its share gives all it has and the shortfall is shared out the same way among
    the others, so the total is ``min(count, sum(sizes))`` and buckets below capacity differ
    by at most one. ``quota="literal"`` (Algorithm 4 as printed: k/q from each bucket): a
    short bucket gives what it has and the total falls short. docs/thesis.md says why the
    default shares."""
    if quota not in QSPLIT_QUOTAS:
        raise ValueError(f"q-split quota must be one of {', '.join(QSPLIT_QUOTAS)}; got {quota!r}")
    if quota == "literal":
        share, extra = divmod(count, len(sizes))
        return [min(size, share + (j >= len(sizes) - extra)) for j, size in enumerate(sizes)]
    take = [0] * len(sizes)
    remaining = min(count, sum(sizes))
    open_buckets = list(range(len(sizes)))
    while remaining > 0:
        share = remaining // len(open_buckets)
        small = [j for j in open_buckets if sizes[j] <= share]
        if small:  # these give everything; the rest share what is left
            for j in small:
                take[j] = sizes[j]
                remaining -= sizes[j]
            open_buckets = [j for j in open_buckets if j not in small]
            continue
        extra = remaining - share * len(open_buckets)
        for rank, j in enumerate(open_buckets):
            take[j] = share + (rank >= len(open_buckets) - extra)
        remaining = 0
    return take


def loss_qsplit_random(
    losses: Tensor,
    k: Count,
    buckets: int = 2,
    power: float = 2.0,
    generator: torch.Generator | None = None,
    *,
    candidates: Tensor | None = None,
    rule: str = "prose",
    quota: str = "share",
) -> Tensor:
    """Loss q-split random selector (Algorithm 4): sort ascending, cut the cumulative sum of
    loss**power into ``buckets`` equal portions and draw uniformly without replacement the
    same share of ``k`` from each portion (``quota``: see ``split_quota``).

    ``rule="prose"`` (default) follows the text of 3.2.1: a sample belongs to the portion in
    which most of its mass lies, so with a high power one portion may be a handful of
    high-loss samples ("a q-th part of the selection comes from a small number of high-loss
    samples"). ``rule="literal"`` is the pseudo-code: the sample that crosses a cut stays in
    the lower bucket, which with heavy-tailed losses often leaves the top bucket empty.
    docs/thesis.md says why the default follows the prose."""
    buckets = check_int(buckets, "buckets", 1)
    power = _check_power(power)
    check_losses(losses)
    pool = pool_positions(candidates, losses.numel(), losses.device)
    count = resolve_count(k, pool.numel())
    if count == 0:
        return empty_positions(losses.device)
    gen = require_generator(generator, "loss_qsplit_random")
    device = losses.device
    order = torch.sort(losses[pool], stable=True).indices  # ascending loss
    bucket = _sorted_bucket_ids(losses[pool][order], buckets, power, rule)
    sizes = torch.bincount(bucket, minlength=buckets)
    take = torch.tensor(split_quota(count, sizes.tolist(), quota), device=device)
    # Random order, then a stable sort by bucket: each bucket's members end up contiguous
    # and uniformly shuffled, so taking the first take[b] of bucket b is a uniform draw.
    shuffled = random_permutation(pool.numel(), gen, device)
    grouped = shuffled[torch.sort(bucket[shuffled], stable=True).indices]
    group = bucket[grouped]
    starts = torch.cumsum(sizes, dim=0) - sizes
    rank = torch.arange(pool.numel(), device=device) - starts[group]
    chosen = grouped[rank < take[group]]
    return torch.sort(pool[order[chosen]]).values


def uniform_random(
    n: int,
    k: Count,
    generator: torch.Generator | None = None,
    *,
    candidates: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``k`` positions out of ``n`` (or out of ``candidates``) uniformly without replacement:
    the plain-SGD control, and the fill used when a filter passes too few samples."""
    n = check_int(n, "n", 0)
    if device is None:
        device = candidates.device if candidates is not None else torch.device("cpu")
    device = torch.device(device)
    pool = pool_positions(candidates, n, device)
    count = resolve_count(k, pool.numel())
    if count == 0:
        return empty_positions(device)
    gen = require_generator(generator, "uniform_random")
    picked = random_permutation(pool.numel(), gen, device)[:count]
    return torch.sort(pool[picked]).values


def _uniform_selector(losses: Tensor, k: Count, generator: torch.Generator | None = None,
                      *, candidates: Tensor | None = None) -> Tensor:
    check_losses(losses)
    return uniform_random(losses.numel(), k, generator, candidates=candidates,
                          device=losses.device)


SELECTORS: dict[str, Callable[..., Tensor]] = {
    "top_k": top_k,
    "top_q": top_q,
    "loss_weighted": loss_weighted_random,
    "q_split": loss_qsplit_random,
    "uniform": _uniform_selector,
}
SELECTOR_NAMES: tuple[str, ...] = tuple(SELECTORS)
COUNT_SELECTORS = frozenset({"top_k", "loss_weighted", "q_split", "uniform"})


def select(
    name: str,
    losses: Tensor,
    k: Count | None = None,
    generator: torch.Generator | None = None,
    *,
    candidates: Tensor | None = None,
    q: float = 0.5,
    buckets: int = 2,
    power: float = 2.0,
    split: str = "prose",
    quota: str = "share",
) -> Tensor:
    """Run the selector called ``name`` with one calling convention for all of them.

    ``k`` is required except for ``top_q`` (variable count, ignores ``k``); ``q`` is used by
    ``top_q``, ``buckets``/``power`` by ``q_split``; ``generator`` by the random ones."""
    if name not in SELECTORS:
        raise ValueError(f"selector must be one of {', '.join(SELECTOR_NAMES)}; got {name!r}")
    if name == "top_q":
        return top_q(losses, q, candidates=candidates)
    if k is None:
        raise ValueError(f"k is required for selector {name!r} (an int count or a fraction)")
    if name == "top_k":
        return top_k(losses, k, candidates=candidates)
    if name == "q_split":
        return loss_qsplit_random(losses, k, buckets, power, generator, candidates=candidates, rule=split,
                                  quota=quota)
    return SELECTORS[name](losses, k, generator, candidates=candidates)
