"""Data sets as in-memory uint8 tensors: loaders, registry, subsets.

``load_dataset("mnist" | "cifar10" | "cifar100" | "digits" | "synthetic" | "folder:PATH")``
returns an :class:`ImageDataset`; see :mod:`assist.data.datasets`.
"""

from assist.data.base import DataError, ImageDataset, channel_stats
from assist.data.datasets import DATASETS, list_datasets, load_dataset
from assist.data.paths import default_data_dir
from assist.data.subsets import select_subset

__all__ = [
    "DATASETS",
    "DataError",
    "ImageDataset",
    "channel_stats",
    "default_data_dir",
    "list_datasets",
    "load_dataset",
    "select_subset",
]
