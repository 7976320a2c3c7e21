"""Per-epoch metrics: loss statistics, cost counters and system readings."""

from assist.metrics.losses import LOSS_QUANTILES, loss_statistics
from assist.metrics.system import system_metrics

__all__ = ["LOSS_QUANTILES", "loss_statistics", "system_metrics"]
