"""Class-count and samples-per-class subsets."""

from __future__ import annotations

import pytest
import torch

from assist.data import DataError, load_dataset, select_subset
from assist.data.base import channel_stats


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_no_options_means_the_whole_set(digits):
    assert select_subset(digits) is digits


def test_first_k_classes(digits):
    subset = select_subset(digits, num_classes=3)
    assert subset.num_classes == 3 and subset.classes == ("0", "1", "2")
    keep = digits.train_labels < 3
    assert torch.equal(subset.train_images, digits.train_images[keep])
    assert torch.equal(subset.train_labels, digits.train_labels[keep])
    assert subset.test_labels.bincount().tolist() == [36, 36, 36]  # whole test split of those classes
    assert (subset.mean, subset.std) == channel_stats(subset.train_images) != (digits.mean, digits.std)


def test_listed_classes_are_renumbered_in_the_given_order(digits):
    subset = select_subset(digits, num_classes=[7, 2])
    assert subset.classes == ("7", "2") and subset.num_classes == 2
    assert torch.equal(subset.train_images[subset.train_labels == 0], digits.train_images[digits.train_labels == 7])
    assert torch.equal(subset.test_images[subset.test_labels == 1], digits.test_images[digits.test_labels == 2])
    assert subset.default_augmentation == digits.default_augmentation


def test_numpy_class_ids_are_accepted(digits):
    import numpy as np

    assert select_subset(digits, num_classes=[np.int64(5), 0]).classes == ("5", "0")


def test_samples_per_class_is_deterministic(digits):
    one = select_subset(digits, num_classes=[4, 1, 9], samples_per_class=5, seed=3)
    assert one.train_labels.bincount().tolist() == [5, 5, 5] and one.num_train == 15
    assert torch.equal(one.train_images, select_subset(digits, num_classes=[4, 1, 9], samples_per_class=5, seed=3).train_images)
    other = select_subset(digits, num_classes=[4, 1, 9], samples_per_class=5, seed=4)
    assert not torch.equal(one.train_images, other.train_images)
    # Every kept image belongs to the class it is labelled with, without repeats.
    for new, old in enumerate([4, 1, 9]):
        pool = {tuple(x) for x in digits.train_images[digits.train_labels == old].reshape(-1, 64).tolist()}
        kept = [tuple(x) for x in one.train_images[one.train_labels == new].reshape(-1, 64).tolist()]
        assert set(kept) <= pool and len(set(kept)) == 5
    assert one.test_images.shape[0] == 3 * 36


def test_samples_per_class_alone_keeps_every_class(digits):
    subset = load_dataset("digits", samples_per_class=10, seed=0)
    assert subset.num_classes == 10 and subset.train_labels.bincount().tolist() == [10] * 10
    assert torch.equal(subset.test_images, digits.test_images)


def test_too_few_samples_names_the_class():
    data = load_dataset("synthetic")  # 64 training samples per class
    with pytest.raises(DataError, match=r"synthetic: class 2 \('pattern2'\) has 64 training samples, fewer than samples_per_class=65"):
        load_dataset("synthetic", num_classes=[2, 0], samples_per_class=65)
    assert select_subset(data, samples_per_class=64).num_train == 256


@pytest.mark.parametrize("kwargs, message", [
    ({"num_classes": 0}, r"num_classes=0 outside 1..10"),
    ({"num_classes": 11}, r"num_classes=11 outside 1..10"),
    ({"num_classes": True}, r"num_classes must be an int or a list"),
    ({"num_classes": []}, r"num_classes is an empty list"),
    ({"num_classes": "3"}, r"num_classes must be an int or a list"),
    ({"num_classes": [3, 10]}, r"class id 10 in num_classes is not a class id in 0..9"),
    ({"num_classes": [3, "4"]}, r"class id '4' in num_classes"),
    ({"num_classes": [3, 4.0]}, r"class id 4.0 in num_classes"),
    ({"num_classes": [3, 5, 3]}, r"class ids \[3\] repeated"),
    ({"samples_per_class": 0}, r"samples_per_class must be a positive int, got 0"),
])
def test_bad_subset_options(digits, kwargs, message):
    with pytest.raises(DataError, match=message):
        select_subset(digits, **kwargs)
