"""Class-count and samples-per-class subsets of a data set (thesis future work, 5.2).

``num_classes`` picks classes (an int k means the first k, a list gives ids in the order
wanted); labels are renumbered 0..k-1 in that order. ``samples_per_class`` keeps n random
training samples of each chosen class, drawn from a generator seeded by ``seed``; the test
split keeps every sample of the chosen classes so accuracies stay comparable.
"""

from __future__ import annotations

import operator
from typing import Sequence

import torch

from assist.data.base import DataError, ImageDataset, channel_stats


def _chosen_classes(dataset: ImageDataset, num_classes: int | Sequence[int]) -> list[int]:
    total = dataset.num_classes
    if isinstance(num_classes, (bool, str, bytes)) or not isinstance(num_classes, (int, Sequence)):
        raise DataError(f"{dataset.name}: num_classes must be an int or a list of class ids, got {num_classes!r}")
    if isinstance(num_classes, int):
        if not 1 <= num_classes <= total:
            raise DataError(f"{dataset.name}: num_classes={num_classes} outside 1..{total}")
        return list(range(num_classes))
    chosen = []
    for cls in num_classes:
        try:
            index = operator.index(cls)  # ints, numpy ints; not floats or strings
        except TypeError:
            index = None
        if isinstance(cls, bool) or index is None or not 0 <= index < total:
            raise DataError(f"{dataset.name}: class id {cls!r} in num_classes is not a class id in 0..{total - 1}")
        chosen.append(index)
    if not chosen:
        raise DataError(f"{dataset.name}: num_classes is an empty list")
    duplicates = sorted({c for c in chosen if chosen.count(c) > 1})
    if duplicates:
        raise DataError(f"{dataset.name}: class ids {duplicates} repeated in num_classes")
    return chosen


def _class_name(dataset: ImageDataset, cls: int) -> str:
    name = dataset.classes[cls] if cls < len(dataset.classes) else str(cls)
    return f"{cls} ({name!r})" if name != str(cls) else str(cls)


def _remap(labels: torch.Tensor, chosen: list[int], total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of samples in the chosen classes and their new labels."""
    lookup = torch.full((total,), -1, dtype=torch.int64)
    lookup[torch.tensor(chosen, dtype=torch.int64)] = torch.arange(len(chosen), dtype=torch.int64)
    new = lookup[labels]
    keep = new >= 0
    return keep, new[keep]


def _sample_per_class(dataset: ImageDataset, labels: torch.Tensor, chosen: list[int], count: int, seed: int) -> torch.Tensor:
    """Indices (into ``labels``, ascending) of ``count`` random samples of each chosen class."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DataError(f"{dataset.name}: samples_per_class must be a positive int, got {count!r}")
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for new_label, cls in enumerate(chosen):  # one draw per class, in the order given
        members = torch.nonzero(labels == new_label).flatten()
        if members.numel() < count:
            raise DataError(f"{dataset.name}: class {_class_name(dataset, cls)} has {members.numel()} training samples, "
                            f"fewer than samples_per_class={count}")
        picked.append(members[torch.randperm(members.numel(), generator=generator)[:count]])
    return torch.cat(picked).sort().values  # keep the data set's own order


def select_subset(
    dataset: ImageDataset,
    num_classes: int | Sequence[int] | None = None,
    samples_per_class: int | None = None,
    seed: int = 0,
) -> ImageDataset:
    """The data set restricted to some classes and/or a fixed number of training samples per
    class; returns ``dataset`` itself when both options are None. mean/std are recomputed
    from the subset's training images."""
    if num_classes is None and samples_per_class is None:
        return dataset
    chosen = list(range(dataset.num_classes)) if num_classes is None else _chosen_classes(dataset, num_classes)
    keep_train, train_labels = _remap(dataset.train_labels, chosen, dataset.num_classes)
    keep_test, test_labels = _remap(dataset.test_labels, chosen, dataset.num_classes)
    train_images = dataset.train_images[keep_train]
    if samples_per_class is not None:
        index = _sample_per_class(dataset, train_labels, chosen, samples_per_class, seed)
        train_images, train_labels = train_images[index], train_labels[index]
    mean, std = channel_stats(train_images)
    classes = tuple(dataset.classes[c] if c < len(dataset.classes) else str(c) for c in chosen)
    return ImageDataset(
        name=dataset.name, train_images=train_images, train_labels=train_labels,
        test_images=dataset.test_images[keep_test], test_labels=test_labels,
        num_classes=len(chosen), mean=mean, std=std, classes=classes,
        default_augmentation=dataset.default_augmentation,
    )
