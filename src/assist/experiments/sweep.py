"""Plan a sweep, see what already exists, and run only what is missing or unfinished."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from assist.experiments.plan import PlannedRun, expand
from assist.experiments.runner import Outcome, RunTask
from assist.experiments.spec import EXECUTORS, SweepSpec, load_spec
from assist.experiments.store import RunState, SweepDir, count_states

PROBLEMS = ("failed", "error", "crashed", "broken")


@dataclass
class SweepPlan:
    spec: SweepSpec
    runs: list[PlannedRun]
    sweep: SweepDir
    name: str

    def states(self) -> list[RunState]:
        index = self.sweep.index()
        return [self.sweep.state(run.run_id, run.name, index) for run in self.runs]

    def tasks(self, states: list[RunState], retry_failed: bool = False) -> list[RunTask]:
        """Runs to start: missing or incomplete ones (and failed ones with ``retry_failed``)."""
        wanted = {"missing", "incomplete"} | ({"failed"} if retry_failed else set())
        return [RunTask(run.run_id, state.name, str(self.sweep.root), run.config.flat(mode="json"),
                        retry_failed=retry_failed)
                for run, state in zip(self.runs, states) if state.state in wanted]


@dataclass
class SweepReport:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)   # state -> runs not started
    wall_clock_s: float = 0.0
    interrupted: bool = False
    submitted: list[str] = field(default_factory=list)      # Slurm job ids when not waiting

    @property
    def problems(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in PROBLEMS]


def plan_sweep(spec_path: Union[str, Path], out: Union[str, Path, None] = None,
               overrides: Sequence[str] = (), seeds: Optional[Sequence[int]] = None) -> SweepPlan:
    """Load and fully validate a spec (every run's config) before anything is written. A spec
    that is no file may name a shipped example (``assist examples``)."""
    from assist.experiments.examples import resolve_example

    spec_path = resolve_example(spec_path) or spec_path
    spec = load_spec(spec_path, overrides, seeds)
    runs = expand(spec, source=str(spec_path))
    name = spec.name or Path(spec_path).stem
    root = Path(out) if out is not None else Path("runs") / name
    return SweepPlan(spec, runs, SweepDir(root), name)


def check_models_fit(plan: SweepPlan, echo: Callable[[str], None] = print) -> None:
    """Build each (data set, model) pair once, so a model that cannot take the data fails the
    sweep before any run starts. A data set that cannot be loaded here (e.g. a login node
    without the files) is only warned about: the runs will load it where they run."""
    from assist.api import load_data
    from assist.data.base import DataError
    from assist.models import build_model
    from assist.experiments.spec import SpecError

    loaded: dict[tuple, object] = {}
    checked: set[tuple] = set()
    for run in plan.runs:
        c = run.config
        data_key = (c.dataset, c.data_dir, repr(c.num_classes))
        if (data_key, c.model) in checked:
            continue
        checked.add((data_key, c.model))
        if data_key not in loaded:
            try:
                loaded[data_key] = load_data(c.config.model_copy(update={"samples_per_class": None}))
            except DataError as error:
                echo(f"warning: cannot check data set {c.dataset!r} here ({error}); checking at run time")
                loaded[data_key] = None
        if loaded[data_key] is None:
            continue
        try:
            build_model(c, loaded[data_key])
        except (ValueError, KeyError) as error:
            message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
            raise SpecError(f"sweep {plan.name!r}: run {run.name}: {message}") from None


def describe_plan(plan: SweepPlan) -> str:
    """The dry-run listing: every run, its role and experiments, and its state on disk."""
    states = plan.states()
    lines = [f"sweep {plan.name!r}: {len(plan.runs)} runs "
             f"({sum(r.role == 'strategic' for r in plan.runs)} strategic, "
             f"{sum(r.role == 'archetype' for r in plan.runs)} archetype) in {plan.sweep.root}"]
    width = max((len(r.name) for r in plan.runs), default=10)
    for run, state in zip(plan.runs, states):
        progress = f"{state.epochs_done}/{run.config.epochs}" if state.state not in ("missing", "done", "collapsed") else ""
        used_by = ",".join(run.experiments)
        lines.append(f"  {state.state:<10} {progress:>7}  {run.name:<{width}}  {run.role:<9} {used_by}".rstrip())
    counts = count_states(states)
    todo = counts["missing"] + counts["incomplete"]
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items()) + f"; would start {todo}")
    return "\n".join(lines)


def run_sweep(plan: SweepPlan, *, executor: str = "local", workers: Optional[int] = None,
              threads: Optional[int] = None, retry_failed: bool = False, wait: Optional[bool] = None,
              echo: Callable[[str], None] = print) -> SweepReport:
    """Start every missing or unfinished run of ``plan`` (unfinished ones resume from their
    checkpoints). ``threads``: torch threads per local worker (default: cores // workers; a
    run's own ``num_threads`` wins). A script that calls this with the local executor needs the usual
    ``if __name__ == "__main__":`` guard: worker processes re-import the main module."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    for option, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be at least 1 (got {value})")
    started = time.perf_counter()
    if executor == "local":
        from assist.experiments.local import worker_context

        worker_context(start_now=True)  # imports torch for the workers while the models are checked
    else:
        from assist.experiments import slurm

        slurm.require_submitit(executor)  # srun, submitit: missing ones stop us before anything is written
    check_models_fit(plan, echo)
    plan.sweep.record(plan.name, {run.run_id: run.manifest_entry() for run in plan.runs})
    states = plan.states()
    tasks = plan.tasks(states, retry_failed)
    report = SweepReport(skipped=dict(Counter(s.state for s in states if s.run_id not in {t.run_id for t in tasks})))
    if report.skipped:
        echo("not started: " + ", ".join(f"{n} {k}" for k, n in sorted(report.skipped.items())))
    for state in states:  # unreadable run directories: named, left as they are, the others run
        if state.state == "broken":
            report.outcomes.append(Outcome(state.run_id, state.name, "broken", state.reason))
            echo(f"broken    {state.name}: {state.reason}")
    if not tasks:
        echo("nothing to run")
        return report
    total = len(tasks)
    done = Counter()

    def on_outcome(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        done["n"] += 1
        note = f" (resumed from epoch {outcome.resumed_from})" if outcome.resumed_from else ""
        reason = f": {outcome.reason}" if outcome.reason and outcome.status != "completed" else ""
        echo(f"[{done['n']:>{len(str(total))}}/{total}] {outcome.status:<9} {outcome.name} "
             f"{outcome.seconds:.1f}s{note}{reason}")

    if executor == "local":
        from assist.experiments.local import LocalPool, SweepInterrupted, available_cores

        count = workers or min(available_cores(), total)
        echo(f"running {total} runs with {count} worker{'s' * (count > 1)}; logs in {plan.sweep.logs}")
        if plan.spec.slurm.processes_per_run > 1:
            echo("note: slurm.processes_per_run is for the slurm and submitit-local executors; "
                 "the local executor trains each run in one process")
        pool = LocalPool(count, threads_per_worker=threads, on_start=lambda task: echo(f"start {task.name}"),
                         on_outcome=on_outcome)
        try:
            pool.run(tasks)
        except SweepInterrupted as stop:
            report.interrupted = True
            echo(f"interrupted: {len(stop.unfinished)} runs not finished; rerun the same command to resume")
    else:
        _run_submitit(plan, tasks, executor, workers, wait, report, on_outcome, echo)
    report.wall_clock_s = time.perf_counter() - started
    return report


def _run_submitit(plan: SweepPlan, tasks: list[RunTask], executor: str, workers: Optional[int],
                  wait: Optional[bool], report: SweepReport, on_outcome: Callable[[Outcome], None],
                  echo: Callable[[str], None]) -> None:
    from assist.experiments import slurm  # its requirements were checked by run_sweep

    try:
        if executor == "submitit-local":
            from assist.experiments.local import available_cores

            count = workers or min(available_cores(), len(tasks))
            echo(f"running {len(tasks)} runs as submitit local jobs, {count} at a time")
            slurm.run_windowed(plan.sweep.root, tasks, plan.spec.slurm, count, on_outcome)
            return
        jobs = slurm.submit("slurm", plan.sweep.root, tasks, plan.spec.slurm)
        report.submitted = [job.job_id for job in jobs]
        array = jobs[0].job_id.split("_")[0] if jobs else "?"
        echo(f"submitted {len(jobs)} runs as Slurm array job {array}; follow with: assist status {plan.sweep.root}")
        if wait:
            slurm.wait_for(jobs, tasks, on_outcome)
    except KeyboardInterrupt:
        report.interrupted = True
        if executor == "slurm":
            echo("stopped waiting; the Slurm jobs keep running (scancel them to stop)")
        else:
            echo("interrupted; rerun the same command to resume")
