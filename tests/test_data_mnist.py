"""MNIST: the real files from the shared data folder, and IDX parsing errors on small files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from assist.data import DataError, load_dataset
from assist.data.base import channel_stats
from assist.data.mnist import read_idx

REAL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.delenv("ASSIST_DATA_DIR", raising=False)


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_fake_mnist(data_dir: Path, n_train: int = 20, n_test: int = 8, gz: bool = False, seed: int = 0) -> dict:
    """Small, valid IDX files in the torchvision layout; returns the arrays written."""
    rng = np.random.default_rng(seed)  # a local generator: test data only
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (raw / stem).write_bytes(content)
    return arrays


def test_real_mnist_matches_the_readme(shared_data_dir):
    data = load_dataset("mnist", data_dir=shared_data_dir)
    assert data.train_images.shape == (60000, 1, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (10000, 1, 32, 32)
    assert data.train_labels.dtype == torch.int64
    assert data.train_labels.bincount().tolist() == REAL_COUNTS
    assert data.test_labels.bincount().sum() == 10000 and data.test_labels.unique().tolist() == list(range(10))
    # Two rows/columns of zero padding on each side.
    for images in (data.train_images, data.test_images):
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert images[:, :, border].max() == 0
    # The interior is the IDX file's pixels, in file order.
    raw = (shared_data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    first = torch.from_numpy(np.frombuffer(raw, np.uint8, count=28 * 28, offset=16).reshape(28, 28).copy())
    assert torch.equal(data.train_images[0, 0, 2:30, 2:30], first)
    # README: mean 0.1307, std 0.3081 over 28x28; padding adds zeros, so in 32x32 units:
    assert data.mean[0] == pytest.approx(0.1307 * 28 * 28 / (32 * 32), abs=2e-4)
    assert 0.27 < data.std[0] < 0.28
    assert data.num_classes == 10 and data.classes == tuple("0123456789")
    assert data.default_augmentation == "none"


@pytest.mark.parametrize("gz", [False, True])
def test_small_idx_files_plain_and_gzipped(tmp_path, gz):
    arrays = write_fake_mnist(tmp_path, gz=gz)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.train_images.shape == (20, 1, 32, 32) and data.test_images.shape == (8, 1, 32, 32)
    assert torch.equal(data.train_images[:, 0, 2:30, 2:30], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert data.train_labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.mean == channel_stats(data.train_images)[0]


def test_bad_magic_names_the_file(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(bytes([0, 0, 0x08, 0x04]) + struct.pack(">3I", 1, 2, 2) + bytes(4))
    with pytest.raises(DataError, match=r"images: bad IDX magic number 0x00000804"):
        read_idx(path, 3)
    path.write_bytes(b"\x1f\x8b")  # too short to hold a magic number
    with pytest.raises(DataError, match="bad IDX magic"):
        read_idx(path, 3)


def test_truncated_file_names_the_file(tmp_path):
    write_fake_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: IDX file has \d+ bytes, expected \d+ .*truncated"):
        load_dataset("mnist", data_dir=tmp_path)


def test_corrupt_gzip_names_the_file(tmp_path):
    write_fake_mnist(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:15])
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_and_image_counts_must_agree(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(7, np.uint8)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte: 7 labels for 8 images"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_out_of_range(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(20, 10, np.uint8)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: label 10 outside 0..9"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_files_say_where_to_put_them(tmp_path):
    write_fake_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and "train-images" not in message
    assert str(tmp_path / "MNIST" / "raw") in message and "download=true" in message
