"""Data scenarios: label noise, class imbalance and redundancy made from any data set's training
split, so that claims about selection on hard data can be tested (docs/scenarios.md).

Each transform is a deterministic function of the run's seed, drawn from streams of its own
(``assist.rng.Stream.SCENARIO_*``), so a run and its archetype twin (same seed, same run keys)
train on exactly the same samples and labels; the test split is never touched. They apply in
a fixed order, each to the result of the one before:

1. ``class_imbalance`` (ratio between the largest and the smallest class): class ``c`` of
   ``C`` keeps ``floor(n_max * ratio ** (-c / (C - 1)))`` samples (at least one), drawn at
   random, where ``n_max`` is the smallest class's count in the split (an exponential profile,
   class 0 the largest, as in the long-tailed CIFAR benchmarks);
2. ``label_noise`` (fraction): exactly ``round(fraction * n)`` samples, drawn at random, get a
   wrong label: ``symmetric`` uniformly one of the other classes, ``pairflip`` class ``c`` to
   ``c + 1`` (mod C);
3. ``duplicates`` (fraction): exactly ``round(fraction * n)`` samples, drawn at random, are
   replaced by copies (image and, possibly flipped, label) of samples drawn uniformly from the
   rest; the split keeps its size, so an epoch costs the same with and without redundancy.

The result records which training samples carry a flipped label (``train_noisy``) and which
are copies (``train_duplicate``), for the metrics of who gets trained (engine/exposure.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from assist.data.base import DataError, ImageDataset, channel_stats
from assist.rng import Stream, generator

NOISE_KINDS = ("symmetric", "pairflip")


@dataclass(frozen=True)
class Scenario:
    """The scenario keys of a run (their defaults change nothing)."""

    label_noise: float = 0.0
    label_noise_kind: str = "symmetric"
    class_imbalance: float = 1.0
    duplicates: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.label_noise == 0 and self.class_imbalance == 1 and self.duplicates == 0

    @classmethod
    def of(cls, config) -> "Scenario":
        """The scenario keys of a config or resolved run."""
        return cls(config.label_noise, config.label_noise_kind, config.class_imbalance, config.duplicates)


def imbalance_counts(available: list[int], ratio: float) -> list[int]:
    """Per-class sample counts of an exponential long-tail profile with largest/smallest
    ``ratio``, from the smallest class count in ``available``."""
    classes = len(available)
    top = min(available)
    if classes == 1 or ratio == 1:
        return [top] * classes
    return [max(1, int(top * ratio ** (-c / (classes - 1)))) for c in range(classes)]


def imbalanced(labels: torch.Tensor, num_classes: int, ratio: float, g: torch.Generator) -> torch.Tensor:
    """Ascending indices of the samples an imbalance ``ratio`` keeps."""
    members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    counts = imbalance_counts([int(m.numel()) for m in members], ratio)
    kept = [m[torch.randperm(m.numel(), generator=g)[:k]] for m, k in zip(members, counts)]
    return torch.cat(kept).sort().values


def flip_labels(labels: torch.Tensor, num_classes: int, fraction: float, kind: str,
                g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels with exactly ``round(fraction * n)`` of them made wrong, and the mask of those."""
    if kind not in NOISE_KINDS:
        raise DataError(f"label_noise_kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    n = int(labels.shape[0])
    chosen = torch.randperm(n, generator=g)[:round(fraction * n)]
    noisy = torch.zeros(n, dtype=torch.bool)
    noisy[chosen] = True
    if kind == "pairflip":
        shift = torch.ones(chosen.shape[0], dtype=torch.int64)
    else:   # 1..C-1 steps round the classes: uniform over the other classes
        shift = torch.randint(1, num_classes, (int(chosen.shape[0]),), generator=g)
    flipped = labels.clone()
    flipped[chosen] = (labels[chosen] + shift) % num_classes
    return flipped, noisy


def duplicated(n: int, fraction: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``n`` samples: the source index of each slot (a slot is itself, or a copy of one of
    the samples kept) and the mask of the copies."""
    replaced = torch.randperm(n, generator=g)[:round(fraction * n)]
    copy = torch.zeros(n, dtype=torch.bool)
    copy[replaced] = True
    originals = torch.nonzero(~copy).flatten()
    source = torch.arange(n)
    source[replaced] = originals[torch.randint(0, int(originals.shape[0]), (int(replaced.shape[0]),), generator=g)]
    return source, copy


def check_scenario(scenario: Scenario, dataset: ImageDataset) -> None:
    if scenario.label_noise and dataset.num_classes < 2:
        raise DataError(f"{dataset.name}: label_noise needs at least 2 classes, the data set has {dataset.num_classes}")
    if scenario.label_noise_kind not in NOISE_KINDS:
        raise DataError(f"label_noise_kind must be one of {', '.join(NOISE_KINDS)}, got {scenario.label_noise_kind!r}")


def apply_scenario(dataset: ImageDataset, scenario: Optional[Scenario], seed: int) -> ImageDataset:
    """``dataset`` with the scenario's transforms applied to its training split (itself when
    the scenario changes nothing). mean/std are recomputed from the new training images."""
    if scenario is None or scenario.is_identity:
        return dataset
    check_scenario(scenario, dataset)
    images, labels = dataset.train_images, dataset.train_labels
    if scenario.class_imbalance != 1:
        keep = imbalanced(labels, dataset.num_classes, scenario.class_imbalance,
                          generator(seed, Stream.SCENARIO_IMBALANCE))
        images, labels = images[keep], labels[keep]
    noisy = torch.zeros(int(labels.shape[0]), dtype=torch.bool)
    if scenario.label_noise:
        labels, noisy = flip_labels(labels, dataset.num_classes, scenario.label_noise, scenario.label_noise_kind,
                                    generator(seed, Stream.SCENARIO_NOISE))
    copy = torch.zeros(int(labels.shape[0]), dtype=torch.bool)
    if scenario.duplicates:
        g = generator(seed, Stream.SCENARIO_DUPLICATES)
        source, copy = duplicated(int(labels.shape[0]), scenario.duplicates, g)
        images, labels, noisy = images[source], labels[source], noisy[source]
    mean, std = channel_stats(images)
    return replace(dataset, train_images=images, train_labels=labels, mean=mean, std=std,
                   train_noisy=noisy if scenario.label_noise else None,
                   train_duplicate=copy if scenario.duplicates else None)
