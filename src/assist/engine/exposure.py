"""Who gets trained: per-sample counts of how often each training sample was scored by a
forward and trained on, and the epoch's shares of the training mass that fall on flipped
labels, on copies and on each class (docs/scenarios.md, "Who gets trained").

The counts are the run's own (checkpointed with it); the per-epoch numbers go into each
metrics row. Under data parallelism every rank sees every trained and scored index, so every
rank holds the same counts.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from assist.data.base import ImageDataset


#: classes count as rare or frequent only when the largest is at least this many times the
#: smallest (MNIST's own classes differ by 1.24x, which says nothing about rarity)
RARE_RATIO = 2.0


def rare_classes(counts: torch.Tensor) -> Optional[torch.Tensor]:
    """The rarer half of the classes (the ``C // 2`` smallest by count, ties broken by class id),
    as a class mask; None when the classes are about equally large (largest < ``RARE_RATIO`` x
    smallest)."""
    if counts.numel() < 2 or int(counts.max()) < RARE_RATIO * int(counts.min()):
        return None
    order = sorted(range(counts.numel()), key=lambda c: (int(counts[c]), c))
    mask = torch.zeros(counts.numel(), dtype=torch.bool)
    mask[order[:counts.numel() // 2]] = True
    return mask


class Exposure:
    """Counts of each training sample's scoring forwards and training steps, and the epoch's."""

    def __init__(self, data: ImageDataset) -> None:
        n = data.num_train
        self.labels = data.train_labels.cpu()
        self.num_classes = data.num_classes
        self.noisy = None if data.train_noisy is None else data.train_noisy.cpu()
        self.copies = None if data.train_duplicate is None else data.train_duplicate.cpu()
        self.class_counts = torch.bincount(self.labels, minlength=self.num_classes)
        self.rare = rare_classes(self.class_counts)
        self.times_scored = torch.zeros(n, dtype=torch.int32)
        self.times_trained = torch.zeros(n, dtype=torch.int32)
        self.epoch_trained = torch.zeros(n, dtype=torch.int32)   # this epoch's training counts

    def start_epoch(self) -> None:
        self.epoch_trained.zero_()

    def scored(self, indices: torch.Tensor) -> None:
        self.times_scored.index_add_(0, indices.cpu().long(), torch.ones(int(indices.shape[0]), dtype=torch.int32))

    def trained(self, indices: torch.Tensor) -> None:
        ones = torch.ones(int(indices.shape[0]), dtype=torch.int32)
        indices = indices.cpu().long()
        self.times_trained.index_add_(0, indices, ones)
        self.epoch_trained.index_add_(0, indices, ones)

    def epoch_metrics(self) -> dict[str, Any]:
        """This epoch's training mass by kind of sample, and the data set's own shares beside it."""
        mass = self.epoch_trained.long()
        total = int(mass.sum())
        share = (lambda part: int(part) / total) if total else (lambda part: None)
        per_class = torch.bincount(self.labels, weights=mass.double(), minlength=self.num_classes)
        n = int(self.labels.shape[0])
        row: dict[str, Any] = {
            "trained_class_share": [share(c) for c in per_class.tolist()],
            "train_class_counts": self.class_counts.tolist(),
            "trained_noisy_share": None if self.noisy is None else share(mass[self.noisy].sum()),
            "data_noisy_share": None if self.noisy is None else int(self.noisy.sum()) / n,
            "trained_duplicate_share": None if self.copies is None else share(mass[self.copies].sum()),
            "data_duplicate_share": None if self.copies is None else int(self.copies.sum()) / n,
            "trained_rare_share": None if self.rare is None else share(per_class[self.rare].sum()),
            "data_rare_share": None if self.rare is None else int(self.class_counts[self.rare].sum()) / n,
            "samples_never_trained": int((self.times_trained == 0).sum()),
        }
        return row

    def state_dict(self) -> dict[str, torch.Tensor]:
        # checkpoints are taken at epoch ends, after the epoch's numbers went into its metrics row
        return {"times_scored": self.times_scored.clone(), "times_trained": self.times_trained.clone()}

    def load_state_dict(self, state: Optional[dict[str, torch.Tensor]]) -> None:
        """Restore; a checkpoint written before the counts existed leaves them at zero."""
        if not state:
            return
        for key in ("times_scored", "times_trained"):
            value = state[key]
            if value.shape != getattr(self, key).shape:
                raise ValueError(f"exposure counts {key}: {tuple(value.shape)} samples in the checkpoint, "
                                 f"{tuple(getattr(self, key).shape)} in the data set")
            getattr(self, key).copy_(value)


def class_accuracy(correct: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Per-class test accuracy (None for a class with no test sample) and their mean over the
    classes present (balanced accuracy)."""
    correct, labels = correct.cpu().double(), labels.cpu()
    hits = torch.bincount(labels, weights=correct, minlength=num_classes)
    counts = torch.bincount(labels, minlength=num_classes)
    per_class = [float(h) / int(c) if int(c) else None for h, c in zip(hits.tolist(), counts.tolist())]
    present = [a for a in per_class if a is not None]
    return {"test_class_accuracy": per_class,
            "test_balanced_accuracy": sum(present) / len(present) if present else None}
