"""The in-memory image data set every loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


class DataError(ValueError):
    """A data set could not be found, read or decoded; the message names the file or key."""


@dataclass(frozen=True)
class ImageDataset:
    """A whole data set held in memory: uint8 images ``(N, C, H, W)`` and int64 labels.

    ``mean``/``std`` are per-channel statistics of the training images in [0, 1] units, used
    for normalisation. ``default_augmentation`` is the recipe used when the config leaves
    ``data_augmentation`` unset ("none" for MNIST-like sets, "thesis" for CIFAR).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())
    default_augmentation: str = "none"
    # data scenarios (data/scenarios.py): training samples whose label was flipped, and those
    # that are copies of others; None when the scenario made none
    train_noisy: Optional[torch.Tensor] = None
    train_duplicate: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise DataError(f"{self.name}: {split} images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise DataError(f"{self.name}: {split} labels must be int64 of length {images.shape[0]}")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise DataError(f"{self.name}: train and test image shapes differ")
        for key in ("train_noisy", "train_duplicate"):
            mask = getattr(self, key)
            if mask is not None and (mask.dtype != torch.bool or mask.shape != self.train_labels.shape):
                raise DataError(f"{self.name}: {key} must be a bool mask of length {self.num_train}")

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def num_train(self) -> int:
        return int(self.train_images.shape[0])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images in [0, 1] units (computed in float64 chunks)."""
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for start in range(0, images.shape[0], 4096):
        chunk = images[start:start + 4096].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        total_sq += (chunk * chunk).sum(dim=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / max(count, 1)
    std = (total_sq / max(count, 1) - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
