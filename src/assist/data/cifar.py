"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

The batches are unpickled with a restricted unpickler that only rebuilds plain containers
and numpy arrays, so a tampered file cannot run code. ``download=True`` fetches the official
tar.gz (md5-checked) and extracts it safely into the data directory.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from assist.data.archives import safe_extract
from assist.data.base import DataError, ImageDataset, channel_stats
from assist.data.download import download_file, verify_file


@dataclass(frozen=True)
class CifarSpec:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    num_classes: int
    url: str
    md5: str


CIFAR10 = CifarSpec(
    "cifar10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
    "batches.meta", b"labels", b"label_names", 10,
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = CifarSpec(
    "cifar100", "cifar-100-python", ("train",), ("test",),
    "meta", b"fine_labels", b"fine_label_names", 100,
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
)


def _numpy_private(module: str, name: str):
    """``numpy._core.<module>.<name>`` (numpy 2) or ``numpy.core.<module>.<name>`` (numpy 1)."""
    import importlib

    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


class _ArrayUnpickler(pickle.Unpickler):
    """Allows only what CIFAR batches contain: builtin containers, bytes and numpy arrays
    (pickled by numpy 1 or 2, protocol up to 5)."""

    _NUMPY_PRIVATE = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle API
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes under pickle protocol 2
            return codecs.encode
        for package in ("numpy._core.", "numpy.core."):
            if module.startswith(package) and (module[len(package):], name) in self._NUMPY_PRIVATE:
                return _numpy_private(module[len(package):], name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle(path: Path) -> dict:
    try:
        content = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path}: not a readable CIFAR pickle batch: {exc}") from exc
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a dict, got {type(content).__name__}")
    return content


def _read_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    batch = read_pickle(path)
    if b"data" not in batch or spec.label_key not in batch:
        raise DataError(f"{path}: missing key b'data' or {spec.label_key!r}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path}: labels outside 0..{spec.num_classes - 1}")
    return data, labels


def _read_split(folder: Path, files: tuple[str, ...], spec: CifarSpec) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_batch(folder / name, spec) for name in files]
    # Each row is the red, green then blue 32x32 plane, i.e. already channel-first.
    images = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _class_names(folder: Path, spec: CifarSpec) -> tuple[str, ...]:
    path = folder / spec.meta_file
    if not path.is_file():  # the names are a convenience; the batches alone are enough
        return tuple(str(i) for i in range(spec.num_classes))
    names = read_pickle(path).get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise DataError(f"{path}: expected {spec.num_classes} names under {spec.names_key!r}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def fetch(data_dir: Path, spec: CifarSpec, *, url: str | None = None, md5: str | None = None) -> None:
    """Download the official archive into ``data_dir`` (kept, so it is not fetched twice)
    and extract it safely."""
    archive = data_dir / Path(url or spec.url).name
    if not verify_file(archive, md5=md5 or spec.md5):  # absent, or damaged by some other tool
        download_file([url or spec.url], archive, md5=md5 or spec.md5)
    safe_extract(archive, data_dir)


def load_cifar(spec: CifarSpec, *, data_dir: Path, download: bool = False) -> ImageDataset:
    folder = Path(data_dir) / spec.folder
    needed = spec.train_files + spec.test_files
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing and download:
        try:
            fetch(Path(data_dir), spec)
        except (DataError, OSError) as exc:
            raise DataError(f"{spec.name}: download failed ({exc}); place the extracted {spec.folder}/ folder "
                            f"from {spec.url} under {data_dir}") from exc
        missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        image_folder = _image_folder_copy(Path(data_dir), spec)
        if image_folder is not None:
            return image_folder
        # after a download (download=true) the archive lacked them: suggesting download=true would mislead
        fetch_hint = "" if download else ", or pass download=true to fetch it"
        raise DataError(f"{spec.name}: missing {', '.join(missing)} in {folder}; extract {spec.url} "
                        f"into {data_dir}{fetch_hint}")
    train_images, train_labels = _read_split(folder, spec.train_files, spec)
    test_images, test_labels = _read_split(folder, spec.test_files, spec)
    mean, std = channel_stats(train_images)
    return ImageDataset(
        name=spec.name, train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels, num_classes=spec.num_classes,
        mean=mean, std=std, classes=_class_names(folder, spec), default_augmentation="thesis",
    )


def _image_folder_copy(data_dir: Path, spec: CifarSpec) -> ImageDataset | None:
    """An image-folder copy of the data set (``<name>-jpeg/`` or ``<name>-jpeg.tar.gz`` with
    ``train/<class>/*`` and ``test/<class>/*``), used when the python batches are absent."""
    from assist.data.folder import load_folder

    for candidate in (f"{spec.name}-jpeg", f"{spec.name}-jpeg.tar.gz", f"{spec.name}-jpeg.zip"):
        path = data_dir / candidate
        if path.exists():
            dataset = load_folder(str(path), data_dir=data_dir)
            if dataset.num_classes != spec.num_classes:
                raise DataError(f"{path}: {dataset.num_classes} classes, {spec.name} has {spec.num_classes}")
            return replace(dataset, name=spec.name)
    return None


def load_cifar10(*, data_dir: Path, download: bool = False) -> ImageDataset:
    return load_cifar(CIFAR10, data_dir=data_dir, download=download)


def load_cifar100(*, data_dir: Path, download: bool = False) -> ImageDataset:
    return load_cifar(CIFAR100, data_dir=data_dir, download=download)
