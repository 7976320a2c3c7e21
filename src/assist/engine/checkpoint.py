"""Atomic checkpoints at epoch boundaries, and loading the newest readable one.

A checkpoint is written to a temporary file, fsynced and renamed, so a kill at any moment
leaves either the old or the new file whole. The previous checkpoint is kept as a fallback in
case the newest is corrupt (a truncated copy, a bad disk)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from assist.events import Callback

KEEP = 2


def checkpoint_paths(directory: Path) -> list[Path]:
    """Checkpoints, newest first."""
    paths = [p for p in directory.glob("epoch-*.pt") if p.stem.split("-")[1].isdigit()]
    return sorted(paths, key=lambda p: int(p.stem.split("-")[1]), reverse=True)


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"epoch-{epoch:05d}.pt"
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    for old in checkpoint_paths(directory)[KEEP:]:
        old.unlink(missing_ok=True)
    return target


def load_latest_checkpoint(directory: Path) -> Optional[dict[str, Any]]:
    """The newest checkpoint that loads; corrupt ones are skipped with a warning."""
    for path in checkpoint_paths(directory):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file falls back to the previous one
            warnings.warn(f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
                          "falling back to the previous one", stacklevel=2)
    return None


class Checkpointer(Callback):
    """Saves the trainer's state every ``every`` epochs and after the last epoch."""

    def __init__(self, directory: str | Path, every: int = 1) -> None:
        self.directory = Path(directory)
        self.every = every

    def on_epoch_end(self, trainer: Any, *, epoch: int, **info: Any) -> None:
        if epoch % self.every == 0 or epoch == trainer.config.epochs or trainer.state.status != "running":
            save_checkpoint(self.directory, epoch, trainer.state_dict())
