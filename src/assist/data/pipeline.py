"""In-memory batch pipeline: index -> uint8 gather -> float -> per-sample augmentation -> normalise.

The whole split stays on ``device`` as one uint8 tensor (CIFAR-10 train is 150 MB), so drawing a
batch is one gather plus a few vectorised ops on that device; there is no DataLoader, no worker
process and no per-sample Python. Which samples go into a batch is the caller's business (the
sampler / strategy passes indices); the pipeline only turns indices into model-ready tensors.
"""

from __future__ import annotations

import warnings

from collections.abc import Iterator, Sequence

import torch

from assist.data.augment import Augmentation, Params, make_augmentation
from assist.data.base import DataError, ImageDataset


class BatchPipeline:
    """Serve normalised (optionally augmented) batches of an in-memory uint8 image split.

    ``batch(indices, generator)`` draws fresh per-sample augmentation parameters from
    ``generator``; ``batch(indices, params=...)`` replays given parameters (see
    ``assist.data.augment.index_params``). With the same generator state the batches are
    bit-identical, and nothing else (no global RNG) is consumed.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        augmentation: str = "none",
        device: str | torch.device = "cpu",
        compiled: bool = False,
    ) -> None:
        self.compiled = compiled  # augmentation through torch.compile (the run's ``compile`` key)
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise DataError(f"BatchPipeline: images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or tuple(labels.shape) != (images.shape[0],):
            raise DataError(f"BatchPipeline: labels must be int64 of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
        channels = images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise DataError(f"BatchPipeline: mean/std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise DataError(f"BatchPipeline: std must be positive, got {tuple(std)}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self.augmentation: Augmentation = make_augmentation(augmentation, (images.shape[2], images.shape[3]))

    @classmethod
    def from_dataset(
        cls,
        dataset: ImageDataset,
        split: str = "train",
        augmentation: str | None = None,
        device: str | torch.device = "cpu",
    ) -> "BatchPipeline":
        """Pipeline over one split; ``augmentation=None`` means the data set's default for the
        train split and "none" for the test split."""
        if split not in ("train", "test"):
            raise ValueError(f"BatchPipeline.from_dataset: split must be 'train' or 'test', got {split!r}")
        if augmentation is None:
            augmentation = dataset.default_augmentation if split == "train" else "none"
        images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
        return cls(images, labels, dataset.mean, dataset.std, augmentation, device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def sample_params(self, n: int, generator: torch.Generator) -> Params:
        """Augmentation parameters for ``n`` samples (CPU tensors; empty for "none")."""
        return self.augmentation.sample_params(n, generator)

    def batch(
        self,
        indices: torch.Tensor,
        generator: torch.Generator | None = None,
        params: Params | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``indices`` as normalised float32 (B, C, H, W) on the device, and their labels.

        Augmentation uses ``params`` if given, else parameters drawn from ``generator``."""
        indices = self._check_indices(indices)
        x = self.images[indices].to(torch.float32) / 255.0
        if not self.augmentation.is_identity:
            if params is None:
                if generator is None:
                    raise ValueError(f"BatchPipeline.batch: augmentation {self.augmentation.name!r} needs a generator or params")
                params = self.augmentation.sample_params(int(indices.shape[0]), generator)
            x = self.augmentation.apply(x, params, compiled=self.compiled)
        elif params:
            raise ValueError(f"BatchPipeline.batch: augmentation 'none' takes no params, got keys {sorted(params)}")
        return (x - self.mean) / self.std, self.labels[indices]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """All samples in order, without augmentation: (x, y, indices), indices on the device."""
        if batch_size < 1:
            raise ValueError(f"BatchPipeline.eval_batches: batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            indices = torch.arange(start, min(start + batch_size, len(self)), device=self.device)
            x = self.images[indices].to(torch.float32) / 255.0
            yield (x - self.mean) / self.std, self.labels[indices], indices

    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64 or indices.dim() != 1:
            raise ValueError(f"BatchPipeline.batch: indices must be a 1-D int64 tensor, got {getattr(indices, 'dtype', type(indices))}")
        # Range-check CPU indices only: checking device indices would force a host sync per batch.
        if indices.device.type == "cpu" and indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise ValueError(f"BatchPipeline.batch: indices must lie in [0, {len(self)}), got min {int(indices.min())} max {int(indices.max())}")
        if self.device.type == "cuda" and indices.device.type == "cpu":
            # a pinned copy lets the transfer below run without blocking the host
            indices = torch.empty(indices.shape, dtype=indices.dtype, pin_memory=True).copy_(indices)
        return indices.to(self.device, non_blocking=True)


def resolve_augmentation(data_augmentation: bool | None, recipe: str, data: ImageDataset) -> str:
    """The augmentation recipe a run uses: the data set's default when ``data_augmentation``
    is unset, ``recipe`` when it is on, "none" when off."""
    if data_augmentation is None:
        return data.default_augmentation
    if data_augmentation and data.default_augmentation == "none":
        # the thesis's flag augments CIFAR only (4.2.3); say so rather than follow it silently
        warnings.warn(f"data_augmentation=true applies the {recipe!r} augmentation recipe (made for CIFAR's "
                      f"colour images) to {data.name}, which the thesis never augments", stacklevel=2)
    return recipe if data_augmentation else "none"
