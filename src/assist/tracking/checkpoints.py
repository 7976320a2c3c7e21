"""Checkpoint files of a run directory (``checkpoints/epoch-NNNNN.pt`` and their SHA-256
sidecars): written atomically, listed newest first, read back only after their digest and
structure checks. The trainer's side (what goes into one, resuming from one) is
``engine/checkpoint.py``; this half is the run directory's, so the run store can rebuild a lost
config or metrics file from a checkpoint (docs/reliability.md)."""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch

from assist.files import atomic_write, make_dirs

KEEP = 2
DIGEST_SUFFIX = ".sha256"
# Top-level entries of Trainer.state_dict() and the type each must have.
STRUCTURE: dict[str, type | tuple[type, ...]] = {
    "model": Mapping, "optimizer": Mapping, "generators": Mapping, "strategy": Mapping,
    "accumulator": Mapping, "state": Mapping, "scheduler": (Mapping, type(None))}


def checkpoint_paths(directory: Path) -> list[Path]:
    """Checkpoints, newest first."""
    paths = [p for p in directory.glob("epoch-*.pt") if p.stem.split("-")[1].isdigit()]
    return sorted(paths, key=checkpoint_epoch, reverse=True)


def checkpoint_epoch(path: Path) -> int:
    """The epoch a checkpoint file ``epoch-NNNNN.pt`` was written after."""
    return int(path.stem.split("-")[1])


def where_it_stands(run: Path) -> str:
    """How a stopped run can go on, from its newest checkpoint file: ``after epoch 3's
    checkpoint; rerun the same command to resume`` (the CLI's interrupted and dead-rank lines)."""
    newest = checkpoint_paths(Path(run) / "checkpoints")
    if newest:
        return f"after epoch {checkpoint_epoch(newest[0])}'s checkpoint; rerun the same command to resume"
    return "before the first checkpoint; rerun the same command to start again"


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    make_dirs(directory)
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
