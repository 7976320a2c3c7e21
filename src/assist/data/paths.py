"""Where data sets and decoded caches live on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DATA_DIR_ENV = "ASSIST_DATA_DIR"


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


def cache_dir(data_dir: Path) -> Path | None:
    """A writable directory for decoded arrays: ``<data_dir>/cache``, else the user cache
    (the data directory may be read-only, e.g. a shared copy); None if neither is writable."""
    for candidate in (data_dir / "cache", user_cache_root() / "cache"):
        if _writable_dir(candidate):
            return candidate
    return None
