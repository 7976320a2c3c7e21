"""scikit-learn's bundled 8x8 digits (1,797 images): a small real data set that works offline.

Pixel values 0..16 are scaled to 0..255. The split is stratified and fixed: 36 images of each
digit (360) go to test, the remaining 1,437 to train, chosen with a fixed-seed generator.
"""

from __future__ import annotations

from pathlib import Path

import torch

from assist.data.base import DataError, ImageDataset, channel_stats

SPLIT_SEED = 0
TEST_PER_CLASS = 36


def stratified_split(labels: torch.Tensor, per_class: int, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask choosing ``per_class`` random samples of every class."""
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    for cls in torch.unique(labels).tolist():
        members = torch.nonzero(labels == cls).flatten()
        if members.numel() < per_class:
            raise DataError(f"digits: class {cls} has {members.numel()} samples, fewer than {per_class}")
        mask[members[torch.randperm(members.numel(), generator=generator)[:per_class]]] = True
    return mask


def load_digits(*, data_dir: Path | None = None, download: bool = False) -> ImageDataset:
    from sklearn.datasets import load_digits as sklearn_digits  # imported late: sklearn is slow to import

    bunch = sklearn_digits()
    values = torch.from_numpy(bunch.images).reshape(-1, 1, 8, 8)
    images = (values * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target).to(torch.int64)
    test = stratified_split(labels, TEST_PER_CLASS, torch.Generator().manual_seed(SPLIT_SEED))
    train_images, train_labels = images[~test], labels[~test]
    mean, std = channel_stats(train_images)
    return ImageDataset(
        name="digits", train_images=train_images, train_labels=train_labels,
        test_images=images[test], test_labels=labels[test], num_classes=10,
        mean=mean, std=std, classes=tuple(str(d) for d in range(10)), default_augmentation="none",
    )
