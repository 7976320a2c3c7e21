"""Filter-then-select (Algorithms 5, 6) and the random fill ("defaulting back to SGD")."""

from __future__ import annotations

import pytest
import torch

from assist.selection import (
    SELECTOR_NAMES,
    filter_then_select,
    marginal_mask,
    misclassified_mask,
    per_sample_cross_entropy,
    resolve_count,
    soft_filter_top_k,
    top_k,
    top_q,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
COUNT_SELECTORS = [s for s in SELECTOR_NAMES if s != "top_q"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(seed: int, n: int = 64, pass_rate: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.rand(n, generator=g) < pass_rate, torch.rand(n, generator=g) * 3


def test_no_selector_returns_what_passed() -> None:
    mask, _ = batch(0)
    expected = mask.nonzero().squeeze(1)
    assert torch.equal(filter_then_select(mask, None, None), expected)
    # k at or below the number passed never truncates without a selector.
    assert torch.equal(filter_then_select(mask, None, None, 3, gen(0)), expected)


def test_no_selector_fills_up_to_k() -> None:
    mask, _ = batch(1, pass_rate=0.2)
    passed = int(mask.sum())
    out = filter_then_select(mask, None, None, 40, gen(0))
    assert out.numel() == 40 and mask[out].sum() == passed
    assert filter_then_select(mask, None, None, 40, gen(0), fill_random=False).numel() == passed


@pytest.mark.parametrize("selector", COUNT_SELECTORS)
@pytest.mark.parametrize("device", DEVICES)
def test_enough_passed_selects_only_among_passed(selector: str, device: str) -> None:
    mask, losses = batch(2)
    mask, losses = mask.to(device), losses.to(device)
    out = filter_then_select(mask, losses, selector, 10, gen(1), buckets=3)
    assert out.numel() == 10 and mask[out].all()
    assert torch.equal(out, out.unique())


def test_top_k_after_filter_is_algorithm_5() -> None:
    mask, losses = batch(3)
    assert torch.equal(filter_then_select(mask, losses, "top_k", 7),
                       top_k(losses, 7, candidates=mask))
    # Reference: the 7 largest losses among the passed, by a plain sort.
    passed = mask.nonzero().squeeze(1).tolist()
    ref = sorted(sorted(passed, key=lambda i: -float(losses[i]))[:7])
    assert filter_then_select(mask, losses, "top_k", 7).tolist() == ref


@pytest.mark.parametrize("selector", COUNT_SELECTORS)
@pytest.mark.parametrize("seed", range(3))
def test_too_few_passed_fills_from_the_rest(selector: str, seed: int) -> None:
    mask, losses = batch(seed, pass_rate=0.1)
    passed = int(mask.sum())
    k = passed + 12
    out = filter_then_select(mask, losses, selector, k, gen(seed))
    assert out.numel() == k and torch.equal(out, out.unique())
    assert mask[out].sum() == passed  # every passed sample is in, then 12 fills
    again = filter_then_select(mask, losses, selector, k, gen(seed))
    assert torch.equal(out, again)
    fills = {tuple(filter_then_select(mask, losses, selector, k, gen(s))[~mask[out]].tolist())
             for s in range(5)}
    assert len(fills) > 1  # random fill, not a fixed choice
    no_fill = filter_then_select(mask, losses, selector, k, gen(seed), fill_random=False)
    assert no_fill.numel() == passed and mask[no_fill].all()


def test_k_larger_than_batch_and_fraction_of_batch() -> None:
    mask, losses = batch(4, n=20, pass_rate=0.3)
    assert filter_then_select(mask, losses, "top_k", 50, gen(0)).tolist() == list(range(20))
    out = filter_then_select(mask, losses, "top_k", 0.5, gen(0))  # half of N = 10
    assert out.numel() == resolve_count(0.5, 20) == 10
    assert filter_then_select(mask, losses, "top_k", 0, gen(0)).tolist() == []


def test_nothing_passed_is_plain_sgd_subset() -> None:
    mask = torch.zeros(30, dtype=torch.bool)
    out = filter_then_select(mask, torch.rand(30), "top_k", 8, gen(5))
    assert out.numel() == 8 and torch.equal(out, out.unique())


def test_top_q_variable_count_and_fill() -> None:
    mask, losses = batch(6)
    passed = int(mask.sum())
    out = filter_then_select(mask, losses, "top_q", None, q=0.5)
    assert torch.equal(out, top_q(losses, 0.5, candidates=mask))
    # k <= selected: top_q keeps its own count, no fill.
    assert torch.equal(filter_then_select(mask, losses, "top_q", out.numel(), gen(0), q=0.5), out)
    # k > selected: filled to k with random samples, those that did not pass first.
    assert out.numel() < passed
    filled = filter_then_select(mask, losses, "top_q", passed, gen(0), q=0.5)
    assert filled.numel() == passed and set(out.tolist()) <= set(filled.tolist())
    assert int((~mask[filled]).sum()) == min(passed - out.numel(), int((~mask).sum()))
    everything = filter_then_select(mask, losses, "top_q", mask.numel(), gen(0), q=0.5)
    assert everything.tolist() == list(range(mask.numel()))


def test_compose_errors_name_the_argument() -> None:
    mask, losses = batch(7)
    with pytest.raises(ValueError, match="mask"):
        filter_then_select(mask.long(), losses, "top_k", 3)
    with pytest.raises(ValueError, match="losses"):
        filter_then_select(mask, None, "top_k", 3)
    with pytest.raises(ValueError, match="losses"):
        filter_then_select(mask, losses[:-1], "top_k", 3)
    with pytest.raises(ValueError, match="selector"):
        filter_then_select(mask, losses, "bogus", 3)
    with pytest.raises(ValueError, match="k is required"):
        filter_then_select(mask, losses, "top_k", None)
    with pytest.raises(ValueError, match="generator"):
        filter_then_select(torch.zeros(5, dtype=torch.bool), None, None, 3, None)
    with pytest.raises(ValueError, match="q"):
        filter_then_select(mask, losses, "top_q", None, q=2.0)


def test_compose_does_not_mutate_inputs() -> None:
    mask, losses = batch(8, pass_rate=0.1)
    before = (mask.clone(), losses.clone())
    for selector in SELECTOR_NAMES:
        filter_then_select(mask, losses, selector, 20, gen(0))
    assert torch.equal(mask, before[0]) and torch.equal(losses, before[1])


# --- Algorithm 6 -----------------------------------------------------------------------

def probs_logits(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).log()


def test_soft_filter_top_k_hand_example() -> None:
    logits = probs_logits([
        [0.6, 0.3, 0.1],  # 0: correct, margin 0.3 -> marginal at 0.4
        [0.1, 0.8, 0.1],  # 1: wrong (label 0), confident
        [0.3, 0.4, 0.3],  # 2: wrong (label 0), less confident
        [0.9, 0.05, 0.05],  # 3: correct, not marginal
        [0.2, 0.2, 0.6],  # 4: wrong (label 1)
        [0.1, 0.45, 0.45],  # 5: correct on a tie (label 1), margin 0
    ])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    losses = torch.tensor([0.5, 2.3, 1.2, 0.1, 1.6, 0.8])
    assert soft_filter_top_k(logits, labels, losses, 2, 0.4).tolist() == [0, 1, 4, 5]
    assert soft_filter_top_k(logits, labels, losses, 1, 0.2).tolist() == [1, 5]
    assert soft_filter_top_k(logits, labels, losses, 10, 0.2).tolist() == [1, 2, 4, 5]
    assert soft_filter_top_k(logits, labels, losses, 0, 0.4).tolist() == [0, 5]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("device", DEVICES)
def test_soft_filter_top_k_is_hard_top_k_plus_all_marginal(seed: int, device: str) -> None:
    g = gen(seed)
    logits = (torch.randn(128, 10, generator=g) * 2).to(device)
    labels = torch.randint(0, 10, (128,), generator=g).to(device)
    wrong = misclassified_mask(logits, labels)
    marginal = marginal_mask(logits, labels, 0.3)
    out = soft_filter_top_k(logits, labels, None, 16, 0.3)
    losses = per_sample_cross_entropy(logits, labels)
    hard = top_k(losses, 16, candidates=wrong)
    expected = torch.sort(torch.cat([hard, marginal.nonzero().squeeze(1)])).values
    assert torch.equal(out, expected)
    assert out.numel() == min(16, int(wrong.sum())) + int(marginal.sum())
    assert torch.equal(soft_filter_top_k(logits, labels, losses, 16, 0.3), out)


def test_soft_filter_top_k_errors() -> None:
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="soft_margin"):
        soft_filter_top_k(logits, labels, None, 2, 1.0)
    with pytest.raises(ValueError, match="losses"):
        soft_filter_top_k(logits, labels, torch.ones(3), 2, 0.5)
