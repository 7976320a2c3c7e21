"""One lock per run, so two sweep processes (or Slurm tasks) never train the same run at once.

The lock is ``fcntl.flock`` on ``<sweep dir>/.locks/<run_id>.lock``. The kernel drops it when
the holding process dies, however it dies (SIGKILL, node reboot, OOM), so a dead holder can
never leave a stale lock behind; the pid, host and start time written into the file are only
for display. ``flock`` works across hosts on NFSv4 and Lustre with flock enabled, where Linux
maps it onto byte-range locks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

from assist.files import make_dirs, storage_errors


class LockError(RuntimeError):
    """The lock file cannot be used at all (e.g. a file system without locking)."""


class RunLock:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock, retrying for up to ``wait_s`` seconds; False if another process holds it."""
        make_dirs(self.path.parent)
        with storage_errors(self.path):   # a read-only file system: one line (docs/reliability.md)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise LockError(f"cannot lock {self.path}: {error.strerror}; "
                                    "the results directory must be on a file system with file locking") from None
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        if not self.acquire():
            raise LockError(f"{self.path} is held by another process")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_holder(path: str | Path) -> Optional[dict[str, Any]]:
    """Who holds the lock (pid, host, since), or None when nobody does. Probes with a shared
    lock so it never blocks a worker that wants the exclusive one for more than an instant."""
    path = Path(path)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except (ValueError, UnicodeDecodeError):
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
