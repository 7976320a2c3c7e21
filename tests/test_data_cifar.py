"""CIFAR-10/100 pickle batches, built small by the test."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from assist.data import DataError, load_dataset
from assist.data.base import channel_stats


def _dump(path: Path, content, protocol: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(content, protocol=protocol))


def write_fake_cifar10(data_dir: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)  # local generator for test data
    folder = data_dir / "cifar-10-batches-py"
    written = {}
    for name, count in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, count)]
        _dump(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": labels,
                              b"filenames": [b"x.png"] * count}, protocol=2)  # like the official files
        written[name] = (data, labels)
    _dump(folder / "batches.meta", {b"label_names": [n.encode() for n in
                                                     "airplane automobile bird cat deer dog frog horse ship truck".split()]})
    return written


def test_cifar10_batches(tmp_path):
    written = write_fake_cifar10(tmp_path)
    data = load_dataset("cifar10", data_dir=tmp_path)
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (6, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    # Rows are the red, green and blue planes in turn; batches in order 1..5.
    first, labels = written["data_batch_1"]
    assert torch.equal(data.train_images[0, 0], torch.from_numpy(first[0, :1024].reshape(32, 32)))
    assert torch.equal(data.train_images[0, 2], torch.from_numpy(first[0, 2048:].reshape(32, 32)))
    last, _ = written["data_batch_5"]
    assert torch.equal(data.train_images[-1].flatten(), torch.from_numpy(last[-1]))
    assert data.train_labels[:4].tolist() == labels
    assert data.test_labels.tolist() == written["test_batch"][1]
    assert data.classes[0] == "airplane" and data.classes[-1] == "truck" and data.num_classes == 10
    assert (data.mean, data.std) == channel_stats(data.train_images)
    assert data.default_augmentation == "thesis"


def test_cifar100_batches(tmp_path):
    folder = tmp_path / "cifar-100-python"
    for name, count in (("train", 7), ("test", 3)):
        _dump(folder / name, {b"data": np.full((count, 3072), 5, np.uint8), b"fine_labels": [99] * count,
                              b"coarse_labels": [0] * count})
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})
    data = load_dataset("cifar100", data_dir=tmp_path)
    assert data.num_classes == 100 and data.train_images.shape == (7, 3, 32, 32)
    assert data.train_labels.tolist() == [99] * 7 and data.classes[99] == "c99"
    assert data.default_augmentation == "thesis"


def test_missing_batches_are_named(tmp_path):
    write_fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(DataError, match=r"cifar10: missing data_batch_3, test_batch in .*cifar-10-batches-py.*download=true"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_wrong_shapes_name_the_file(tmp_path):
    write_fake_cifar10(tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", {b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4})
    with pytest.raises(DataError, match=r"data_batch_2: data must be uint8 \(N, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_2", {b"data": np.zeros((4, 3072), np.uint8), b"labels": [10] * 4})
    with pytest.raises(DataError, match=r"data_batch_2: labels outside 0..9"):
        load_dataset("cifar10", data_dir=tmp_path)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickles_cannot_run_code(tmp_path):
    write_fake_cifar10(tmp_path)
    marker = tmp_path / "code-ran"
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": _Payload(marker), b"labels": []})
    with pytest.raises(DataError, match=r"test_batch: not a readable CIFAR pickle batch: refusing to load pathlib"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch: not a readable CIFAR pickle batch"):
        load_dataset("cifar10", data_dir=tmp_path)
