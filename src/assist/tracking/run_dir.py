"""One directory per run: ``assist-run.json`` (the marker: ASSIST wrote this directory),
``config.yaml``, ``metrics.jsonl`` (one line per epoch, flushed as it goes), ``summary.json``
when the run ends, ``train.log``, ``checkpoints/``. A lock file (``.assist.lock``) keeps two
processes from training into one directory at once. See docs/reliability.md."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from assist.files import StorageError, append_line, atomic_write, make_dirs, remove_stale_parts
from assist.tracking.locks import RunLock, lock_holder

FORMAT_VERSION = 1
LEGACY_KEYS = {"dataset", "model", "epochs", "rng_seed"}  # what every run's config.yaml has held


class RunDirError(ValueError):
    """The run directory cannot be used as asked; the message says why and what to do."""


class RunFinished(RunDirError):
    """The run directory already holds this very run, finished: nothing to train. The CLI
    says so and exits 0 when it completed (a rerun or a requeued job is no error)."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class RunStore:
    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    LOG = "train.log"
    MARKER = "assist-run.json"
    LOCK = ".assist.lock"
    # Everything ASSIST writes into a run directory: --restart clears these and nothing else.
    WRITTEN = (MARKER, CONFIG, METRICS, SUMMARY, LOG, "checkpoints", "tensorboard", "wandb")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- state of a directory
    @property
    def exists(self) -> bool:
        return (self.path / self.CONFIG).is_file()

    @property
    def finished(self) -> bool:
        return (self.path / self.SUMMARY).is_file()

    @property
    def marked(self) -> bool:
        try:
            marker = json.loads((self.path / self.MARKER).read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return False
        return isinstance(marker, dict) and isinstance(marker.get("format"), int)

    def is_run(self) -> bool:
        """True if ASSIST wrote this directory: it carries the marker, or (runs written before
        the marker existed) its config.yaml is a run's config and metrics.jsonl sits beside it."""
        if self.marked:
            return True
        if not (self.exists and (self.path / self.METRICS).is_file()):
            return False
        try:
            config = self.read_config()
        except Exception:  # noqa: BLE001 - an unreadable config is not a run ASSIST recognises
            return False
        return isinstance(config, dict) and LEGACY_KEYS <= set(config)

    def contents(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return [p for p in self.path.iterdir() if p.name != self.LOCK]

    def read_config(self) -> dict[str, Any]:
        from assist.config import load_yaml

        path = self.path / self.CONFIG
        try:
            config = load_yaml(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise RunDirError(f"{path}: unreadable config ({first})") from None
        if not isinstance(config, dict):
            raise RunDirError(f"{self.path / self.CONFIG}: not a mapping of config keys")
        return config

    def read_summary(self) -> Optional[dict[str, Any]]:
        if not self.finished:
            return None
        path = self.path / self.SUMMARY
        try:
            summary = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise RunDirError(f"{path}: unreadable summary ({error})") from None
        if not isinstance(summary, dict):
            raise RunDirError(f"{path}: not a JSON object")
        return summary

    def read_metrics(self, corrupt: Optional[list[int]] = None) -> list[dict[str, Any]]:
        """The epoch rows; the numbers of lines that are not a JSON object (a crash can leave a
        truncated last line) are appended to ``corrupt`` when given."""
        rows = []
        path = self.path / self.METRICS
        if path.is_file():
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if isinstance(row, dict):
                    rows.append(row)
                elif corrupt is not None and line.strip():
                    corrupt.append(number)
        return rows

    def rebuild_metrics(self) -> Optional[int]:
        """Rewrite ``metrics.jsonl`` from the newest usable checkpoint's history when that holds
        more epochs than the file (lines lost or corrupt); the epochs now in the file, or None
        when there was nothing better to rebuild from."""
        from assist.tracking.checkpoints import load_latest_checkpoint

        checkpoint = load_latest_checkpoint(self.path / "checkpoints")
        history = checkpoint["state"]["history"] if checkpoint is not None else []
        if len(history) <= len(self.read_metrics()):
            return None
        self.rewrite_metrics(history)
        self.log(f"metrics.jsonl rebuilt from the checkpoint of epoch {checkpoint['state']['epoch']}")
        return len(history)

    # -- locking
    def lock(self) -> RunLock:
        """Take the directory's lock now or fail with a line naming the holder."""
        make_dirs(self.path)
        lock = RunLock(self.path / self.LOCK)
        if not lock.acquire(wait_s=0.5):  # rides out `assist status` probing the lock for an instant
            holder = lock_holder(self.path / self.LOCK) or {}
            who = f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}"
            if holder.get("since"):
                who += time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(holder["since"]))
            raise RunDirError(f"run directory {str(self.path)!r} is in use by {who}; "
                              "wait for it to finish or choose another --out")
        remove_stale_parts(self.path)  # a killed writer's leftovers; nobody else writes here now
        remove_stale_parts(self.path / "checkpoints")
        return lock

    # -- writing
    def check_types(self) -> None:
        """Refuse a run directory whose entries have the wrong type (``checkpoints`` a file,
        ``metrics.jsonl`` or the lock a directory, ...), naming it, before anything is touched."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"output directory {str(self.path)!r} is a file; choose another --out")
        for name in (self.MARKER, self.CONFIG, self.METRICS, self.SUMMARY, self.LOG, self.LOCK):
            target = self.path / name
            if target.exists() and not target.is_file():
                raise RunDirError(f"run directory {str(self.path)!r}: {name} is not a regular file; nothing was "
                                  "changed (move it away, or choose another --out)")
        checkpoints = self.path / "checkpoints"
        if checkpoints.exists() and not checkpoints.is_dir():
            raise RunDirError(f"run directory {str(self.path)!r}: checkpoints is not a directory; nothing was "
                              "changed (move it away, or choose another --out)")

    def check_usable(self, *, restart: bool) -> None:
        """Refuse, before anything is written, a directory this run may not use."""
        self.check_types()
        if not self.contents():
            return
        if not self.is_run():
            raise RunDirError(f"output directory {str(self.path)!r} holds files that are not an ASSIST run "
                              f"(no {self.MARKER}); choose another --out" + ("" if not restart else
                              "; --restart only clears directories ASSIST wrote"))
        if not restart and not self.exists and not self.marked:
            raise RunDirError(f"output directory {str(self.path)!r} holds a run without its {self.CONFIG}; "
                              "pass --restart to start it over, or choose another --out")

    def recover_config(self) -> Optional[str]:
        """A directory ASSIST marked whose ``config.yaml`` is gone. Holding nothing but the
        marker (killed while being created), it is left for :meth:`create` to start afresh;
        otherwise the config is rebuilt from the newest usable checkpoint (each carries it)
        and that checkpoint's name returned. Nothing is deleted; with no checkpoint to rebuild
        from, the directory is refused with one line."""
        if self.exists or not self.marked or {p.name for p in self.contents()} <= {self.MARKER}:
            return None
        from assist.tracking.checkpoints import usable_checkpoints

        for path, checkpoint in usable_checkpoints(self.path / "checkpoints"):
            config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
            if isinstance(config, dict):
                atomic_write(self.path / self.CONFIG, yaml.safe_dump(config, sort_keys=False))
                self.log(f"config.yaml was missing: rebuilt from {path.name}")
                return path.name
        kept = ", ".join(sorted(p.name for p in self.contents() if p.name != self.MARKER))
        raise RunDirError(f"run directory {str(self.path)!r} lost its {self.CONFIG} and no checkpoint carries "
                          f"one; nothing was changed (it holds {kept}): restore {self.CONFIG}, or pass "
                          "--restart to start the run over")

    def clear(self) -> None:
        """Remove what ASSIST wrote here (and only that)."""
        for name in self.WRITTEN:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def mark(self) -> None:
        from assist import __version__

        atomic_write(self.path / self.MARKER, json.dumps({"format": FORMAT_VERSION, "assist": __version__,
                                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")

    def create(self, config: dict[str, Any], *, restart: bool = False) -> None:
        """Start a fresh run directory. An existing run is never overwritten silently, and
        --restart clears only the files ASSIST wrote."""
        if {p.name for p in self.contents()} == {self.MARKER}:
            self.clear()  # killed (or out of space) before its config was written: nothing to keep
        if self.contents():
            if not restart:
                self.check_usable(restart=False)
                state = "a finished run" if self.finished else "an unfinished run"
                raise RunDirError(f"output directory {str(self.path)!r} already holds {state}; "
                                  "choose another --out or pass --restart to start it over")
            self.check_usable(restart=True)
            self.clear()
        make_dirs(self.path)
        self.mark()
        atomic_write(self.path / self.CONFIG, yaml.safe_dump(config, sort_keys=False))
        atomic_write(self.path / self.METRICS, "")

    def append_metrics(self, row: dict[str, Any]) -> None:
        append_line(self.path / self.METRICS, json.dumps({k: _jsonable(v) for k, v in row.items()}))

    def rewrite_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``rows`` (on resume: drop epochs after the checkpoint)."""
        text = "".join(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n" for row in rows)
        atomic_write(self.path / self.METRICS, text)

    def check_resumable(self, config: dict[str, Any]) -> None:
        """Refuse to resume a run whose config differs; a finished run of the same config is
        :class:`RunFinished` (nothing to do), of another config an error."""
        from assist.strategies.resolve import config_changes, with_added_defaults

        stored, config = with_added_defaults(self.read_config()), with_added_defaults(config)
        changed = config_changes(stored, config)
        if self.finished:
            summary = self.read_summary() or {}
            status = summary.get("status", "finished")
            message = (f"run directory {str(self.path)!r} holds a {status} run"
                       + (" of another config" if changed else ""))
            if not changed:
                raise RunFinished(f"{message}; nothing to do", summary)
            raise RunDirError(f"{message}; choose another --out or pass --restart to start it over")
        if changed:
            shown = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in changed[:5])
            raise RunDirError(f"run directory {str(self.path)!r} holds an unfinished run with a different "
                              f"config ({shown}); pass --restart to start over, or choose another --out")

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.path / self.SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            append_line(self.path / self.LOG, f"{stamp} {message}")
        except StorageError:  # the log is a courtesy; a full disk surfaces on the next real write
            pass
