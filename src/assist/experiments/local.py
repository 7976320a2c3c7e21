"""Local executor: a pool of worker processes, each running one run at a time.

Workers come from a ``forkserver`` that imported torch and the training code once (``spawn``
where there is no forkserver): no worker inherits the parent's threads or CUDA state, and
none pays for importing torch again. They are kept for the whole sweep, so each loads a data
set once. The parent hands out runs one by one over a pipe per worker and watches each
worker's process: a worker that dies (killed, out of memory) costs only its current run,
which stays resumable, and is replaced.

Ctrl-C (or SIGTERM) in the parent stops every worker at once; checkpoints are atomic, so the
sweep resumes from them when rerun. Workers die with the sweep even on SIGKILL (the
forkserver exits when the parent does, and Linux ``PR_SET_PDEATHSIG`` kills its children; a
watchdog thread checks the parent elsewhere), so no orphan keeps a run's lock.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Callable, Optional

from assist.launch import exit_with
from assist.experiments.runner import Outcome, RunTask, run_task


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was stopped (Ctrl-C / SIGTERM); ``outcomes`` holds the runs that ended."""

    def __init__(self, outcomes: list[Outcome], unfinished: list[RunTask]) -> None:
        super().__init__("interrupted")
        self.outcomes = outcomes
        self.unfinished = unfinished


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# What every worker needs, imported once in the forkserver: torch and the training code, and
# torch._dynamo, which the model factory's shape probe on the meta device imports lazily.
PRELOAD = ["__main__", "torch", "assist.api", "assist.experiments.runner", "torch._dynamo"]


def _preload() -> list[str]:
    """PRELOAD, plus the assist modules this process has imported: each worker re-runs the
    main module (``assist.cli`` for ``python -m assist.cli``), which is cheap only when its
    imports are already in the forkserver."""
    main_name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None)
    loaded = sorted(name for name in sys.modules if name.startswith("assist.") and name != main_name)
    return PRELOAD + [name for name in loaded if name not in PRELOAD]


def _die_with_parent(sweep_pid: int) -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: dies with its parent (the forkserver)
    except (OSError, AttributeError):
        pass
    exit_with(sweep_pid)


def _worker_main(conn: Connection, sweep_pid: int, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    _die_with_parent(sweep_pid)
    import torch

    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task is None:
            break
        torch.set_num_threads(threads)  # a run's num_threads must not leak into the next one
        try:
            outcome = run_task(task)
        except Exception as error:  # noqa: BLE001 - e.g. an unwritable log: report it, keep the worker
            outcome = Outcome(task.run_id, task.name, "error", f"{type(error).__name__}: {error}")
        conn.send(outcome)
    conn.close()
    os._exit(0)  # everything is on disk already; skip the slow interpreter teardown


def worker_context(start_now: bool = False) -> mp.context.BaseContext:
    """The forkserver context (spawn where there is none); ``start_now`` starts the server
    in the background, so that it imports torch while this process does other work."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(_preload())
    if start_now:
        from multiprocessing import forkserver

        forkserver.ensure_running()
    return context


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    conn: Connection
    task: Optional[RunTask] = None


class LocalPool:
    def __init__(self, workers: int, *, threads_per_worker: Optional[int] = None,
                 on_start: Optional[Callable[[RunTask], None]] = None,
                 on_outcome: Optional[Callable[[Outcome], None]] = None) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {workers})")
        self.workers = workers
        self.threads = threads_per_worker or max(1, available_cores() // workers)
        self.on_start = on_start or (lambda task: None)
        self.on_outcome = on_outcome or (lambda outcome: None)
        self._context = worker_context()

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child, os.getpid(), self.threads),
                                        daemon=True, name="assist-sweep-worker")
        process.start()
        child.close()
        return _Worker(process, parent)

    def run(self, tasks: list[RunTask]) -> list[Outcome]:
        pending = deque(tasks)
        outcomes: list[Outcome] = []
        pool: list[_Worker] = []
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        try:
            pool = [self._spawn() for _ in range(min(self.workers, len(tasks)))]
            while pending or any(w.task for w in pool):
                for index, worker in enumerate(pool):
                    if worker.task is None and pending:
                        if not worker.process.is_alive():  # died while idle: replace it
                            worker.conn.close()
                            pool[index] = worker = self._spawn()
                        task = pending.popleft()
                        try:
                            worker.conn.send(task)
                        except OSError:  # it died just now: the next round replaces it
                            pending.appendleft(task)
                            continue
                        worker.task = task
                        self.on_start(task)
                busy = [w for w in pool if w.task is not None]
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=5.0)
                for worker in busy:
                    outcome = self._collect(worker)
                    if outcome is None:
                        continue
                    outcomes.append(outcome)
                    self.on_outcome(outcome)
                    if not worker.process.is_alive():
                        pool.remove(worker)
                        if pending:
                            pool.append(self._spawn())
        except KeyboardInterrupt:
            unfinished = [w.task for w in pool if w.task is not None] + list(pending)
            self._stop(pool, force=True)
            pool = []
            raise SweepInterrupted(outcomes, unfinished) from None
        finally:
            self._stop(pool, force=False)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return outcomes

    @staticmethod
    def _collect(worker: _Worker) -> Optional[Outcome]:
        """The worker's outcome if its run ended (normally or by the worker's death)."""
        task = worker.task
        assert task is not None
        if worker.conn.poll():
            try:
                outcome = worker.conn.recv()
                worker.task = None
                return outcome
            except (EOFError, OSError):
                pass
        elif worker.process.is_alive():
            return None
        worker.process.join(timeout=5.0)
        worker.task = None
        code = worker.process.exitcode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return Outcome(task.run_id, task.name, "crashed", f"worker process died ({how}); rerun to resume")

    @staticmethod
    def _stop(pool: list[_Worker], force: bool) -> None:
        for worker in pool:
            if force:
                worker.process.terminate()
            else:
                try:
                    worker.conn.send(None)
                except (BrokenPipeError, OSError):
                    pass
        for worker in pool:
            worker.process.join(timeout=10.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
