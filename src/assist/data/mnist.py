"""MNIST from the four standard IDX files, zero-padded to 1x32x32 as in the thesis (4.2.3).

Files are looked up in ``<data_dir>/MNIST/raw/`` (torchvision's layout), plain or gzipped.
With ``download=True`` missing files are fetched as .gz from public mirrors and checked
against the md5 sums torchvision publishes.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from assist.data.base import DataError, ImageDataset, channel_stats
from assist.data.download import download_file

MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
]
# md5 of the .gz files, as listed by torchvision.datasets.MNIST.resources.
MD5 = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = tuple(str(d) for d in range(10))
PAD = 2  # 28 + 2 * 2 = 32


def raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte IDX array with ``ndim`` dimensions; DataError naming the file if the
    magic number, the dimension count or the file size is wrong."""
    raw = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] != ndim:
        magic = raw[:4].hex() if len(raw) >= 4 else raw.hex()
        raise DataError(f"{path}: bad IDX magic number 0x{magic}, expected 0x000008{ndim:02x} (unsigned bytes, {ndim}-d)")
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"{path}: IDX file has {len(raw)} bytes, expected {expected} for shape {dims} (truncated or corrupt)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def fetch(directory: Path, stems: list[str], *, mirrors: list[str] | None = None, md5: dict[str, str] | None = None) -> None:
    """Download ``<stem>.gz`` for each stem into ``directory`` (checked, atomic)."""
    mirrors = MIRRORS if mirrors is None else mirrors
    md5 = MD5 if md5 is None else md5
    for stem in stems:
        name = f"{stem}.gz"
        download_file([m.rstrip("/") + "/" + name for m in mirrors], directory / name, md5=md5[stem])


def _missing_message(directory: Path, missing: list[str], failure: str = "") -> str:
    """What is missing and what to do: without ``failure`` (download=false) fetch them with
    download=true; after a failed download, place them by hand or retry when the mirrors answer."""
    listed = ", ".join(missing)
    if not failure:
        return (f"mnist: missing {listed} in {directory}; place the IDX files (plain or .gz) there, "
                f"or pass download=true to fetch them")
    return (f"mnist: missing {listed} in {directory} (download failed: {failure}); place the IDX files "
            f"(plain or .gz, from {MIRRORS[0]}) there by hand, or run again when a mirror is reachable")


def _split(directory: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_stem, label_stem = FILES[split]
    image_path, label_path = _find(directory, image_stem), _find(directory, label_stem)
    assert image_path is not None and label_path is not None
    images = read_idx(image_path, 3)
    labels = read_idx(label_path, 1)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{image_path}: MNIST images must be 28x28, got {images.shape[1]}x{images.shape[2]}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images in {image_path.name}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_path}: label {int(labels.max())} outside 0..9")
    # Pad with zeros (the background value) as the thesis does for LeNet-style 32x32 inputs.
    padded = F.pad(torch.from_numpy(images.copy()).unsqueeze(1), (PAD, PAD, PAD, PAD))
    return padded, torch.from_numpy(labels.astype(np.int64))


def load_mnist(*, data_dir: Path, download: bool = False) -> ImageDataset:
    """MNIST train (60,000) and test (10,000) as 1x32x32 uint8 images."""
    directory = raw_dir(data_dir)
    stems = [stem for pair in FILES.values() for stem in pair]
    missing = [stem for stem in stems if _find(directory, stem) is None]
    if missing and not download:
        raise DataError(_missing_message(directory, missing))
    if missing:
        try:
            fetch(directory, missing)
        except (DataError, OSError) as exc:
            raise DataError(_missing_message(directory, missing, str(exc))) from exc
    train_images, train_labels = _split(directory, "train")
    test_images, test_labels = _split(directory, "test")
    mean, std = channel_stats(train_images)
    return ImageDataset(
        name="mnist", train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels, num_classes=10,
        mean=mean, std=std, classes=CLASSES, default_augmentation="none",
    )
