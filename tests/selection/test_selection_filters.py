"""Accuracy filters (Algorithms 6, 7) and per-sample cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from assist.selection import (
    marginal_mask,
    misclassified_mask,
    per_sample_cross_entropy,
    soft_accuracy_mask,
    top2_margin,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def logits_from_probs(rows: list[list[float]]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probability rows."""
    return torch.tensor(rows, dtype=torch.float64).log()


@pytest.mark.parametrize("device", DEVICES)
def test_misclassified_mask_is_argmax_differs_from_label(device: str) -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 5.0], [1.0, 4.0, 0.0]],
                          device=device)
    labels = torch.tensor([0, 2, 2, 0], device=device)
    mask = misclassified_mask(logits, labels)
    assert mask.dtype == torch.bool and mask.device.type == device
    assert mask.tolist() == [False, True, False, True]


def test_misclassified_tie_uses_first_column_like_argmax() -> None:
    logits = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert misclassified_mask(logits, torch.tensor([0, 1])).tolist() == [False, True]


@pytest.mark.parametrize("device", DEVICES)
def test_soft_mask_keeps_wrong_and_marginal_correct(device: str) -> None:
    logits = logits_from_probs([
        [0.5, 0.3, 0.2],   # correct, margin 0.2
        [0.9, 0.05, 0.05],  # correct, margin 0.85
        [0.2, 0.7, 0.1],   # wrong (label 0)
        [0.4, 0.4, 0.2],   # tied top, label 1: argmax picks 0, so wrong
        [0.4, 0.4, 0.2],   # tied top, label 0: correct with margin 0, so marginal
    ]).to(device)
    labels = torch.tensor([0, 0, 0, 1, 0], device=device)
    assert soft_accuracy_mask(logits, labels, 0.25).tolist() == [True, False, True, True, True]
    assert soft_accuracy_mask(logits, labels, 0.15).tolist() == [False, False, True, True, True]
    assert soft_accuracy_mask(logits, labels, 0.9).tolist() == [True, True, True, True, True]
    assert marginal_mask(logits, labels, 0.25).tolist() == [True, False, False, False, True]


@pytest.mark.parametrize("seed", range(5))
def test_soft_mask_is_union_of_disjoint_wrong_and_marginal(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 10, generator=g) * 3
    labels = torch.randint(0, 10, (200,), generator=g)
    wrong = misclassified_mask(logits, labels)
    marginal = marginal_mask(logits, labels, 0.3)
    soft = soft_accuracy_mask(logits, labels, 0.3)
    assert not (wrong & marginal).any()
    assert torch.equal(soft, wrong | marginal)
    margins = top2_margin(logits)
    assert torch.equal(marginal, ~wrong & (margins <= 0.3))
    # A larger margin keeps a superset.
    assert (soft_accuracy_mask(logits, labels, 0.1) <= soft).all()
    assert wrong.any() and marginal.any() and (~soft).any()  # the data exercises all cases


def test_top2_margin_matches_sorted_softmax() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 7, generator=g)
    probs = logits.softmax(1).sort(dim=1, descending=True).values
    assert torch.allclose(top2_margin(logits), probs[:, 0] - probs[:, 1])
    margins = top2_margin(logits)
    assert ((margins >= 0) & (margins <= 1)).all()


def test_half_precision_logits_work() -> None:
    logits = logits_from_probs([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1]]).half()
    labels = torch.tensor([0, 1])
    assert soft_accuracy_mask(logits, labels, 0.25).tolist() == [True, False]


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.0, -0.1, 1.5, math.nan, True, "0.5", None])
def test_soft_margin_must_be_in_open_unit_interval(bad: object) -> None:
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="soft_margin"):
        soft_accuracy_mask(logits, labels, bad)  # type: ignore[arg-type]


def test_single_class_soft_filter_raises() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        soft_accuracy_mask(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64), 0.5)
    # The hard filter is still defined (everything is "correct").
    assert not misclassified_mask(torch.zeros(3, 1), torch.zeros(3, dtype=torch.int64)).any()


@pytest.mark.parametrize(
    ("logits", "labels", "name"),
    [
        (torch.zeros(4), torch.zeros(4, dtype=torch.int64), "logits"),
        (torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, dtype=torch.int64), "logits"),
        (torch.zeros(4, 0), torch.zeros(4, dtype=torch.int64), "logits"),
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.int64), "labels"),
        (torch.zeros(4, 3), torch.zeros(4), "labels"),
        (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.int64), "labels"),
    ],
)
def test_bad_shapes_name_the_argument(logits: torch.Tensor, labels: torch.Tensor,
                                      name: str) -> None:
    for fn in (misclassified_mask, per_sample_cross_entropy):
        with pytest.raises(ValueError, match=name):
            fn(logits, labels)
    with pytest.raises(ValueError, match=name):
        soft_accuracy_mask(logits, labels, 0.5)


def test_empty_batch_gives_empty_masks() -> None:
    logits, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    assert misclassified_mask(logits, labels).shape == (0,)
    assert soft_accuracy_mask(logits, labels, 0.5).shape == (0,)
    assert per_sample_cross_entropy(logits, labels).shape == (0,)


@pytest.mark.parametrize("device", DEVICES)
def test_per_sample_cross_entropy_matches_definition(device: str) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(32, 5, generator=g).to(device)
    labels = torch.randint(0, 5, (32,), generator=g).to(device)
    losses = per_sample_cross_entropy(logits, labels)
    expected = -logits.log_softmax(1).gather(1, labels[:, None]).squeeze(1)
    assert losses.shape == (32,)
    assert torch.allclose(losses, expected, atol=1e-6)
    assert torch.allclose(losses.mean(), F.cross_entropy(logits, labels), atol=1e-6)


def test_filters_do_not_mutate_inputs() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(20, 4, generator=g)
    labels = torch.randint(0, 4, (20,), generator=g)
    before = (logits.clone(), labels.clone())
    misclassified_mask(logits, labels)
    soft_accuracy_mask(logits, labels, 0.4)
    per_sample_cross_entropy(logits, labels)
    assert torch.equal(logits, before[0]) and torch.equal(labels, before[1])
