"""Image-folder data sets: ``train/<class>/<image>`` and ``test/<class>/<image>``.

The source is a directory or a zip/tar archive (read directly, every member checked for
safety, nothing extracted), optionally wrapped in one top-level folder. Class names are the
sorted folder names and must be the same in both splits. Hidden entries (``.*``,
``__MACOSX``) and top-level entries other than ``train``/``test`` are ignored.

Decoding is done once: the arrays are cached as a ``.pt`` file keyed by a hash of the source
(the archive's sha256, or the directory's file names with a digest of each file's bytes), so
the next load reads one file. A failed decode caches nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
import warnings
from pathlib import Path

import torch

from assist.data.archives import Parts, archive_kind, iter_archive
from assist.data.base import DataError, ImageDataset, channel_stats
from assist.data.download import file_digest
from assist.data.images import Source, decode_all
from assist.data.paths import cache_dir, write_cache

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
CACHE_VERSION = 1  # bump when the decoding or the cache layout changes
CACHE_KEYS = {"classes", "mean", "std", "train_images", "train_labels", "test_images", "test_labels"}
Layout = dict[str, dict[str, list[tuple[str, Source]]]]  # split -> class -> [(name, source)]


def _ignored(parts: Parts) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _strip_wrapper(paths: list[Parts], where: str) -> Parts:
    """The prefix in front of ``train``/``test``: none, or a single top-level folder."""
    tops = {p[0] for p in paths}
    if tops & set(SPLITS):
        return ()
    if len(tops) == 1 and any(len(p) > 1 and p[1] in SPLITS for p in paths):
        return (next(iter(tops)),)
    raise DataError(f"{where}: expected train/<class>/<image> and test/<class>/<image> "
                    f"(optionally inside one top-level folder), found top level {sorted(tops)[:5]}")


def _layout(files: dict[Parts, Source], dirs: set[Parts], where: str) -> Layout:
    """Group files by split and class, checking the layout; classes and files sorted."""
    files = {p: s for p, s in files.items() if p and not _ignored(p)}
    dirs = {p for p in dirs if p and not _ignored(p)}
    prefix = _strip_wrapper(list(files) + list(dirs), where)
    layout: Layout = {split: {} for split in SPLITS}
    for directory in dirs:
        rest = directory[len(prefix):]
        if len(rest) == 2 and rest[0] in SPLITS:
            layout[rest[0]].setdefault(rest[1], [])
        elif len(rest) > 2 and rest[0] in SPLITS:
            raise DataError(f"{where}: unexpected folder {'/'.join(directory)}; expected <split>/<class>/<image>")
    for path, source in files.items():
        rest = path[len(prefix):]
        if not rest or rest[0] not in SPLITS:
            continue
        if len(rest) != 3:
            raise DataError(f"{where}: {'/'.join(path)} is not at <split>/<class>/<image>")
        layout[rest[0]].setdefault(rest[1], []).append(("/".join(path), source))
    for split, classes in layout.items():
        if not classes:
            raise DataError(f"{where}: no class folders under {'/'.join(prefix + (split,))}/")
        for name, items in classes.items():
            if not items:
                raise DataError(f"{where}: class folder {'/'.join(prefix + (split, name))}/ has no images")
    train, test = set(layout["train"]), set(layout["test"])
    if train != test:
        raise DataError(f"{where}: train and test have different classes (only in train: {sorted(train - test)}, "
                        f"only in test: {sorted(test - train)})")
    return {split: {name: sorted(classes[name], key=lambda item: item[0]) for name in sorted(classes)}
            for split, classes in layout.items()}


def _list_directory(root: Path) -> tuple[dict[Parts, Source], set[Parts], str]:
    """Files and folders under ``root`` plus a fingerprint of their names and contents (a
    digest of every file's bytes: an image replaced by another of the same size and time is
    not served from the cache). Only regular files are read: a FIFO, socket or device, a
    dangling link or an unreadable entry is refused with one line naming it."""
    files: dict[Parts, Source] = {}
    dirs: set[Parts] = set()
    fingerprint = hashlib.sha256(str(root).encode())
    for current, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))  # never walk hidden trees
        rel = Path(current).relative_to(root).parts
        dirs.update(rel + (d,) for d in subdirs)
        for name in sorted(names):
            path = Path(current) / name
            shown = "/".join(rel + (name,))
            if _ignored(rel + (name,)):
                continue
            try:
                info = path.stat()
                if not stat.S_ISREG(info.st_mode):
                    raise DataError(f"folder {root}: {shown} is not a regular file (a FIFO, socket or device); "
                                    "an image folder holds image files only")
                digest = file_digest(path, "sha256")
            except FileNotFoundError:
                raise DataError(f"folder {root}: {shown} is a link to nothing") from None
            except OSError as error:
                raise DataError(f"folder {root}: {shown} cannot be read ({error.strerror or error})") from None
            files[rel + (name,)] = path
            fingerprint.update(f"{shown}\0{info.st_size}\0{digest}\n".encode())
    return files, dirs, fingerprint.hexdigest()


def _resolve(path_text: str, data_dir: Path) -> Path:
    if not path_text.strip():
        raise DataError("dataset=folder: names no folder or archive; write dataset=folder:PATH")
    path = Path(path_text).expanduser()
    if not path.exists() and not path.is_absolute() and (data_dir / path).exists():
        path = data_dir / path  # relative names are looked up in the data directory too
    if not path.exists():
        raise DataError(f"folder: {path_text} not found (looked relative to {Path.cwd()} and {data_dir})")
    return path.resolve()


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no code runs
        if not isinstance(cached, dict) or cached.get("version") != CACHE_VERSION or not CACHE_KEYS <= cached.keys():
            raise ValueError("unexpected content")
        return cached
    except Exception as exc:  # noqa: BLE001 - a damaged cache is rebuilt, not fatal
        warnings.warn(f"ignoring unreadable cache {path}: {exc}", stacklevel=3)
        return None


def _decode(layout: Layout, classes: list[str], where: str) -> dict:
    # Both splits in one call, so sizes and the channel count are decided over all images.
    items = [item for split in SPLITS for name in classes for item in layout[split][name]]
    images = torch.from_numpy(decode_all(items, where))
    content: dict = {"version": CACHE_VERSION, "classes": classes}
    start = 0
    for split in SPLITS:
        counts = torch.tensor([len(layout[split][name]) for name in classes])
        total = int(counts.sum())
        content[f"{split}_images"] = images[start:start + total].clone()  # own storage, saved alone
        content[f"{split}_labels"] = torch.repeat_interleave(torch.arange(len(classes)), counts)
        start += total
    mean, std = channel_stats(content["train_images"])
    content["mean"], content["std"] = list(mean), list(std)
    return content


def load_folder(path_text: str, *, data_dir: Path, download: bool = False) -> ImageDataset:
    """The image-folder data set at ``path_text`` (a directory or an archive); ``download``
    is ignored (there is nothing to fetch)."""
    source = _resolve(path_text, Path(data_dir))
    where = str(source)
    if source.is_dir():
        files, dirs, key = _list_directory(source)
    elif archive_kind(source) is not None:
        files, dirs, key = {}, set(), file_digest(source, "sha256")
    else:
        raise DataError(f"{where}: neither a directory nor a zip/tar archive")
    folder = cache_dir()
    cache_file = folder / f"folder-{key[:32]}-v{CACHE_VERSION}.pt" if folder is not None else None
    content = _read_cache(cache_file) if cache_file is not None else None
    if content is None:
        started = time.perf_counter()
        if not source.is_dir():
            from tqdm.auto import tqdm

            with tqdm(desc=f"reading {source.name}", unit=" files", leave=False, disable=None) as bar:
                for rel, data in iter_archive(source):
                    if data is None:
                        dirs.add(rel)
                    else:
                        files[rel] = data
                        bar.update()
        layout = _layout(files, dirs, where)
        content = _decode(layout, sorted(layout["train"]), where)
        log.info("decoded %d images from %s in %.1f s", len(content["train_labels"]) + len(content["test_labels"]),
                 where, time.perf_counter() - started)
        if cache_file is not None:
            write_cache(cache_file, content)
        else:
            warnings.warn(f"no writable cache directory; {where} will be decoded again next time", stacklevel=2)
    return ImageDataset(
        name=f"folder:{path_text}",
        train_images=content["train_images"], train_labels=content["train_labels"],
        test_images=content["test_images"], test_labels=content["test_labels"],
        num_classes=len(content["classes"]), mean=tuple(content["mean"]), std=tuple(content["std"]),
        classes=tuple(content["classes"]), default_augmentation="thesis",
    )
