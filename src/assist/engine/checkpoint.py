"""Atomic, checksummed checkpoints at epoch boundaries, and resuming from the newest good one.

A checkpoint ``epoch-NNNNN.pt`` is serialised in memory, its SHA-256 written to the sidecar
``epoch-NNNNN.pt.sha256`` and then the file itself, each through ``assist.files`` (a temporary
file, fsync, rename), so a kill at any moment leaves whole files only. On resume each
checkpoint, newest first, must match its digest, have the trainer's structure and load into
the trainer; one that fails is skipped with a warning naming it and why, and the next older
one is tried. Checkpoints from before the sidecars existed load without a digest check.
The files themselves (writing, listing, checked reading) are the run directory's:
``tracking/checkpoints.py``, re-exported here. See docs/reliability.md."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from assist.events import Callback
from assist.tracking.checkpoints import (KEEP, STRUCTURE, checkpoint_paths, digest_path, load_latest_checkpoint,
                                        read_checkpoint, save_checkpoint, structure_problem, usable_checkpoints)
from assist.tracking.run_dir import RunDirError

__all__ = ["KEEP", "STRUCTURE", "Checkpointer", "checkpoint_paths", "digest_path", "load_latest_checkpoint",
           "read_checkpoint", "resume_trainer", "save_checkpoint", "structure_problem", "usable_checkpoints"]

def resume_trainer(trainer: Any, directory: Path) -> int:
    """Load the newest checkpoint that loads into ``trainer``; its epoch, or 0 when the run
    never wrote one. RunDirError when checkpoints exist but none of them is usable: starting
    over silently would throw the finished epochs away."""
    if not checkpoint_paths(directory):
        return 0
    from assist.strategies.resolve import config_changes

    wanted = trainer.run.flat(mode="json")
    for path, checkpoint in usable_checkpoints(directory):
        stored = checkpoint.get("config")
        if isinstance(stored, dict):   # a checkpoint copied in from another run is not this run's state
            changed = config_changes(stored, wanted)
            if changed:
                warnings.warn(f"checkpoint {path} was written by another run (its config differs in "
                              f"{', '.join(changed[:5])}); trying the previous one", stacklevel=2)
                continue
        try:
            trainer.load_state_dict(checkpoint)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            warnings.warn(f"checkpoint {path} does not fit this run ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); trying the previous one", stacklevel=2)
            continue
        return int(trainer.state.epoch)
    raise RunDirError(f"no usable checkpoint in {directory} (each one is corrupt or does not fit this run); "
                      "pass --restart to start the run over")


class Checkpointer(Callback):
    """Saves the trainer's state every ``every`` epochs and after the last epoch."""

    def __init__(self, directory: str | Path, every: int = 1) -> None:
        self.directory = Path(directory)
        self.every = every

    def on_epoch_end(self, trainer: Any, *, epoch: int, **info: Any) -> None:
        if epoch % self.every == 0 or epoch == trainer.config.epochs or trainer.state.status != "running":
            save_checkpoint(self.directory, epoch, trainer.state_dict())
