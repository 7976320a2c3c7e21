"""One directory per run: ``config.yaml``, ``metrics.jsonl`` (one line per epoch, flushed as
it goes), ``summary.json`` when the run ends, ``train.log``, ``checkpoints/``."""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import yaml


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message says why and what to do."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class RunStore:
    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    LOG = "train.log"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- state of a directory
    @property
    def exists(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    @property
    def finished(self) -> bool:
        return (self.path / self.SUMMARY).is_file()

    def read_config(self) -> dict[str, Any]:
        from assist.config import load_yaml

        return load_yaml((self.path / self.CONFIG).read_text()) or {}

    def read_summary(self) -> Optional[dict[str, Any]]:
        if not self.finished:
            return None
        return json.loads((self.path / self.SUMMARY).read_text())

    def read_metrics(self) -> list[dict[str, Any]]:
        rows = []
        path = self.path / self.METRICS
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a crash can leave a truncated last line
        return rows

    # -- writing
    def create(self, config: dict[str, Any], *, restart: bool = False) -> None:
        """Start a fresh run directory. An existing run is never overwritten silently."""
        if self.path.exists() and any(self.path.iterdir()):
            if not restart:
                state = "a finished run" if self.finished else "an unfinished run" if self.exists else "other files"
                raise RunDirError(f"output directory {str(self.path)!r} already holds {state}; "
                                  "choose another --out or pass --restart to start it over")
            if not self.exists and not (self.path / self.METRICS).exists():
                raise RunDirError(f"refusing to clear {str(self.path)!r}: it does not look like a run directory")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / self.CONFIG, yaml.safe_dump(config, sort_keys=False))
        (self.path / self.METRICS).touch()

    def append_metrics(self, row: dict[str, Any]) -> None:
        line = json.dumps({k: _jsonable(v) for k, v in row.items()})
        with open(self.path / self.METRICS, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``rows`` (on resume: drop epochs after the checkpoint)."""
        text = "".join(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n" for row in rows)
        atomic_write_text(self.path / self.METRICS, text)

    def check_resumable(self, config: dict[str, Any]) -> None:
        """Refuse to resume a finished run or one whose config differs."""
        if self.finished:
            status = (self.read_summary() or {}).get("status", "finished")
            raise RunDirError(f"run directory {str(self.path)!r} holds a {status} run; "
                              "choose another --out or pass --restart to start it over")
        from assist.config import with_added_defaults

        stored, config = with_added_defaults(self.read_config()), with_added_defaults(config)
        changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        if changed:
            shown = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in changed[:5])
            raise RunDirError(f"run directory {str(self.path)!r} holds an unfinished run with a different "
                              f"config ({shown}); pass --restart to start over, or choose another --out")

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.path / self.SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path / self.LOG, "a") as handle:
            handle.write(f"{stamp} {message}\n")
