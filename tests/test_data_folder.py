"""Image-folder data sets from directories and archives built with tiny PNGs."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import assist.data.images as images
from assist.data import DataError, load_dataset
from assist.data.base import channel_stats

CLASSES = ("cat", "ant", "dog")  # written unsorted on purpose


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ASSIST_CACHE_DIR", str(cache))
    return cache


def make_tree(root: Path, mode: str = "RGB", size: tuple[int, int] = (5, 6), counts=(("train", 3), ("test", 2)),
              seed: int = 0) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Write ``<split>/<class>/NN.png`` under ``root``; return split -> [(class, array)] in the
    order the loader must produce (classes sorted, then file names)."""
    rng = np.random.default_rng(seed)  # local generator: test data only
    height, width = size
    written: dict[str, list[tuple[str, np.ndarray]]] = {}
    for split, count in counts:
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                shape = (height, width, 3) if mode == "RGB" else (height, width)
                array = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(array, mode).save(root / split / cls / f"{i:02d}.png")
                written.setdefault(split, []).append((cls, array))
        written[split].sort(key=lambda item: item[0])  # stable: file order kept inside a class
    return written


def as_chw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.transpose(2, 0, 1).copy() if array.ndim == 3 else array[None].copy())


def check(data, written) -> None:
    classes = sorted(CLASSES)
    assert data.classes == tuple(classes) and data.num_classes == 3
    for split in ("train", "test"):
        expected = torch.stack([as_chw(a) for _, a in written[split]])
        assert torch.equal(getattr(data, f"{split}_images"), expected)
        assert getattr(data, f"{split}_labels").tolist() == [classes.index(c) for c, _ in written[split]]
    assert (data.mean, data.std) == channel_stats(data.train_images)
    assert data.default_augmentation == "thesis"


def zip_tree(root: Path, archive: Path, wrapper: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(root.rglob("*")):
            out.write(path, arcname=str(Path(wrapper) / path.relative_to(root)))
    return archive


def tar_tree(root: Path, archive: Path, wrapper: str = "wrap") -> Path:
    with tarfile.open(archive, "w:gz") as out:
        out.add(root, arcname=wrapper or ".")
    return archive


def test_directory_rgb(tmp_path):
    written = make_tree(tmp_path / "set")
    data = load_dataset(f"folder:{tmp_path / 'set'}", data_dir=tmp_path / "data")
    check(data, written)
    assert data.train_images.shape == (9, 3, 5, 6) and data.name == f"folder:{tmp_path / 'set'}"


def test_directory_grayscale_has_one_channel(tmp_path):
    written = make_tree(tmp_path / "set", mode="L")
    data = load_dataset(f"folder:{tmp_path / 'set'}", data_dir=tmp_path / "data")
    assert data.train_images.shape == (9, 1, 5, 6)
    check(data, written)


def test_mixed_modes_become_rgb(tmp_path):
    root = tmp_path / "set"
    make_tree(root)
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    Image.fromarray(gray, "L").save(root / "train" / "ant" / "00.png")
    rgba = np.full((5, 6, 4), 200, np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "test" / "dog" / "01.png")
    data = load_dataset(f"folder:{root}", data_dir=tmp_path / "data")
    assert data.train_images.shape[1] == 3
    assert torch.equal(data.train_images[0], torch.from_numpy(gray).expand(3, 5, 6))  # ant/00 comes first
    assert int(data.test_images[-1].min()) == 200 == int(data.test_images[-1].max())  # alpha dropped


@pytest.mark.parametrize("kind", ["zip", "zip-wrapped", "tar.gz-wrapped", "tar.gz-dot", "tar-flat"])
def test_archives_match_the_directory(tmp_path, kind):
    written = make_tree(tmp_path / "set")
    (tmp_path / "set" / "README.txt").write_text("ignored: not under train/ or test/")
    (tmp_path / "set" / "train" / "cat" / ".DS_Store").write_bytes(b"\0junk")
    if kind.startswith("zip"):
        archive = zip_tree(tmp_path / "set", tmp_path / "set.zip", "wrap" if "wrapped" in kind else "")
    elif kind.startswith("tar.gz"):  # members "wrap/train/..." or "./train/..."
        archive = tar_tree(tmp_path / "set", tmp_path / "set.tar.gz", "wrap" if "wrapped" in kind else "")
    else:
        archive = tmp_path / "set.tar"
        with tarfile.open(archive, "w") as out:
            for path in sorted((tmp_path / "set").rglob("*")):
                out.add(path, arcname=str(path.relative_to(tmp_path / "set")), recursive=False)
    check(load_dataset(f"folder:{archive}", data_dir=tmp_path / "data"), written)


def _tar_with(path: Path, member: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as out:
        good = io.BytesIO()
        Image.new("L", (2, 2)).save(good, "PNG")
        info = tarfile.TarInfo("train/a/0.png")
        info.size = len(good.getvalue())
        out.addfile(info, io.BytesIO(good.getvalue()))
        out.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, (1 if kind == tarfile.REGTYPE else 0)
    return info


@pytest.mark.parametrize("member, reason", [
    (_member("../escape.png"), r"'\.\.' in path"),
    (_member("/abs/escape.png"), "absolute path"),
    (_member("train/a/link.png", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to '/etc/passwd'"),
    (_member("train/a/hard.png", tarfile.LNKTYPE, "train/a/0.png"), "hard link"),
    (_member("train/a/dev", tarfile.CHRTYPE), "device or FIFO"),
    (_member("train/a/fifo", tarfile.FIFOTYPE), "device or FIFO"),
])
def test_unsafe_tar_members_are_rejected(tmp_path, member, reason):
    archive = _tar_with(tmp_path / "bad.tar.gz", member)
    with pytest.raises(DataError, match=rf"unsafe archive member '{member.name}' \({reason}"):
        load_dataset(f"folder:{archive}", data_dir=tmp_path / "data")


@pytest.mark.parametrize("name, attr, reason", [
    ("../escape.png", 0o100644, r"'\.\.' in path"),
    ("C:/escape.png", 0o100644, "absolute path"),
    ("train/a/link.png", 0o120777, "link or special file"),
])
def test_unsafe_zip_members_are_rejected(tmp_path, name, attr, reason):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as out:
        info = zipfile.ZipInfo(name)
        info.external_attr = attr << 16
        out.writestr(info, b"/etc/passwd")
    with pytest.raises(DataError, match=rf"unsafe archive member '{name}' \({reason}"):
        load_dataset(f"folder:{archive}", data_dir=tmp_path / "data")


def test_corrupt_image_is_named_and_nothing_cached(tmp_path):
    root = tmp_path / "set"
    make_tree(root)
    (root / "train" / "dog" / "01.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"cannot decode image .*train/dog/01\.png"):
        load_dataset(f"folder:{root}", data_dir=tmp_path / "data")
    assert not list((tmp_path / "data").rglob("*.pt"))


def test_size_mismatch_names_the_odd_file(tmp_path):
    root = tmp_path / "set"
    make_tree(root)
    Image.new("RGB", (7, 5)).save(root / "test" / "cat" / "00.png")
    with pytest.raises(DataError, match=r"image .*test/cat/00\.png is 7x5, but most images are 6x5"):
        load_dataset(f"folder:{root}", data_dir=tmp_path / "data")


@pytest.mark.parametrize("change, message", [
    (lambda r: (r / "test" / "ant").rename(r / "test" / "bee"), r"only in train: \['ant'\], only in test: \['bee'\]"),
    (lambda r: [p.unlink() for p in (r / "train" / "cat").iterdir()], r"class folder train/cat/ has no images"),
    (lambda r: [p.unlink() for p in (r / "test").rglob("*.png")], r"class folder test/\w+/ has no images"),
    (lambda r: (r / "train" / "stray.png").write_bytes(b""), r"train/stray\.png is not at <split>/<class>/<image>"),
    (lambda r: (r / "train" / "cat" / "sub").mkdir(), r"unexpected folder train/cat/sub"),
    (lambda r: (r / "test").rename(r / "val"), r"no class folders under test/"),
    (lambda r: ((r / "train").rename(r / "training"), (r / "test").rename(r / "testing")), r"expected train/<class>/<image>"),
])
def test_layout_errors(tmp_path, change, message):
    root = tmp_path / "set"
    make_tree(root)
    change(root)
    with pytest.raises(DataError, match=message):
        load_dataset(f"folder:{root}", data_dir=tmp_path / "data")


def test_missing_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="folder: nowhere not found"):
        load_dataset("folder:nowhere", data_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="neither a directory nor a zip/tar archive"):
        load_dataset(f"folder:{tmp_path / 'notes.txt'}", data_dir=tmp_path)


def test_relative_paths_are_looked_up_in_the_data_dir(tmp_path):
    written = make_tree(tmp_path / "data" / "mine")
    check(load_dataset("folder:mine", data_dir=tmp_path / "data"), written)


def _refuse_to_decode(monkeypatch):
    def refuse(source):
        raise RuntimeError("decoder called")
    monkeypatch.setattr(images, "decode_image", refuse)


@pytest.mark.parametrize("as_archive", [False, True])
def test_cache_is_reused_until_the_source_changes(tmp_path, monkeypatch, as_archive, _private_cache):
    root = tmp_path / "set"
    make_tree(root)
    source = tar_tree(root, tmp_path / "set.tgz") if as_archive else root
    first = load_dataset(f"folder:{source}", data_dir=tmp_path / "data")
    assert len(list(_private_cache.glob("folder-*.pt"))) == 1
    _refuse_to_decode(monkeypatch)
    again = load_dataset(f"folder:{source}", data_dir=tmp_path / "data")
    assert torch.equal(again.train_images, first.train_images) and again.classes == first.classes
    assert (again.mean, again.std) == (first.mean, first.std)
    # A changed source is decoded again (and here the decoder refuses).
    Image.new("RGB", (6, 5), (1, 2, 3)).save(root / "train" / "ant" / "00.png")
    os.utime(root / "train" / "ant" / "00.png", ns=(1, 10**18))
    if as_archive:
        tar_tree(root, source)
    with pytest.raises(DataError, match="cannot decode image .*RuntimeError: decoder called"):
        load_dataset(f"folder:{source}", data_dir=tmp_path / "data")


def test_nothing_is_written_into_the_data_directory(tmp_path, monkeypatch):
    """The data may be read-only or shared: the cache is the user's (or ASSIST_CACHE_DIR)."""
    data_dir = tmp_path / "data"
    make_tree(data_dir / "set")
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    monkeypatch.delenv("ASSIST_CACHE_DIR")
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    load_dataset("folder:set", data_dir=data_dir)
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before
    assert len(list((xdg / "assist" / "cache").glob("folder-*.pt"))) == 1


def test_a_damaged_cache_is_rebuilt(tmp_path, _private_cache):
    written = make_tree(tmp_path / "set")
    load_dataset(f"folder:{tmp_path / 'set'}", data_dir=tmp_path / "data")
    (cached,) = _private_cache.glob("folder-*.pt")
    cached.write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        check(load_dataset(f"folder:{tmp_path / 'set'}", data_dir=tmp_path / "data"), written)


def test_worker_pool_gives_the_same_arrays_and_names_bad_files(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "POOL_MIN_IMAGES", 1)  # force the forked pool on a tiny set
    monkeypatch.setattr(images, "CHUNK", 4)
    root = tmp_path / "set"
    written = make_tree(root, counts=(("train", 5), ("test", 2)))
    check(load_dataset(f"folder:{root}", data_dir=tmp_path / "data"), written)
    (root / "test" / "ant" / "01.png").write_bytes(b"broken")
    with pytest.raises(DataError, match=r"cannot decode image .*test/ant/01\.png: UnidentifiedImageError"):
        load_dataset(f"folder:{root}", data_dir=tmp_path / "data")


def test_sixteen_bit_grayscale_keeps_the_high_byte(tmp_path):
    root = tmp_path / "set"
    make_tree(root, mode="L")
    deep = (np.arange(30, dtype=np.uint16) * 2000).reshape(5, 6)
    Image.fromarray(deep).save(root / "train" / "ant" / "00.png")  # saved as a 16-bit PNG
    with Image.open(root / "train" / "ant" / "00.png") as check_mode:
        assert check_mode.mode.startswith("I")
    data = load_dataset(f"folder:{root}", data_dir=tmp_path / "data")
    assert torch.equal(data.train_images[0, 0], torch.from_numpy((deep >> 8).astype(np.uint8)))


def test_colour_in_one_split_makes_both_rgb(tmp_path):
    root = tmp_path / "set"
    written = make_tree(root, mode="L")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8), "RGB").save(root / "train" / "dog" / "00.png")
    data = load_dataset(f"folder:{root}", data_dir=tmp_path / "data")
    assert data.train_images.shape[1] == data.test_images.shape[1] == 3
    first_test = torch.from_numpy(written["test"][0][1])
    assert torch.equal(data.test_images[0], first_test.expand(3, 5, 6))


def test_a_long_decode_shows_a_bar_on_a_terminal(monkeypatch):
    import io
    import sys

    import numpy as np
    from PIL import Image

    from assist.data import images

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(buffer, format="PNG")
    items = [(f"img{i}.png", buffer.getvalue()) for i in range(1200)]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    arrays = images.decode_all(items, "set")
    assert arrays.shape == (1200, 1, 4, 4)
    assert "decoding 1,200 images" in screen.getvalue() and "/1200 [" in screen.getvalue()
    quiet = io.StringIO()  # not a terminal: nothing
    monkeypatch.setattr(sys, "stderr", quiet)
    images.decode_all(items, "set")
    assert quiet.getvalue() == ""


def test_an_image_replaced_with_the_same_size_and_time_is_not_served_stale(tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_tree(root)
    load_dataset(f"folder:{root}")
    target = root / "train" / "cat" / "00.png"
    info = target.stat()
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))         # one byte differs
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))                 # same size and mtime
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (info.st_size, info.st_mtime_ns)
    _refuse_to_decode(monkeypatch)
    with pytest.raises(DataError, match="decoder called"):                   # decoded again, not cached
        load_dataset(f"folder:{root}")


@pytest.mark.parametrize("kind", ["fifo", "dangling"])
def test_a_fifo_or_a_dangling_link_in_a_folder_is_one_line_not_a_hang(tmp_path, kind):
    root = tmp_path / "data"
    make_tree(root)
    odd = root / "train" / "cat" / "99.png"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="not a regular file" if kind == "fifo" else "a link to nothing") as error:
        load_dataset(f"folder:{root}")
    assert "train/cat/99.png" in str(error.value)


def test_pixel_bombs_are_refused_from_their_headers_before_decoding(tmp_path, monkeypatch):
    """A small file that decodes to a huge image, or a set that decodes to more bytes than
    allowed, is one line naming the file or the limit, and nothing is decoded."""
    import resource

    root = tmp_path / "data"
    make_tree(root)
    Image.new("1", (6000, 6000)).save(root / "train" / "cat" / "99.png")          # 36 MP in a few KB
    assert (root / "train" / "cat" / "99.png").stat().st_size < 100_000
    _refuse_to_decode(monkeypatch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"train/cat/99.png: 6000x6000 is 36,000,000 pixels, over the limit of "
                                        r"16,777,216 per image \(ASSIST_MAX_IMAGE_PIXELS\)"):
        load_dataset(f"folder:{root}")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000      # KiB: nothing decoded
    (root / "train" / "cat" / "99.png").unlink()
    monkeypatch.setenv("ASSIST_MAX_DATASET_BYTES", "300")                            # 5x6x3 = 90 bytes each
    with pytest.raises(DataError, match="decode to more than 300 bytes .*ASSIST_MAX_DATASET_BYTES"):
        load_dataset(f"folder:{root}")
    monkeypatch.setenv("ASSIST_MAX_IMAGE_PIXELS", "many")
    with pytest.raises(DataError, match="ASSIST_MAX_IMAGE_PIXELS='many' is not a whole number"):
        load_dataset(f"folder:{root}")
