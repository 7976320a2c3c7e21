"""Downloads against a local HTTP server: success, mirror fallback, checksum mismatch,
unreachable server, and the MNIST / CIFAR download paths end to end."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import pickle
import socket
import struct
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import assist.data.cifar as cifar
import assist.data.mnist as mnist
from assist.data import DataError, load_dataset
from assist.data.download import download_file, file_digest, verify_file


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_url():
    """A URL on a local port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_success_is_verified_and_atomic(served, tmp_path):
    root, url = served
    payload = bytes(range(256)) * 4000
    (root / "blob.bin").write_bytes(payload)
    dest = tmp_path / "out" / "blob.bin"
    md5 = hashlib.md5(payload).hexdigest()
    assert download_file([url + "blob.bin"], dest, md5=md5) == dest
    assert dest.read_bytes() == payload and leftovers(dest.parent) == ["blob.bin"]
    assert verify_file(dest, md5=md5) and file_digest(dest, "sha256") == hashlib.sha256(payload).hexdigest()


def test_checksum_mismatch_keeps_nothing(served, tmp_path):
    root, url = served
    (root / "blob.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DataError, match=r"blob\.bin.*sha256 checksum mismatch: got [0-9a-f]{64}, expected 0{64}"):
        download_file([url + "blob.bin"], dest, sha256="0" * 64)
    assert leftovers(dest.parent) == []  # neither the file nor a temporary part


def test_mirrors_are_tried_in_order(served, tmp_path, dead_url):
    root, url = served
    (root / "blob.bin").write_bytes(b"payload")
    dest = tmp_path / "blob.bin"
    download_file([dead_url + "blob.bin", url + "missing.bin", url + "blob.bin"], dest,
                  md5=hashlib.md5(b"payload").hexdigest())
    assert dest.read_bytes() == b"payload"


def test_unreachable_server_lists_every_url(tmp_path, served, dead_url):
    _, url = served
    with pytest.raises(DataError) as info:
        download_file([dead_url + "x.gz", url + "x.gz"], tmp_path / "x.gz", md5="0" * 32)
    message = str(info.value)
    assert message.startswith("could not download x.gz")
    assert dead_url + "x.gz" in message and "refused" in message.lower()
    assert url + "x.gz: HTTP 404" in message
    assert leftovers(tmp_path) == ["served"]


def test_file_urls_work(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"local")
    dest = tmp_path / "copy.bin"
    download_file([source.as_uri()], dest, md5=hashlib.md5(b"local").hexdigest())
    assert dest.read_bytes() == b"local"


def test_a_checksum_is_required(tmp_path):
    with pytest.raises(ValueError, match="md5 or sha256"):
        download_file(["file:///nothing"], tmp_path / "x")


def _serve_fake_mnist(root: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    arrays = {
        "train-images-idx3-ubyte": np.full((12, 28, 28), 7, np.uint8),
        "train-labels-idx1-ubyte": (np.arange(12) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": np.full((5, 28, 28), 9, np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(5, dtype=np.uint8),
    }
    md5 = {}
    for stem, array in arrays.items():
        content = gzip.compress(idx_bytes(array))
        (root / f"{stem}.gz").write_bytes(content)
        md5[stem] = hashlib.md5(content).hexdigest()
    return md5, arrays


def test_mnist_download_end_to_end(served, tmp_path, dead_url, monkeypatch):
    root, url = served
    md5, arrays = _serve_fake_mnist(root)
    monkeypatch.setattr(mnist, "MIRRORS", [dead_url, url])
    monkeypatch.setattr(mnist, "MD5", md5)
    data_dir = tmp_path / "data"
    data = load_dataset("mnist", data_dir=data_dir, download=True)
    assert data.train_images.shape == (12, 1, 32, 32) and data.test_labels.tolist() == [0, 1, 2, 3, 4]
    assert int(data.train_images[:, :, 2:30, 2:30].min()) == 7
    assert leftovers(data_dir / "MNIST" / "raw") == sorted(f"{stem}.gz" for stem in md5)
    # Present files are not fetched again: a dead mirror no longer matters.
    monkeypatch.setattr(mnist, "MIRRORS", [dead_url])
    assert load_dataset("mnist", data_dir=data_dir, download=True).train_images.shape[0] == 12


def test_mnist_download_mismatch_and_no_server(served, tmp_path, dead_url, monkeypatch):
    root, url = served
    md5, _ = _serve_fake_mnist(root)
    md5["t10k-images-idx3-ubyte"] = "0" * 32
    monkeypatch.setattr(mnist, "MIRRORS", [url])
    monkeypatch.setattr(mnist, "MD5", md5)
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*md5 checksum mismatch"):
        load_dataset("mnist", data_dir=tmp_path, download=True)
    assert "t10k-images-idx3-ubyte.gz" not in leftovers(raw)
    assert not [name for name in leftovers(raw) if name.endswith(".part")]
    monkeypatch.setattr(mnist, "MIRRORS", [dead_url])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path, download=True)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and str(raw) in message and "download failed" in message
    # download=true was given: the message must not tell the user to pass it
    assert "pass download=true" not in message and "by hand" in message and dead_url in message


def test_mnist_missing_without_download_suggests_it(tmp_path):
    with pytest.raises(DataError, match=r"mnist: missing .*pass download=true to fetch them"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def _fake_cifar10_archive(path: Path, extra: tarfile.TarInfo | None = None) -> None:
    """A cifar-10-python.tar.gz with two tiny training batches' worth of files."""
    members = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    with tarfile.open(path, "w:gz") as archive:
        for name, count in list(members.items()) + [("batches.meta", 0)]:
            if name == "batches.meta":
                content = {b"label_names": [f"c{i}".encode() for i in range(10)]}
            else:
                data = np.full((count, 3072), len(name), np.uint8)
                content = {b"data": data, b"labels": list(range(count))}
            blob = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
        if extra is not None:
            archive.addfile(extra, io.BytesIO(b"x" * extra.size) if extra.isfile() else None)


def test_cifar_download_and_safe_extract(served, tmp_path, monkeypatch):
    root, url = served
    _fake_cifar10_archive(root / "cifar-10-python.tar.gz")
    spec = dataclasses.replace(cifar.CIFAR10, url=url + "cifar-10-python.tar.gz",
                               md5=file_digest(root / "cifar-10-python.tar.gz", "md5"))
    monkeypatch.setattr(cifar, "CIFAR10", spec)
    data = load_dataset("cifar10", data_dir=tmp_path / "data", download=True)
    assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (3, 3, 32, 32)
    assert data.classes[:2] == ("c0", "c1") and data.default_augmentation == "thesis"
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")]  # staging removed


def test_cifar_archive_with_escaping_member_is_rejected(served, tmp_path, monkeypatch):
    root, url = served
    evil = tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt")
    evil.size = 3
    _fake_cifar10_archive(root / "cifar-10-python.tar.gz", extra=evil)
    spec = dataclasses.replace(cifar.CIFAR10, url=url + "cifar-10-python.tar.gz",
                               md5=file_digest(root / "cifar-10-python.tar.gz", "md5"))
    monkeypatch.setattr(cifar, "CIFAR10", spec)
    data_dir = tmp_path / "deep" / "data"
    with pytest.raises(DataError, match=r"unsafe archive member 'cifar-10-batches-py/\.\./\.\./escaped\.txt'"):
        load_dataset("cifar10", data_dir=data_dir, download=True)
    assert not (tmp_path / "escaped.txt").exists() and not (data_dir / "cifar-10-batches-py").exists()


def test_cifar_download_unavailable(tmp_path, dead_url, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10", dataclasses.replace(cifar.CIFAR10, url=dead_url + "c.tar.gz"))
    with pytest.raises(DataError, match=r"cifar10: download failed .*place the extracted cifar-10-batches-py/ folder"):
        load_dataset("cifar10", data_dir=tmp_path, download=True)


def test_cifar_archive_lacking_a_batch_does_not_suggest_download(served, tmp_path, monkeypatch):
    """The download worked but the archive lacks a file: passing download=true again would not help."""
    root, url = served
    archive = root / "cifar-10-python.tar.gz"
    _fake_cifar10_archive(archive)
    with tarfile.open(archive) as full:
        members = [(m, full.extractfile(m).read()) for m in full.getmembers() if not m.name.endswith("test_batch")]
    with tarfile.open(archive, "w:gz") as partial:
        for member, content in members:
            partial.addfile(member, io.BytesIO(content))
    spec = dataclasses.replace(cifar.CIFAR10, url=url + "cifar-10-python.tar.gz", md5=file_digest(archive, "md5"))
    monkeypatch.setattr(cifar, "CIFAR10", spec)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", data_dir=tmp_path / "data", download=True)
    message = str(info.value)
    assert "missing test_batch" in message and "download=true" not in message
