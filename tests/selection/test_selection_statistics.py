"""Statistical checks of the random selectors' probabilities (fixed seeds, so reproducible;
tolerances are p < 0.001 chi-square bounds or 4 standard deviations, so a wrong
distribution fails while the right one passes for essentially every seed)."""

from __future__ import annotations

import torch

from assist.selection import (
    filter_then_select,
    loss_qsplit_random,
    loss_weighted_random,
    qsplit_buckets,
    uniform_random,
)

# chi-square critical values at p = 0.001 by degrees of freedom
CHI2_999 = {4: 18.47, 5: 20.52, 7: 24.32, 13: 34.53}


def chi_square(counts: torch.Tensor, expected: torch.Tensor) -> float:
    return float(((counts.double() - expected) ** 2 / expected).sum())


def test_loss_weighted_k1_frequencies_follow_loss_over_sum() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0])
    g = torch.Generator().manual_seed(0)
    draws = 4000
    counts = torch.zeros(5)
    for _ in range(draws):
        counts[loss_weighted_random(losses, 1, g)] += 1
    expected = draws * losses.double() / losses.sum()
    assert chi_square(counts, expected) < CHI2_999[4]
    # The same counts are far from uniform and from loss**2: the test has power.
    assert chi_square(counts, torch.full((5,), draws / 5.0, dtype=torch.float64)) > 100
    assert chi_square(counts, draws * losses.double() ** 2 / (losses**2).sum()) > 100


def test_loss_weighted_all_zero_is_uniform() -> None:
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(6)
    for _ in range(3000):
        counts[loss_weighted_random(torch.zeros(6), 1, g)] += 1
    assert chi_square(counts, torch.full((6,), 500.0, dtype=torch.float64)) < CHI2_999[5]


def test_loss_weighted_without_replacement_inclusion_probability() -> None:
    # Drawing 2 of losses [1, 1, 2] one after the other: P(position 2 is left out)
    # = P(0 then 1) + P(1 then 0) = 2 * (1/4) * (1/3) = 1/6.
    g = torch.Generator().manual_seed(2)
    draws, included = 3000, 0
    for _ in range(draws):
        included += int(2 in loss_weighted_random(torch.tensor([1.0, 1.0, 2.0]), 2, g))
    p = 5 / 6
    assert abs(included - draws * p) < 4 * (draws * p * (1 - p)) ** 0.5


def test_qsplit_draws_uniformly_inside_each_bucket() -> None:
    # 20 samples, power 1, 2 buckets: the top bucket holds the few largest losses.
    losses = torch.arange(1.0, 21.0)
    ids = qsplit_buckets(losses, 2, 1.0)
    high = (ids == 1).nonzero().squeeze(1)
    low = (ids == 0).nonzero().squeeze(1)
    assert low.tolist() == list(range(14))  # 1 + ... + 14 = 105 = half of 210
    g = torch.Generator().manual_seed(3)
    counts = torch.zeros(20)
    draws = 3000
    for _ in range(draws):
        counts[loss_qsplit_random(losses, 2, 2, 1.0, g)] += 1
    # One from each bucket per draw, uniform inside the bucket.
    assert counts[high].sum() == draws and counts[low].sum() == draws
    for members in (high, low):
        expected = torch.full((members.numel(),), draws / members.numel(), dtype=torch.float64)
        assert chi_square(counts[members], expected) < CHI2_999[members.numel() - 1]
    # Selection pressure: a high-bucket sample is drawn far more often than a low one.
    assert counts[high].min() > 2 * counts[low].max()


def test_uniform_random_and_fill_are_uniform() -> None:
    g = torch.Generator().manual_seed(4)
    counts = torch.zeros(8)
    for _ in range(2000):
        counts[uniform_random(8, 3, g)] += 1
    assert chi_square(counts, torch.full((8,), 750.0, dtype=torch.float64)) < CHI2_999[7]
    # Fill from the samples that failed the filter: 2 of 10 pass, k=4 -> 2 of the other 8.
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 6]] = True
    counts = torch.zeros(10)
    for _ in range(2000):
        counts[filter_then_select(mask, torch.rand(10), "top_k", 4, g)] += 1
    assert counts[1] == 2000 and counts[6] == 2000
    rest = counts[~mask]
    assert chi_square(rest, torch.full((8,), 500.0, dtype=torch.float64)) < CHI2_999[7]
