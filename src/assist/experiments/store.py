"""The sweep directory: one run directory per run, plus bookkeeping the report ignores.

    <out>/<name>-<run_id>/     a run directory (config.yaml, metrics.jsonl, summary.json, ...)
    <out>/logs/<name>.log      stdout/stderr of the process that ran it (appended on resume)
    <out>/sweep.json           manifest: every run the sweeps into <out> asked for
    <out>/.locks/<run_id>.lock one lock per run
    <out>/.submitit/           Slurm / submitit job files

Runs are found by their ``run_id`` suffix, so a run keeps its directory even when a changed
spec would name it differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from assist.tracking.locks import RunLock, lock_holder
from assist.tracking import RunDirError, RunStore
from assist.files import atomic_write, make_dirs

MANIFEST = "sweep.json"


@dataclass
class RunState:
    run_id: str
    name: str
    path: Optional[Path]
    state: str                        # done | collapsed | running | failed | incomplete | missing | broken
    reason: Optional[str] = None
    epochs_done: int = 0
    epochs: Optional[int] = None
    holder: Optional[dict[str, Any]] = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "collapsed", "failed")


class SweepDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def submitit(self) -> Path:
        return self.root / ".submitit"

    def lock(self, run_id: str) -> RunLock:
        return RunLock(self.root / ".locks" / f"{run_id}.lock")

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    # -- finding runs
    def index(self) -> dict[str, Path]:
        """run_id -> run directory, for every directory named ``*-<run_id>``."""
        found: dict[str, Path] = {}
        if self.root.is_dir():
            for path in sorted(self.root.iterdir()):
                if path.is_dir() and not path.name.startswith(".") and "-" in path.name:
                    run_id = path.name.rsplit("-", 1)[1]
                    if run_id not in found or (path / RunStore.CONFIG).is_file():
                        found[run_id] = path
        return found

    def run_dir(self, run_id: str, name: str, index: Optional[dict[str, Path]] = None) -> Path:
        existing = (index if index is not None else self.index()).get(run_id)
        return existing if existing is not None else self.root / name

    def state(self, run_id: str, name: str, index: Optional[dict[str, Path]] = None) -> RunState:
        """The run's state; a run directory whose files cannot be read is ``broken``, with the
        file and the problem as its reason, and never stops the caller from seeing the others."""
        path = (index if index is not None else self.index()).get(run_id)
        try:
            return self._state(run_id, name, path)
        except Exception as error:  # noqa: BLE001 - one bad run directory is reported, not fatal
            return RunState(run_id, name if path is None else path.name, path, "broken",
                            f"{error}" if isinstance(error, RunDirError) else f"{path}: {type(error).__name__}: {error}")

    def _state(self, run_id: str, name: str, path: Optional[Path]) -> RunState:
        holder = lock_holder(self.root / ".locks" / f"{run_id}.lock")
        if holder is None and path is not None:  # a plain `assist train --out` into this directory
            holder = lock_holder(path / RunStore.LOCK)
        if path is None or not (path / RunStore.CONFIG).is_file():
            state = "running" if holder is not None else "missing"
            return RunState(run_id, name if path is None else path.name, path, state, holder=holder)
        store = RunStore(path)
        epochs = store.read_config().get("epochs")
        summary = store.read_summary()
        if summary is not None:
            status = summary.get("status")
            done = status == "completed"
            reason = summary.get("reason")
            if not done:
                reason = f"{status}: {reason}" if status != "failed" else reason
            from assist.metrics.collapse import is_collapsed, num_classes_of

            rows = store.read_metrics() if done else []
            if done and is_collapsed([r.get("test_accuracy") for r in rows], num_classes_of(store.read_config(), rows)):
                return RunState(run_id, path.name, path, "collapsed", "test accuracy at chance for its last epochs",
                                int(summary.get("epochs_completed") or 0), epochs)
            return RunState(run_id, path.name, path, "done" if done else "failed", reason,
                            int(summary.get("epochs_completed") or 0), epochs)
        epochs_done = len(store.read_metrics())
        return RunState(run_id, path.name, path, "running" if holder is not None else "incomplete",
                        None, epochs_done, epochs, holder)

    # -- manifest
    def read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.is_file():
            return {"runs": {}, "sweeps": []}
        try:
            manifest = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise RunDirError(f"{path}: unreadable sweep manifest ({error}); "
                              "move it aside and rerun the sweep to rebuild it") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("runs"), dict):
            raise RunDirError(f"{path}: not a sweep manifest; move it aside and rerun the sweep to rebuild it")
        manifest.setdefault("sweeps", [])
        return manifest

    def record(self, sweep_name: Optional[str], entries: dict[str, dict[str, Any]]) -> None:
        """Merge ``entries`` into the manifest (under a lock: several sweeps may share a directory)."""
        make_dirs(self.root)
        lock = RunLock(self.root / ".locks" / "manifest.lock")
        lock.acquire(wait_s=30.0)
        try:
            manifest = self.read_manifest()
            manifest["runs"].update(entries)
            if sweep_name and sweep_name not in manifest["sweeps"]:
                manifest["sweeps"].append(sweep_name)
            atomic_write(self.root / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        finally:
            lock.release()

    def states(self) -> list[RunState]:
        """Every run of the manifest, and every other run directory found here."""
        index = self.index()
        names = {run_id: entry["name"] for run_id, entry in self.read_manifest()["runs"].items()}
        for run_id, path in index.items():
            if (path / RunStore.CONFIG).is_file():
                names.setdefault(run_id, path.name)
        return [self.state(run_id, name, index) for run_id, name in names.items()]


def states_under(root: str | Path) -> list[tuple[Path, list[RunState]]]:
    """Every run under ``root``, grouped by the folder that holds it: a sweep directory's runs
    (its manifest's missing ones included) and the runs of any other folder (``assist train``
    and ``assist compare`` output). Run directories are found as ``assist report`` finds them,
    so both commands see the same runs; a directory with metrics but no config is ``broken``."""
    from assist.report.loading import find_run_dirs  # the report's discovery (imports pandas)

    root = Path(root)
    dirs, orphans = find_run_dirs(root)
    found: dict[Path, list[Path]] = {}
    if (root / MANIFEST).is_file():
        found[root] = []
    for path in dirs:  # a run directory given as root stands alone
        found.setdefault(path.parent if path != root else path, []).append(path)
    grouped = []
    for folder, paths in found.items():
        if folder in paths:  # root is itself a run directory
            sweep = SweepDir(folder.parent)
            grouped.append((folder, [sweep.state(folder.name, folder.name, {folder.name: folder})]))
            continue
        sweep = SweepDir(folder)
        states = sweep.states() if (folder / MANIFEST).is_file() else []
        seen = {s.path for s in states}
        # runs of a plain folder, and any the sweep's index passes over: each by its own directory
        states += [sweep.state(path.name, path.name, {path.name: path}) for path in paths if path not in seen]
        grouped.append((folder, states))
    for place, reason in orphans:
        path = Path(place)
        if not any(state.path == path for _, states in grouped for state in states):
            grouped.append((path.parent, [RunState(path.name, path.name, path, "broken", reason)]))
    merged: dict[Path, list[RunState]] = {}
    for folder, states in grouped:
        merged.setdefault(folder, []).extend(states)
    return sorted(((folder, states) for folder, states in merged.items() if states), key=lambda item: str(item[0]))


def count_states(states: list[RunState]) -> dict[str, int]:
    counts = {key: 0 for key in ("done", "collapsed", "running", "failed", "incomplete", "missing")}
    for state in states:  # "broken" (unreadable run directories) is counted only when there are some
        counts[state.state] = counts.get(state.state, 0) + 1
    return counts


def format_states(states: list[RunState], *, show_done: bool = True) -> str:
    lines = []
    width = max((len(s.name) for s in states), default=10)
    for s in states:
        if s.state == "done" and not show_done:
            continue
        progress = f"{s.epochs_done}/{s.epochs}" if s.epochs else ""
        detail = s.reason or ""
        if s.state == "running" and s.holder:
            detail = f"pid {s.holder.get('pid')} on {s.holder.get('host')}"
        lines.append(f"{s.state:<10} {progress:>7}  {s.name:<{width}}  {detail}".rstrip())
    counts = count_states(states)
    lines.append(f"{len(states)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n".join(lines)


def format_tree(grouped: list[tuple[Path, list[RunState]]], root: Path, *, show_done: bool = True) -> str:
    """The runs of every folder under ``root`` (``states_under``), one block per folder, then
    the total; the runs of ``root`` alone read as ``format_states``."""
    if len(grouped) == 1 and grouped[0][0] == root:
        return format_states(grouped[0][1], show_done=show_done)
    blocks = []
    for folder, states in grouped:
        kind = "sweep" if (folder / MANIFEST).is_file() else "runs"
        blocks.append(f"== {folder} ({kind}) ==\n" + format_states(states, show_done=show_done))
    everything = [state for _, states in grouped for state in states]
    counts = count_states(everything)
    blocks.append(f"all: {len(everything)} runs in {len(grouped)} folders: "
                  + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return "\n\n".join(blocks)
