"""The data set registry and :func:`load_dataset`, the one entry point the trainer uses.

Every factory takes ``data_dir`` and ``download`` keywords and returns an
:class:`~assist.data.base.ImageDataset`. ``folder:PATH`` is a registry family: any name
starting with ``folder:`` loads an image-folder directory or archive at PATH.
"""

from __future__ import annotations

import os
from typing import Sequence

from assist.data.base import ImageDataset
from assist.data.cifar import load_cifar10, load_cifar100
from assist.data.digits import load_digits
from assist.data.folder import load_folder
from assist.data.mnist import load_mnist
from assist.data.paths import default_data_dir, resolve_data_dir
from assist.data.scenarios import Scenario, apply_scenario
from assist.data.subsets import select_subset
from assist.data.synthetic import load_synthetic
from assist.registry import Registry

__all__ = ["DATASETS", "default_data_dir", "list_datasets", "load_dataset"]

DATASETS: Registry[ImageDataset] = Registry("data set")
DATASETS.register("mnist")(load_mnist)
DATASETS.register("cifar10")(load_cifar10)
DATASETS.register("cifar100")(load_cifar100)
DATASETS.register("digits")(load_digits)
DATASETS.register("synthetic")(load_synthetic)


def _folder_path(suffix: str) -> str:
    if not suffix.strip():
        raise ValueError("folder: needs a path")
    return suffix


DATASETS.register_family("folder:", _folder_path, examples=["folder:PATH"])(load_folder)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered data set names matching a glob pattern (``folder:PATH`` stands for the family)."""
    return DATASETS.names(pattern)


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    num_classes: int | Sequence[int] | None = None,
    samples_per_class: int | None = None,
    seed: int = 0,
    scenario: Scenario | None = None,
) -> ImageDataset:
    """Load data set ``name`` into memory, optionally as a class / samples-per-class subset.

    ``data_dir`` defaults to ``$ASSIST_DATA_DIR`` or the user cache (``~/.cache/assist/data``).
    ``download=True`` fetches missing files for mnist/cifar10/cifar100 (checksummed).
    ``num_classes`` (first k classes, or a list of class ids; labels become 0..k-1 in that
    order) and ``samples_per_class`` (n training samples per class drawn with ``seed``) build
    a subset; the test split keeps every sample of the chosen classes. ``scenario`` (label
    noise, class imbalance, duplicates: data/scenarios.py) then transforms the training split.
    """
    factory = DATASETS.resolve(name)
    dataset = factory(data_dir=resolve_data_dir(data_dir), download=download)
    return shape_dataset(dataset, num_classes=num_classes, samples_per_class=samples_per_class, seed=seed,
                         scenario=scenario)


def shape_dataset(dataset: ImageDataset, *, num_classes: int | Sequence[int] | None = None,
                  samples_per_class: int | None = None, seed: int = 0,
                  scenario: Scenario | None = None) -> ImageDataset:
    """A loaded data set made the run's: its class / samples-per-class subset, then its data
    scenario, both drawn from ``seed`` (the one place both happen, for every loader)."""
    subset = select_subset(dataset, num_classes=num_classes, samples_per_class=samples_per_class, seed=seed)
    return apply_scenario(subset, scenario, seed)
