"""Verified, atomic downloads: a file is either complete and checked, or absent.

Bytes are streamed into a temporary file beside the destination while being hashed; the
temporary file is renamed into place only when the checksum matches, and removed otherwise.
Mirrors are tried in order; the final error lists every URL with the reason it failed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from assist.data.base import DataError
from assist.files import StorageError, atomic_open

log = logging.getLogger(__name__)

CHUNK = 1 << 20
USER_AGENT = "assist-data/0.1"  # some mirrors refuse Python's default agent


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    raise ValueError("download_file needs an md5 or sha256 checksum")


def verify_file(path: str | os.PathLike[str], *, md5: str | None = None, sha256: str | None = None) -> bool:
    """True if ``path`` exists and matches the given checksum."""
    algorithm, want = _expected(md5, sha256)
    return Path(path).is_file() and file_digest(path, algorithm) == want


def _fetch(url: str, dest: Path, algorithm: str, want: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; rename it into place if it checks."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with atomic_open(dest) as out, urllib.request.urlopen(request, timeout=timeout) as response:
        digest = hashlib.new(algorithm)
        received = 0
        declared = response.headers.get("Content-Length")
        for chunk in iter(lambda: response.read(CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
        if declared is not None and declared.isdigit() and int(declared) != received:
            raise DataError(f"truncated: got {received} of {declared} bytes")
        got = digest.hexdigest()
        if got != want:
            raise DataError(f"{algorithm} checksum mismatch: got {got}, expected {want}")


def download_file(
    urls: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    md5: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that serves it with the right checksum.

    Raises DataError naming every URL tried and why it failed; never leaves a partial file.
    """
    algorithm, want = _expected(md5, sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        log.info("downloading %s -> %s", url, dest)
        try:
            _fetch(url, dest, algorithm, want, timeout)
            return dest
        except DataError as exc:
            failures.append(f"{url}: {exc}")
        except urllib.error.HTTPError as exc:
            failures.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            failures.append(f"{url}: {exc.reason}")
        except StorageError:
            raise  # a full disk is not the mirror's fault: trying the next URL would not help
        except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
            failures.append(f"{url}: {exc}")
    raise DataError(f"could not download {dest.name}: " + "; ".join(failures or ["no URL given"]))
