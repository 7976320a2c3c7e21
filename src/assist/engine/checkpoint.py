"""Atomic, checksummed checkpoints at epoch boundaries, and resuming from the newest good one.

A checkpoint ``epoch-NNNNN.pt`` is serialised in memory, its SHA-256 written to the sidecar
``epoch-NNNNN.pt.sha256`` and then the file itself, each through ``assist.files`` (a temporary
file, fsync, rename), so a kill at any moment leaves whole files only. On resume each
checkpoint, newest first, must match its digest, have the trainer's structure and load into
the trainer; one that fails is skipped with a warning naming it and why, and the next older
one is tried. Checkpoints from before the sidecars existed load without a digest check.
See docs/reliability.md."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch

from assist.events import Callback
from assist.files import atomic_write
from assist.tracking.run_dir import RunDirError

KEEP = 2
DIGEST_SUFFIX = ".sha256"
# Top-level entries of Trainer.state_dict() and the type each must have.
STRUCTURE: dict[str, type | tuple[type, ...]] = {
    "model": Mapping, "optimizer": Mapping, "generators": Mapping, "strategy": Mapping,
    "accumulator": Mapping, "state": Mapping, "scheduler": (Mapping, type(None))}


def checkpoint_paths(directory: Path) -> list[Path]:
    """Checkpoints, newest first."""
    paths = [p for p in directory.glob("epoch-*.pt") if p.stem.split("-")[1].isdigit()]
    return sorted(paths, key=lambda p: int(p.stem.split("-")[1]), reverse=True)


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"epoch-{epoch:05d}.pt"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    target.unlink(missing_ok=True)  # an epoch trained again after a fallback: never pair old data and new digest
    atomic_write(digest_path(target), f"{hashlib.sha256(data).hexdigest()}  {target.name}\n")
    atomic_write(target, data)
    paths = checkpoint_paths(directory)
    for old in paths[KEEP:]:
        old.unlink(missing_ok=True)
    kept = {digest_path(p).name for p in paths[:KEEP]}
    for sidecar in directory.glob(f"epoch-*.pt{DIGEST_SUFFIX}"):  # old ones, and any left by a kill
        if sidecar.name not in kept:
            sidecar.unlink(missing_ok=True)
    return target


def structure_problem(checkpoint: Any) -> Optional[str]:
    """Why ``checkpoint`` is not a trainer checkpoint, or None if its shape is right."""
    if not isinstance(checkpoint, Mapping):
        return f"holds a {type(checkpoint).__name__}, not a trainer checkpoint"
    missing = [key for key in STRUCTURE if key not in checkpoint]
    if missing:
        return f"lacks {', '.join(missing)}"
    wrong = [key for key, kind in STRUCTURE.items() if not isinstance(checkpoint[key], kind)]
    if wrong:
        return f"has the wrong type for {', '.join(wrong)}"
    state = checkpoint["state"]
    if not isinstance(state.get("epoch"), int) or not isinstance(state.get("history"), list):
        return "has no epoch count or history"
    return None


def read_checkpoint(path: Path) -> Any:
    """The checkpoint at ``path`` after its digest check; ValueError says what is wrong."""
    data = path.read_bytes()
    sidecar = digest_path(path)
    if sidecar.is_file():
        want = (sidecar.read_text().split() or [""])[0]
        if hashlib.sha256(data).hexdigest() != want:
            raise ValueError("checksum mismatch (the file changed after it was written)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable payload is reported, never executed
        raise ValueError(f"unreadable: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def usable_checkpoints(directory: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Checkpoints that pass the digest and structure checks, newest first; each skipped one
    gets a warning naming it."""
    paths = checkpoint_paths(directory)
    for position, path in enumerate(paths):
        try:
            checkpoint = read_checkpoint(path)
            problem = structure_problem(checkpoint)
        except (OSError, ValueError) as error:
            checkpoint, problem = None, str(error)
        if problem is None:
            yield path, checkpoint
            continue
        older = "trying the previous one" if position + 1 < len(paths) else "no older checkpoint is left"
        warnings.warn(f"checkpoint {path} is not usable ({problem}); {older}", stacklevel=2)


def load_latest_checkpoint(directory: Path) -> Optional[dict[str, Any]]:
    """The newest checkpoint that passes the checks, or None."""
    return next((checkpoint for _, checkpoint in usable_checkpoints(directory)), None)


def resume_trainer(trainer: Any, directory: Path) -> int:
    """Load the newest checkpoint that loads into ``trainer``; its epoch, or 0 when the run
    never wrote one. RunDirError when checkpoints exist but none of them is usable: starting
    over silently would throw the finished epochs away."""
    if not checkpoint_paths(directory):
        return 0
    from assist.strategies.resolve import identity_dump

    wanted = identity_dump(trainer.run.flat(mode="json"))
    for path, checkpoint in usable_checkpoints(directory):
        stored = checkpoint.get("config")
        if isinstance(stored, dict):   # a checkpoint copied in from another run is not this run's state
            theirs = identity_dump(stored)
            changed = sorted(k for k in set(wanted) | set(theirs) if wanted.get(k) != theirs.get(k))
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
