"""Where data sets and decoded caches live on disk."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

DATA_DIR_ENV = "ASSIST_DATA_DIR"
CACHE_DIR_ENV = "ASSIST_CACHE_DIR"


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/assist`` or ``~/.cache/assist``: the per-user ASSIST cache."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "assist"


def default_data_dir() -> Path:
    """The data directory used when none is given: ``$ASSIST_DATA_DIR``, else the user cache."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return user_cache_root() / "data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The argument if given, else :func:`default_data_dir`."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def cache_dir() -> Path | None:
    """The writable directory for caches (decoded image folders, RHO-LOSS's reference-model
    losses): ``$ASSIST_CACHE_DIR``, else ``<user cache>/cache``; None if it cannot be written.
    Never inside a data directory: data often sits on a read-only or shared file system, and
    entries are keyed by content, so one cache serves every copy of the data."""
    env = os.environ.get(CACHE_DIR_ENV)
    candidate = Path(env).expanduser() if env else user_cache_root() / "cache"
    return candidate if _writable_dir(candidate) else None


def write_cache(path: Path, content: Any) -> None:
    """Save ``content`` to ``path`` atomically (``assist.files``), so concurrent writers and
    readers never see half a file; a failure (a full disk included) is a warning, not an error:
    the cache is only a cache."""
    from assist.files import StorageError, atomic_open

    try:
        with atomic_open(path) as handle:
            torch.save(content, handle)
    except (OSError, StorageError, RuntimeError) as exc:
        warnings.warn(f"could not write cache {path}: {exc}", stacklevel=3)
