"""Run one run of a sweep, in whatever process an executor gives it.

``run_task`` takes the run's lock, skips it when finished, resumes it when unfinished
(``api.train`` continues from the newest checkpoint), and writes the process's output to the
run's log. It never raises for a failed run: the outcome says what happened, so a diverged or
broken run does not stop the sweep. Interrupts (KeyboardInterrupt, SystemExit: Ctrl-C, or
submitit's requeue on preemption) pass through, leaving the run resumable.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from assist.files import make_dirs
from assist.tracking import RunDirError, RunStore

LOCK_WAIT_S = 1.0  # a worker of a just-killed sweep may take a moment to release its lock


@dataclass
class RunTask:
    run_id: str
    name: str
    root: str                       # the sweep directory
    config: dict[str, Any]          # the resolved config (JSON types)
    retry_failed: bool = False


@dataclass
class Outcome:
    run_id: str
    name: str
    status: str                     # completed | failed | stopped | skipped | busy | error | crashed
    reason: Optional[str] = None
    epochs_done: int = 0
    resumed_from: Optional[int] = None  # epoch of the checkpoint it resumed from
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


_DATA_CACHE: dict[tuple, Any] = {}


def _cached_data(config: Any) -> Any:
    """Workers run many runs: each data set is read from disk once per process, and the
    run's class / samples-per-class subset and data scenario (which depend on its seed) are
    made from it, as ``load_dataset`` itself does."""
    from assist.data import load_dataset
    from assist.data.datasets import shape_dataset
    from assist.data.scenarios import Scenario

    key = (config.dataset, config.data_dir, config.download)
    if key not in _DATA_CACHE:
        if len(_DATA_CACHE) >= 2:
            _DATA_CACHE.pop(next(iter(_DATA_CACHE)))
        _DATA_CACHE[key] = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download)
    return shape_dataset(_DATA_CACHE[key], num_classes=config.num_classes, samples_per_class=config.samples_per_class,
                         seed=config.rng_seed, scenario=Scenario.of(config))


@contextlib.contextmanager
def redirect_output(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors too, so C extensions and
    warnings land there) to ``path``, appending, and restore them afterwards."""
    make_dirs(path.parent)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        old_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            log.flush()
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_task(task: RunTask, *, redirect: bool = True, lock_wait_s: float = LOCK_WAIT_S,
             group: Any = None) -> Outcome:
    """Run (or resume, or skip) one run; see the module docstring. With the ``group`` of a
    data-parallel run this is rank 0, which tells the other ranks (``follow_task``) whether and
    how the run trains."""
    from assist.experiments.store import SweepDir

    sweep = SweepDir(task.root)
    lock = sweep.lock(task.run_id)
    if not lock.acquire(wait_s=lock_wait_s):
        _tell(group, None)
        return Outcome(task.run_id, task.name, "busy", "another process is running it")
    try:
        decided = _decide(task, sweep)
        _tell(group, None if isinstance(decided, Outcome) else decided)
        if isinstance(decided, Outcome):
            return decided
        path, restart = decided
        log = sweep.log_path(path.name)
        context = redirect_output(log) if redirect else contextlib.nullcontext()
        with context:
            return _train(task, path, restart, group)
    finally:
        lock.release()


def _decide(task: RunTask, sweep: Any) -> Outcome | tuple[Path, bool]:
    """Under the run's lock: what there is to do, as the run's directory and whether to
    restart it, or the outcome when there is nothing to train."""
    path = sweep.run_dir(task.run_id, task.name)
    store = RunStore(path)
    try:
        summary = store.read_summary()
    except RunDirError as error:
        return Outcome(task.run_id, path.name, "broken", for_sweeps(str(error)))
    if summary is not None:
        if summary.get("status") == "completed" or not task.retry_failed:
            return Outcome(task.run_id, path.name, "skipped", f"already {summary.get('status')}",
                           int(summary.get("epochs_completed") or 0))
        return path, True
    try:
        store.recover_config()  # lost its config.yaml: rebuilt from a checkpoint, never cleared
    except RunDirError as error:
        return Outcome(task.run_id, path.name, "broken", for_sweeps(str(error)))
    return path, False


def _tell(group: Any, decided: Optional[tuple[Path, bool]]) -> None:
    if group is not None:   # a one-process group's broadcast sends nothing
        group.broadcast(decided)


def follow_task(task: RunTask, group: Any) -> None:
    """A rank other than 0 of a data-parallel run: train with rank 0 when it trains."""
    from assist.api import train
    from assist.validation import validate_run

    decided = group.broadcast(None)
    if decided is None:
        group.close()
        return
    path, restart = decided
    try:
        config = validate_run(task.config)
        train(config, out=path, restart=restart, data=_cached_data(config), group=group)
    except Exception:  # noqa: BLE001 - rank 0 reports the run's error in its outcome
        traceback.print_exc()


def _train(task: RunTask, path: Path, restart: bool, group: Any = None) -> Outcome:
    from assist.api import train
    from assist.validation import validate_run
    from assist.engine.callbacks import ProgressReporter

    started = time.perf_counter()
    store = RunStore(path)
    # the epoch it resumes from is the newest checkpoint that proves usable, known after loading
    print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {task.name} pid {os.getpid()} "
          + ("restart" if restart else "resume" if store.exists else "start"), flush=True)
    try:
        config = validate_run(task.config)
        result = train(config, out=path, restart=restart, data=_cached_data(config),
                       callbacks=[ProgressReporter(stream=sys.stderr, label=task.name)], group=group)
    except Exception as error:  # noqa: BLE001 - a broken run is reported, the sweep goes on
        traceback.print_exc()
        return Outcome(task.run_id, path.name, "error", for_sweeps(f"{type(error).__name__}: {error}"),
                       seconds=time.perf_counter() - started)
    summary = result.summary
    print(f"=== end: {summary['status']}" + (f" ({summary['reason']})" if summary["reason"] else ""), flush=True)
    return Outcome(task.run_id, path.name, summary["status"], summary["reason"], summary["epochs_completed"],
                   result.resumed_from or None, time.perf_counter() - started)


def for_sweeps(message: str) -> str:
    """A run directory's advice in sweep terms: assist sweep has no --restart."""
    return re.sub(r"pass --restart to start (?:the run |it )?over", "remove the run's directory to start it over "
                  "(assist sweep has no --restart; --retry-failed restarts failed runs)", message)
