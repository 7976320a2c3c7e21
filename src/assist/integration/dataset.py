"""A map-style dataset wrapper that also returns each sample's index.

Strategies remember per-sample history (losses, scores, pruning decisions), so every batch
must say which samples it holds. Instead of patching the DataLoader, the dataset says it:
``IndexedDataset(ds)[i] == (*ds[i], i)``. Wrap the dataset *as your loader sees it* (after
``Subset`` / ``ConcatDataset``): the indices are then positions in that dataset, which is
what the strategy's epoch plan and history are indexed by.
"""

from __future__ import annotations

from typing import Any, Sized

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """``(x, y) -> (x, y, index)`` for any map-style dataset of length ``len(dataset)``."""

    def __init__(self, dataset: Dataset) -> None:
        if isinstance(dataset, IndexedDataset):
            raise ValueError("dataset is already an IndexedDataset; wrap it only once")
        if not isinstance(dataset, Sized):
            raise ValueError(f"IndexedDataset needs a map-style dataset with a length, got {type(dataset).__name__} "
                             "(iterable-style datasets have no stable sample indices)")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise ValueError(f"IndexedDataset: item {index} of {type(self.dataset).__name__} is a "
                             f"{type(item).__name__}; expected an (input, target) pair")
        return (*item, index)

    def __repr__(self) -> str:
        return f"IndexedDataset({self.dataset!r}, size={len(self)})"
