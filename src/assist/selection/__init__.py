"""Selection core: pure, vectorised functions on (logits, labels, losses) tensors.

Filters return bool masks of shape (N,); selectors return int64 positions into the batch,
sorted ascending. Every random draw comes from a ``torch.Generator`` passed by the caller.
"""

from .compose import fill_up, filter_then_select, soft_filter_top_k
from .filters import (
    marginal_mask,
    misclassified_mask,
    per_sample_cross_entropy,
    soft_accuracy_mask,
    top2_margin,
)
from .selectors import (
    SELECTOR_NAMES,
    SELECTORS,
    WEIGHT_FLOOR,
    loss_qsplit_random,
    loss_weighted_random,
    qsplit_buckets,
    resolve_count,
    select,
    split_quota,
    top_k,
    top_q,
    uniform_random,
)

__all__ = [
    "SELECTORS",
    "SELECTOR_NAMES",
    "WEIGHT_FLOOR",
    "fill_up",
    "filter_then_select",
    "loss_qsplit_random",
    "loss_weighted_random",
    "marginal_mask",
    "misclassified_mask",
    "per_sample_cross_entropy",
    "qsplit_buckets",
    "resolve_count",
    "select",
    "soft_accuracy_mask",
    "soft_filter_top_k",
    "split_quota",
    "top2_margin",
    "top_k",
    "top_q",
    "uniform_random",
]
