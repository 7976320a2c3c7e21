"""Warnings a run owes its user: augmentation where the thesis has none, GPU readings that
cannot be taken (once per run, not once per epoch)."""

from __future__ import annotations

import warnings

import pytest
import torch

from assist.data.base import ImageDataset
from assist.data.pipeline import resolve_augmentation
from assist.metrics import system


def dataset(default: str) -> ImageDataset:
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    labels = torch.tensor([0, 1, 0, 1])
    return ImageDataset(name="mnist-like", train_images=images, train_labels=labels, test_images=images,
                        test_labels=labels, num_classes=2, mean=(0.5,), std=(0.5,), default_augmentation=default)


def test_augmenting_a_data_set_the_thesis_never_augments_is_named():
    with pytest.warns(UserWarning, match=r"data_augmentation=true applies the 'thesis' .* to mnist-like"):
        assert resolve_augmentation(True, "thesis", dataset("none")) == "thesis"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_augmentation(None, "thesis", dataset("none")) == "none"
        assert resolve_augmentation(True, "thesis", dataset("thesis")) == "thesis"   # CIFAR: as the thesis
        assert resolve_augmentation(False, "thesis", dataset("thesis")) == "none"


def test_an_unreadable_gpu_metric_is_warned_about_once_per_run(monkeypatch):
    def broken(device):
        raise ModuleNotFoundError("pynvml")

    monkeypatch.setattr(system, "GPU_READERS", (("gpu_temperature_c", broken), ("gpu_power_w", lambda d: 42.0)))
    unavailable: set[str] = set()
    with pytest.warns(UserWarning, match=r"gpu_temperature_c is not recorded: .*assist-sampling\[gpu\]"):
        assert system.gpu_readings(torch.device("cpu"), unavailable) == {"gpu_power_w": 42.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # the second epoch is quiet
        assert system.gpu_readings(torch.device("cpu"), unavailable) == {"gpu_power_w": 42.0}
    assert unavailable == {"gpu_temperature_c"}
