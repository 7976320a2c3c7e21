"""``assist sweep``, ``assist status`` and ``assist examples``."""

from __future__ import annotations

import sys
from typing import Optional

import click

from assist.experiments.spec import EXECUTORS


def check_out(out: Optional[str]) -> None:
    """``--out ''`` is a mistake, not a request for the default folder (train, compare, sweep)."""
    if out is not None and not str(out).strip():
        from assist.config import ConfigError

        raise ConfigError("--out: the path is empty; leave --out out for the default folder under runs/")


@click.command("examples")
@click.argument("name", required=False)
def examples_command(name: Optional[str]) -> None:
    """The sweep specs shipped with ASSIST, each with its run count and the command that runs it
    small on a CPU; with NAME, that spec's whole header. Run one: assist sweep NAME --dry-run."""
    from assist.experiments.examples import examples

    shipped = examples()
    if name is not None:
        chosen = [e for e in shipped if name in (e.name, e.path.stem)]
        if not chosen:
            error = click.ClickException(f"no shipped spec is called {name!r}; `assist examples` lists them")
            error.exit_code = 2   # bad input, as everywhere in the CLI
            raise error
        click.echo("\n".join(chosen[0].header))
        click.echo(f"\n(file: {chosen[0].path})")
        return
    width = max(len(e.name) for e in shipped)
    for example in shipped:
        runs = f" ({example.declared_runs} runs)" if example.declared_runs else ""
        click.echo(f"{example.name:<{width}}  {example.description}{runs}")
        cpu = example.commands().get("cpu")
        if cpu:
            click.echo(f"{'':<{width}}  on a CPU: {cpu}")
    click.echo(f"\n(files in {shipped[0].path.parent}; `assist examples NAME` shows a spec's header: "
               "what it runs, its full-scale command and its GPU-hours)")


@click.command("sweep")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Sweep directory (default: runs/<spec name>).")
@click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="local: worker processes here; slurm: one array job; submitit-local: submitit's local jobs.")
@click.option("--workers", type=int, help="Runs at once (local executors; default: the cores here).")
@click.option("--threads", type=int, help="local: torch threads per worker (default: cores / workers).")
@click.option("--dry-run", is_flag=True, help="List the runs and their state; run nothing.")
@click.option("--retry-failed", is_flag=True, help="Also start failed runs over.")
@click.option("--wait/--no-wait", default=False, help="slurm: wait for the jobs and print each outcome.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Set a key for every run (repeatable); a grid or experiment that varies it keeps only this value.")
@click.option("--seeds", default=None, metavar="S,...", help="Replace the spec's seeds, e.g. 0,1,2.")
def sweep_command(spec: str, out: Optional[str], executor: str, workers: Optional[int], threads: Optional[int],
                  dry_run: bool, retry_failed: bool, wait: bool, overrides: tuple[str, ...],
                  seeds: Optional[str]) -> None:
    """Run every run of SPEC (a YAML file, or a shipped example's name: assist examples) that is
    missing or unfinished; rerun to resume."""
    from assist.experiments.sweep import check_models_fit, describe_plan, plan_sweep, run_sweep

    try:
        seed_list = None if seeds is None else [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"{seeds!r} is not a comma-separated list of integers", param_hint="--seeds")
    check_out(out)
    plan = plan_sweep(spec, out, overrides, seed_list)
    if dry_run:
        check_models_fit(plan, echo=click.echo)
        click.echo(describe_plan(plan))
        return
    report = run_sweep(plan, executor=executor, workers=workers, threads=threads, retry_failed=retry_failed,
                       wait=wait, echo=click.echo)
    if report.interrupted:
        sys.exit(130)
    if report.outcomes:
        counts: dict[str, int] = {}
        for outcome in report.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        click.echo(f"{len(report.outcomes)} runs ended in {report.wall_clock_s:.1f}s: "
                   + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for outcome in report.problems:
        click.echo(f"  {outcome.status}: {outcome.name}: {outcome.reason}", err=True)
    if report.problems:
        sys.exit(1)


@click.command("status")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--problems", is_flag=True, help="Hide the runs that are done.")
def status_command(directory: str, problems: bool) -> None:
    """Each run under DIRECTORY, grouped by sweep: done / running / failed (reason) / incomplete /
    missing. Finds the runs that assist report finds (any depth)."""
    from pathlib import Path

    from assist.experiments.store import format_tree, states_under

    grouped = states_under(directory)
    if not grouped:
        raise click.ClickException(f"no runs found in {directory!r} (no sweep.json and no run directories)")
    click.echo(format_tree(grouped, Path(directory), show_done=not problems))
