"""Registry, data directory resolution, and the built-in digits and synthetic sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import assist.data as data_api
from assist.data import DATASETS, DataError, ImageDataset, default_data_dir, list_datasets, load_dataset
from assist.data.base import channel_stats
from assist.registry import RegistryError


def test_registry_lists_every_loader():
    assert list_datasets() == ["cifar10", "cifar100", "digits", "folder:PATH", "mnist", "synthetic"]
    assert list_datasets("cifar*") == ["cifar10", "cifar100"]
    assert "folder:/any/path" in DATASETS and "imagenet" not in DATASETS
    assert data_api.ImageDataset is ImageDataset and issubclass(data_api.DataError, ValueError)


def test_unknown_name_lists_what_exists():
    with pytest.raises(RegistryError, match=r"unknown data set 'mnsit'; available: cifar10, .*synthetic, folder:<N>"):
        load_dataset("mnsit")
    with pytest.raises(RegistryError, match="unknown data set 'folder: '"):
        load_dataset("folder: ")


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("ASSIST_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "assist" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_data_dir() == Path.home() / ".cache" / "assist" / "data"
    monkeypatch.setenv("ASSIST_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    with pytest.raises(DataError, match=str(tmp_path / "env" / "MNIST" / "raw")):
        load_dataset("mnist")  # the environment variable is used when no argument is given
    with pytest.raises(DataError, match=str(tmp_path / "arg" / "MNIST" / "raw")):
        load_dataset("mnist", data_dir=str(tmp_path / "arg"))  # the argument wins


def test_digits_split():
    data = load_dataset("digits")
    assert data.train_images.shape == (1437, 1, 8, 8) and data.test_images.shape == (360, 1, 8, 8)
    assert data.test_labels.bincount().tolist() == [36] * 10
    assert data.train_labels.dtype == torch.int64 and data.num_classes == 10
    assert int(data.train_images.max()) == 255 and data.default_augmentation == "none"
    from sklearn.datasets import load_digits

    bunch = load_digits()
    full = torch.from_numpy(bunch.images * 255 / 16).round().to(torch.uint8).reshape(-1, 64)
    # Train and test together are exactly the original images, each once.
    ours = torch.cat([data.train_images, data.test_images]).reshape(-1, 64)
    assert sorted(map(tuple, ours.tolist())) == sorted(map(tuple, full.tolist()))
    again = load_dataset("digits")
    assert torch.equal(again.test_images, data.test_images)  # fixed split
    assert (data.mean, data.std) == channel_stats(data.train_images)


def test_synthetic_is_small_deterministic_and_learnable():
    data = load_dataset("synthetic")
    assert data.train_images.shape == (256, 1, 8, 8) and data.test_images.shape == (128, 1, 8, 8)
    assert data.train_labels.bincount().tolist() == [64] * 4 and data.test_labels.bincount().tolist() == [32] * 4
    assert torch.equal(load_dataset("synthetic").train_images, data.train_images)
    # Nearest class centroid (fit on train) must do far better than chance (25%) on test...
    centroids = torch.stack([data.train_images[data.train_labels == c].float().mean(0) for c in range(4)])
    distances = ((data.test_images.float()[:, None] - centroids[None]) ** 2).sum(dim=(2, 3, 4))
    accuracy = (distances.argmin(1) == data.test_labels).float().mean().item()
    assert accuracy > 0.8
    # ...while every class carries real noise around its pattern (hard samples exist).
    within = torch.stack([data.train_images[data.train_labels == c].float().std(0).mean() for c in range(4)])
    assert within.min() > 40
    assert data.default_augmentation == "none" and (data.mean, data.std) == channel_stats(data.train_images)
