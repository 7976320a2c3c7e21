"""Slurm executor through submitit (``pip install 'assist-sampling[cluster]'``): one array job,
one task per run (``processes_per_run`` tasks for a data-parallel run).

Preemption and timeouts: Slurm sends USR2 ``signal_delay_s`` before the end; submitit then
calls ``SubmititRun.checkpoint``, which resubmits the same call, and requeues the job. Nothing
needs saving at that moment: the run checkpoints itself every ``checkpoint_every`` epochs, and
``run_task`` resumes an unfinished run from its newest checkpoint. The per-run lock keeps a
requeued task and a stray older one from training the same run at once.

``submitit-local`` runs the same jobs as local subprocesses through submitit's LocalExecutor
(for testing this path without a cluster; preemption is simulated with ``job._interrupt()``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

from assist.experiments.runner import Outcome, RunTask, follow_task, run_task
from assist.experiments.spec import SlurmOptions, time_minutes

try:
    import submitit
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # optional dependency
    submitit = None
    Checkpointable = object  # type: ignore[assignment,misc]
    DelayedSubmission = None  # type: ignore[assignment]


def require_submitit(kind: str = "submitit-local") -> None:
    """Everything ``kind`` needs on this machine, checked before the sweep writes anything."""
    if submitit is None:
        raise ValueError("the slurm executors need submitit: pip install 'assist-sampling[cluster]' (or pip install submitit)")
    if kind == "slurm":
        require_srun()


def require_srun() -> None:
    if shutil.which("srun") is None:  # submitit needs Slurm's commands on this machine
        raise ValueError("--executor slurm needs Slurm's srun and sbatch on PATH (this machine has none): "
                         "run the sweep on a Slurm login node, or use --executor local or submitit-local")


class SubmititRun(Checkpointable):
    """The callable each array task runs; resubmitted as is on preemption or timeout. A job of
    several tasks (``processes_per_run``) is one data-parallel run: the tasks join one process
    group, task 0 takes the run's lock and decides, and the others follow it."""

    def __call__(self, task: RunTask) -> Optional[Outcome]:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus and task.config.get("num_threads") is None:
            import torch

            torch.set_num_threads(int(cpus))
        from assist.engine.distributed import Group

        group = Group.from_environment(str(task.config.get("device", "cpu")))
        if not group.is_main:
            follow_task(task, group)
            return None   # the job's result is task 0's outcome
        # Wait a little longer for the lock than locally: a requeued task can start while the
        # node is still tearing down the preempted one.
        outcome = run_task(task, lock_wait_s=30.0, group=group)
        group.close()   # after a skipped run too (training closes it): the followers wait here
        return outcome

    def checkpoint(self, task: RunTask) -> Any:
        return DelayedSubmission(self, task)


def make_executor(kind: str, folder: Path, options: SlurmOptions) -> Any:
    require_submitit()
    minutes = time_minutes(options.time)
    if kind == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=options.max_requeues)
        executor.update_parameters(timeout_min=minutes, signal_delay_s=min(options.signal_delay_s, 30),
                                   tasks_per_node=options.processes_per_run)
        return executor
    if kind != "slurm":
        raise ValueError(f"unknown executor {kind!r}; use local, slurm or submitit-local")
    require_srun()
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=options.max_requeues)
    params: dict[str, Any] = {
        "job_name": "assist", "time": minutes, "cpus_per_task": options.cpus,
        "array_parallelism": options.array_parallelism, "signal_delay_s": options.signal_delay_s,
        "setup": list(options.setup), "stderr_to_stdout": True,
    }
    if options.processes_per_run > 1:
        params["ntasks_per_node"] = options.processes_per_run
    optional = {"partition": options.partition, "mem": options.mem, "account": options.account,
                "qos": options.qos, "constraint": options.constraint,
                "gpus_per_node": options.gpus * options.processes_per_run or None}
    params.update({key: value for key, value in optional.items() if value is not None})
    if options.additional:
        params["additional_parameters"] = dict(options.additional)
    executor.update_parameters(**params)
    return executor


def submit(kind: str, root: Path, tasks: list[RunTask], options: SlurmOptions) -> list[Any]:
    """Submit every task as one array job (slurm) or as local jobs (submitit-local)."""
    executor = make_executor(kind, root / ".submitit", options)
    runner = SubmititRun()
    with executor.batch():
        jobs = [executor.submit(runner, task) for task in tasks]
    return jobs


def run_windowed(root: Path, tasks: list[RunTask], options: SlurmOptions, workers: int,
                 on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    """submitit-local: at most ``workers`` jobs at a time (the LocalExecutor has no array limit)."""
    executor = make_executor("submitit-local", root / ".submitit", options)
    runner, pending, running, outcomes = SubmititRun(), list(tasks), [], []
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop(0)
                running.append((task, executor.submit(runner, task)))
            time.sleep(0.2)
            for task, job in [item for item in running if item[1].done()]:
                running.remove((task, job))
                outcomes.append(job_outcome(task, job))
                on_outcome(outcomes[-1])
    except KeyboardInterrupt:
        for _, job in running:
            job.cancel(check=False)
        raise
    return outcomes


def job_outcome(task: RunTask, job: Any) -> Outcome:
    """The job's returned Outcome (task 0's, for a data-parallel run), or an error outcome when
    the job itself failed."""
    try:
        return job.results()[0]
    except Exception as error:  # noqa: BLE001 - submitit raises for any failed or cancelled job
        first = str(error).strip().splitlines()
        return Outcome(task.run_id, task.name, "crashed",
                       f"job {job.job_id} failed: {first[0] if first else type(error).__name__}; rerun to resume")


def wait_for(jobs: list[Any], tasks: list[RunTask], on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    outcomes = []
    remaining = list(zip(tasks, jobs))
    while remaining:
        time.sleep(1.0)
        for task, job in [item for item in remaining if item[1].done()]:
            remaining.remove((task, job))
            outcomes.append(job_outcome(task, job))
            on_outcome(outcomes[-1])
    return outcomes
