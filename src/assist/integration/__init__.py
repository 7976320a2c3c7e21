"""Use ASSIST strategies from your own training loop (and from Lightning).

* :class:`IndexedDataset` makes any map-style dataset return ``(x, y, index)``;
* :class:`Selector` runs a registered strategy: an epoch plan as a torch ``Sampler``, and per
  loader batch the batches to train on with their loss weights; your loop hands back the
  per-sample losses with ``feedback``;
* :mod:`assist.integration.lightning` adds a Lightning callback (``pip install 'assist-sampling[lightning]'``).

See docs/integration.md.
"""

from assist.integration.dataset import IndexedDataset
from assist.integration.samplers import EpochBatchSampler, EpochSampler
from assist.integration.batch import TrainBatch, cross_entropy_scores
from assist.integration.selector import Selector

__all__ = ["EpochBatchSampler", "EpochSampler", "IndexedDataset", "Selector", "TrainBatch",
           "cross_entropy_scores"]
