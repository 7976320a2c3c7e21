"""Property tests (hypothesis) of the selection contract over arbitrary inputs."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from assist.selection import (
    SELECTOR_NAMES,
    filter_then_select,
    loss_qsplit_random,
    qsplit_buckets,
    resolve_count,
    select,
    split_quota,
    top_k,
    top_q,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)

small_ints = st.lists(st.integers(0, 5), min_size=0, max_size=40)  # many ties
floats = st.lists(st.floats(0.0, 100.0, allow_nan=False, width=32), min_size=0, max_size=40)
counts = st.one_of(st.integers(-2, 50), st.floats(0.01, 0.99))


@st.composite
def losses_and_mask(draw: st.DrawFn, values: st.SearchStrategy = floats
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    data = draw(values)
    losses = torch.tensor(data, dtype=torch.float64).reshape(-1)
    if draw(st.booleans()):
        return losses, None
    bits = draw(st.lists(st.booleans(), min_size=len(data), max_size=len(data)))
    return losses, torch.tensor(bits, dtype=torch.bool).reshape(-1)


@SETTINGS
@given(losses_and_mask(small_ints), counts)
def test_top_k_is_stable_reference(lm: tuple, k: int | float) -> None:
    losses, mask = lm
    pool = list(range(losses.numel())) if mask is None else mask.nonzero().squeeze(1).tolist()
    count = resolve_count(k, len(pool))
    expected = sorted(sorted(pool, key=lambda i: (-float(losses[i]), i))[:count])
    assert top_k(losses, k, candidates=mask).tolist() == expected


@SETTINGS
@given(losses_and_mask(), st.floats(0.0, 1.0))
def test_top_q_is_an_upper_set_of_the_right_size(lm: tuple, q: float) -> None:
    losses, mask = lm
    out = top_q(losses, q, candidates=mask)
    pool = torch.ones_like(losses, dtype=torch.bool) if mask is None else mask
    n = int(pool.sum())
    chosen = torch.zeros_like(pool)
    chosen[out] = True
    assert not (chosen & ~pool).any()
    rest = pool & ~chosen
    if chosen.any() and rest.any():
        assert losses[chosen].min() > losses[rest].max()  # every kept loss beats every other
    if n:
        # At least the samples strictly above the interpolation point are kept.
        assert out.numel() >= n - math.ceil(q * (n - 1) + 1e-9)
        assert out.numel() >= 1
    else:
        assert out.numel() == 0


@SETTINGS
@given(losses_and_mask(), counts, st.sampled_from(SELECTOR_NAMES), st.integers(0, 2**31),
       st.integers(1, 5), st.floats(0.1, 4.0))
def test_every_selector_keeps_the_contract(lm: tuple, k: int | float, name: str, seed: int,
                                           buckets: int, power: float) -> None:
    losses, mask = lm
    g = torch.Generator().manual_seed(seed)
    out = select(name, losses, k, g, candidates=mask, buckets=buckets, power=power)
    assert out.dtype == torch.int64 and torch.equal(out, out.unique())
    if mask is not None:
        assert mask[out].all()
    pool = losses.numel() if mask is None else int(mask.sum())
    if name != "top_q":
        assert out.numel() == resolve_count(k, pool)


@SETTINGS
@given(losses_and_mask(), st.integers(0, 50), st.integers(1, 6), st.floats(0.1, 4.0),
       st.integers(0, 2**31))
def test_qsplit_takes_the_quota_from_every_bucket(lm: tuple, k: int, buckets: int,
                                                  power: float, seed: int) -> None:
    losses, mask = lm
    ids = qsplit_buckets(losses, buckets, power, candidates=mask)
    pool = ids >= 0
    sizes = torch.bincount(ids[pool], minlength=buckets).tolist()
    # Buckets follow the loss order: a higher bucket never holds a smaller loss.
    for b in range(1, buckets):
        lower, upper = losses[ids == b - 1], losses[ids == b]
        if lower.numel() and upper.numel():
            assert lower.max() <= upper.min()
    g = torch.Generator().manual_seed(seed)
    out = loss_qsplit_random(losses, k, buckets, power, g, candidates=mask)
    got = torch.bincount(ids[out], minlength=buckets).tolist() if out.numel() else [0] * buckets
    assert got == split_quota(resolve_count(k, int(pool.sum())), sizes)


@SETTINGS
@given(st.integers(0, 200), st.lists(st.integers(0, 30), min_size=1, max_size=8))
def test_split_quota_is_fair_and_complete(count: int, sizes: list[int]) -> None:
    take = split_quota(count, sizes)
    assert sum(take) == min(count, sum(sizes))
    assert all(0 <= t <= s for t, s in zip(take, sizes))
    # A bucket below capacity gets at most one sample less than any other bucket.
    for t_open, s_open in zip(take, sizes):
        if t_open < s_open:
            assert max(take) <= t_open + 1
    # With room everywhere: equal shares, the remainder on the highest-loss buckets.
    if all(s >= count for s in sizes):
        q = len(sizes)
        assert take == [count // q + (j >= q - count % q) for j in range(q)]


@SETTINGS
@given(losses_and_mask(), counts, st.sampled_from([None, *SELECTOR_NAMES]),
       st.integers(0, 2**31))
def test_filter_then_select_fill_invariants(lm: tuple, k: int | float, selector: str | None,
                                            seed: int) -> None:
    losses, mask = lm
    if mask is None:
        mask = losses > 50
    n = losses.numel()
    g = torch.Generator().manual_seed(seed)
    out = filter_then_select(mask, losses, selector, k, g)
    assert torch.equal(out, out.unique())
    count, passed = resolve_count(k, n), int(mask.sum())
    kept = int(mask[out].sum())
    if selector is None:
        assert out.numel() - kept == max(0, count - passed)  # fill tops up by the shortfall
    elif selector == "top_q":  # filled up to k from what top_q did not select
        picks = top_q(losses, 0.5, candidates=mask)
        assert out.numel() == max(count, picks.numel()) and set(picks.tolist()) <= set(out.tolist())
    else:
        assert out.numel() == count and kept == min(count, passed)
