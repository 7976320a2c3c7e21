"""Reading and extracting zip/tar archives without trusting their member names or sizes.

Every member is checked before anything is read or written: absolute paths, ``..``
components, symbolic and hard links, devices and FIFOs are rejected with a DataError naming
the member. Only regular files and directories are ever produced. Archive bombs are refused
by :class:`ArchiveLimits` (member count, total size, expansion ratio), checked on the
declared sizes before reading and on the bytes actually read while reading.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
import shutil
import stat
import tarfile
import tempfile
import zipfile
from zlib import error as zlib_error
from pathlib import Path
from typing import Iterator

from assist.data.base import DataError
from assist.files import storage_errors

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _env_number(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip().upper().removesuffix("B").removesuffix("I")
    if not raw:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)", raw)
    if not match:
        raise DataError(f"{name}={os.environ[name]!r} is not a number (a size may end in K, M, G or T)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class ArchiveLimits:
    """How far an archive may expand. The defaults fit ImageNet-scale folders (1.3 M files,
    ~150 GB, photos compress hardly at all) and stop bombs early: past ``ratio_floor`` bytes
    the content may be at most ``max_ratio`` times the archive's size on disk. Each is set
    by an environment variable (``ASSIST_ARCHIVE_MAX_MEMBERS``, ``ASSIST_ARCHIVE_MAX_BYTES``,
    ``ASSIST_ARCHIVE_MAX_RATIO``); see docs/reliability.md."""

    max_members: int = 10_000_000
    max_bytes: int = 2**40
    max_ratio: int = 100
    ratio_floor: int = 64 * 2**20

    @classmethod
    def from_env(cls) -> "ArchiveLimits":
        return cls(max_members=_env_number("ASSIST_ARCHIVE_MAX_MEMBERS", cls.max_members),
                   max_bytes=_env_number("ASSIST_ARCHIVE_MAX_BYTES", cls.max_bytes),
                   max_ratio=_env_number("ASSIST_ARCHIVE_MAX_RATIO", cls.max_ratio))


class _Budget:
    """Counts members and bytes of one archive against its limits."""

    def __init__(self, path: Path, limits: ArchiveLimits) -> None:
        self.path, self.limits = path, limits
        self.size_on_disk = max(path.stat().st_size, 1)
        self.members = 0
        self.bytes = 0

    def add(self, members: int = 0, size: int = 0) -> None:
        self.members += members
        self.bytes += size
        limits = self.limits
        if self.members > limits.max_members:
            raise DataError(f"{self.path}: more than {limits.max_members:,} members "
                            "(limit ASSIST_ARCHIVE_MAX_MEMBERS); refusing a possible archive bomb")
        if self.bytes > limits.max_bytes:
            raise DataError(f"{self.path}: expands to more than {limits.max_bytes:,} bytes "
                            "(limit ASSIST_ARCHIVE_MAX_BYTES); refusing a possible archive bomb")
        if self.bytes > limits.ratio_floor and self.bytes > limits.max_ratio * self.size_on_disk:
            raise DataError(f"{self.path}: expands more than {limits.max_ratio}x its size of "
                            f"{self.size_on_disk:,} bytes (limit ASSIST_ARCHIVE_MAX_RATIO); "
                            "refusing a possible archive bomb")


def _read_counted(handle, budget: _Budget, declared: int) -> bytes:
    """Read a member in pieces, charging every piece to the budget before keeping it."""
    pieces, got = [], 0
    while True:
        piece = handle.read(1 << 20)
        if not piece:
            return b"".join(pieces)
        got += len(piece)
        budget.add(size=max(0, got - declared) if got > declared else 0)
        pieces.append(piece)


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
    """By the ZIP spec: the high 16 bits of the external attributes hold a Unix mode when the
    member was made on Unix (``create_system`` 3). A mode whose file-type bits are set and
    say anything but a regular file or directory (a link, a device, a FIFO) is refused; a mode
    without file-type bits (Python's ``writestr`` writes bare permissions) is a plain file."""
    if info.is_dir():
        return "dir"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
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


def iter_archive(path: Path, limits: ArchiveLimits | None = None) -> Iterator[tuple[Parts, bytes | None]]:
    """Yield ``(path parts, bytes)`` for files and ``(path parts, None)`` for directories.

    tar archives are read in one streaming pass (cheap for .tar.gz); a member is checked
    before its bytes are read, so an unsafe member stops the read with a DataError, and so
    does an archive that expands beyond ``limits`` (default: ``ArchiveLimits.from_env()``).
    """
    kind = archive_kind(path)
    budget = _Budget(path, limits or ArchiveLimits.from_env())
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
                budget.add(members=len(infos), size=sum(info.file_size for info in infos))  # as declared
                for info in infos:  # check all names before reading any data
                    safe_member_path(info.filename, path)
                    if _zip_member_kind(info) is None:
                        raise DataError(f"{path}: unsafe archive member {info.filename!r} (link or special file)")
                for info in infos:
                    rel = safe_member_path(info.filename, path)
                    if info.is_dir():
                        yield rel, None
                        continue
                    with archive.open(info) as handle:  # charged beyond the declared size too
                        data = _read_counted(handle, budget, info.file_size)
                    yield rel, data
        except (zipfile.BadZipFile, zlib_error, EOFError, NotImplementedError) as exc:
            raise DataError(f"{path}: cannot read zip archive: {exc}") from exc
    elif kind == "tar":
        try:
            with tarfile.open(path, "r:*") as archive:
                for member in archive:
                    rel = safe_member_path(member.name, path)
                    member_kind = _tar_member_kind(member)
                    if member_kind is None:
                        raise DataError(f"{path}: unsafe archive member {member.name!r} ({_describe_tar(member)})")
                    budget.add(members=1, size=member.size if member_kind == "file" else 0)
                    if member_kind == "dir":
                        yield rel, None
                    else:
                        handle = archive.extractfile(member)
                        yield rel, _read_counted(handle, budget, member.size) if handle is not None else b""
        except (tarfile.TarError, EOFError, OSError, zlib_error) as exc:
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
            with storage_errors(dest.joinpath(*rel)):
                target.write_bytes(data)
            written.append((target, dest.joinpath(*rel)))
        for staged, final in written:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [final for _, final in written]
