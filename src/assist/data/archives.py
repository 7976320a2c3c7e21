"""Reading and extracting zip/tar archives without trusting their member names.

Every member is checked before anything is read or written: absolute paths, ``..``
components, symbolic and hard links, devices and FIFOs are rejected with a DataError naming
the member. Only regular files and directories are ever produced.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from assist.data.base import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def archive_kind(path: Path) -> str | None:
    """"zip", "tar" or None, judged by content (not by the file name)."""
    if not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except OSError:
        pass
    return None


Parts = tuple[str, ...]  # a member's relative path, split on "/" (cheaper than PurePosixPath)


def safe_member_path(name: str, archive: Path) -> Parts:
    """The member's relative path parts, or DataError if it could escape the extraction folder."""
    posix = name.replace("\\", "/")
    if not posix:
        raise DataError(f"{archive}: unsafe archive member with an empty name")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise DataError(f"{archive}: unsafe archive member {name!r} (absolute path)")
    parts = tuple(part for part in posix.split("/") if part not in ("", "."))
    if ".." in parts:
        raise DataError(f"{archive}: unsafe archive member {name!r} ('..' in path)")
    return parts


def _tar_member_kind(member: tarfile.TarInfo) -> str | None:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    return None


def _zip_member_kind(info: zipfile.ZipInfo) -> str | None:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if mode and not stat.S_ISREG(mode):  # symlinks, devices, FIFOs carry their type here
        return None
    return "file"


def _describe_tar(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if member.isdev():
        return "device or FIFO"
    return "not a regular file"


def iter_archive(path: Path) -> Iterator[tuple[Parts, bytes | None]]:
    """Yield ``(path parts, bytes)`` for files and ``(path parts, None)`` for directories.

    tar archives are read in one streaming pass (cheap for .tar.gz); a member is checked
    before its bytes are read, so an unsafe member stops the read with a DataError.
    """
    kind = archive_kind(path)
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:  # check all names before reading any data
                safe_member_path(info.filename, path)
                if _zip_member_kind(info) is None:
                    raise DataError(f"{path}: unsafe archive member {info.filename!r} (link or special file)")
            for info in infos:
                rel = safe_member_path(info.filename, path)
                yield rel, None if info.is_dir() else archive.read(info)
    elif kind == "tar":
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    rel = safe_member_path(member.name, path)
                    member_kind = _tar_member_kind(member)
                    if member_kind is None:
                        raise DataError(f"{path}: unsafe archive member {member.name!r} ({_describe_tar(member)})")
                    if member_kind == "dir":
                        yield rel, None
                    else:
                        handle = archive.extractfile(member)
                        yield rel, handle.read() if handle is not None else b""
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{path}: cannot read tar archive: {exc}") from exc
    else:
        raise DataError(f"{path}: not a zip or tar archive")


def safe_extract(path: Path, dest: Path) -> list[Path]:
    """Extract the archive's regular files under ``dest`` and return their paths.

    Files are written into a temporary folder inside ``dest`` first and each moved into place
    with an atomic rename, so an interrupted extraction leaves no partial file behind.
    """
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    written: list[tuple[Path, Path]] = []
    try:
        for rel, data in iter_archive(path):
            if data is None or not rel:
                continue
            target = staging.joinpath(*rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append((target, dest.joinpath(*rel)))
        for staged, final in written:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [final for _, final in written]
