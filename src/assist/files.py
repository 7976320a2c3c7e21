"""Every file ASSIST writes goes through here: whole or not at all, and a full disk is one line.

``atomic_open`` writes into a temporary file of its own beside the target (a unique name, so
concurrent writers never share one), fsyncs it, renames it over the target and fsyncs the
directory. A kill at any instant leaves the old file or the new one, never half of either; any
failure removes the temporary file. Storage failures (no space, quota, read-only file system,
file too large) become a :class:`StorageError` whose message names the file, so the command
line prints one line and the last good state stays on disk. See docs/reliability.md.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Iterator, Union

PART_SUFFIX = ".part"
# errors only writing can meet: no space or inodes, quota, read-only file system, file too large
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# and, met while writing or creating (storage_errors wraps nothing else), a refused permission
WRITE_ERRNOS = STORAGE_ERRNOS | {errno.EACCES, errno.EPERM}
PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide runs from a group


class StorageError(RuntimeError):
    """A file could not be written for a reason of the storage, not of the input."""


def storage_error(error: OSError, path: PathLike) -> StorageError:
    reason = "no space left on device" if error.errno in (errno.ENOSPC, errno.EDQUOT) else \
        (error.strerror or str(error)).lower()
    if error.errno == errno.ENOSPC and _no_inodes(Path(path)):
        reason = "no inodes left on device"
    return StorageError(f"{reason} writing {path}")


def _no_inodes(path: Path) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has no free
    inodes: ENOSPC then means that, not a lack of bytes."""
    for place in (path, *path.parents):
        try:
            stats = os.statvfs(place)
        except OSError:
            continue
        return stats.f_files > 0 and stats.f_favail == 0
    return False


def is_storage_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in STORAGE_ERRNOS


@contextmanager
def storage_errors(path: PathLike) -> Iterator[None]:
    """Failures of a write or a creation inside the block (no space or inodes, quota,
    read-only, too large, permission refused) become a StorageError naming ``path``; every
    other error passes unchanged. Wrap only what writes or creates."""
    try:
        yield
    except OSError as error:
        if error.errno in WRITE_ERRNOS:
            raise storage_error(error, path) from None
        raise


def make_dirs(path: PathLike) -> Path:
    """``mkdir -p path`` for output (run directories, checkpoints/, sweep roots): a
    read-only file system or no inodes left is a StorageError naming it."""
    path = Path(path)
    with storage_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename itself is atomic
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: str | None = None,
                durable: bool = True) -> Iterator[IO]:
    """A handle whose content replaces ``path`` when the block ends without an error.
    ``durable=False`` skips the fsyncs (files that are cheap to write again, such as a
    report's figures): still whole or absent, but possibly lost in a power cut."""
    path = Path(path)
    with storage_errors(path):
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PART_SUFFIX)
    temp = Path(temp_name)
    try:
        with storage_errors(path):
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, mode, encoding=encoding) as handle:
                yield handle
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(temp, path)
            if durable:
                _fsync_dir(path.parent)
    finally:
        temp.unlink(missing_ok=True)  # a no-op after the rename


def atomic_write(path: PathLike, content: Union[str, bytes], *, durable: bool = True) -> None:
    """Replace ``path`` with ``content`` (text is written as UTF-8)."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(data)


def append_line(path: PathLike, line: str) -> None:
    """Append one line durably. If the write fails the file is cut back to its old length, so
    a full disk never leaves half a line behind."""
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    with storage_errors(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            start = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                with suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def remove_stale_parts(directory: PathLike) -> int:
    """Delete temporary files a killed writer left in ``directory`` (call it only while holding
    the directory's lock, so no live writer owns them). Returns how many went."""
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    for stale in [*directory.glob(f".*{PART_SUFFIX}"), *directory.glob("*.tmp")]:
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
