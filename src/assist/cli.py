"""``assist`` command line: train, compare (and the commands other modules attach)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import click

from assist.config import ConfigError, apply_overrides, load_config_file

# Errors that are the user's input, not a bug: one line, non-zero exit, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, KeyError, FileNotFoundError,
                                                 NotADirectoryError, PermissionError)

COMPARE_DEFAULTS = {"dataset": "digits", "model": "fcnet100", "epochs": 20, "batch_size": 32,
                    "learning_rate": 0.05}


def resolve_values(config_file: Optional[str], overrides: tuple[str, ...], defaults: Optional[dict] = None) -> dict:
    values = dict(defaults or {})
    if config_file:
        values.update(load_config_file(config_file))
    return apply_overrides(values, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assist-sampling")
def cli() -> None:
    """ASSIST: strategic data sampling for supervised training."""


@cli.command(context_settings={"ignore_unknown_options": False})
@click.option("--config", "config_file", type=str, help="YAML file of config keys.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<name>).")
@click.option("--restart", is_flag=True, help="Start over if --out holds an earlier run.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes of one data-parallel run (torch.distributed; docs/distributed.md).")
@click.argument("overrides", nargs=-1)
def train(config_file: Optional[str], out: Optional[str], restart: bool, nproc: int,
          overrides: tuple[str, ...]) -> None:
    """Train one run. OVERRIDES are key=value pairs (values read as YAML)."""
    from assist.api import run_name, train as train_run
    from assist.engine.callbacks import ProgressReporter
    from assist.validation import validate_run

    config = validate_run(resolve_values(config_file, overrides))
    target = Path(out) if out else Path("runs") / run_name(config)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from assist.launch import launch_train

        sys.exit(launch_train(nproc, config, target, config_file, restart, overrides))
    from assist.engine.distributed import main_process

    main_rank = main_process()
    callbacks = [ProgressReporter(label=config.strategy)] if main_rank else []
    result = train_run(config, out=target, restart=restart, callbacks=callbacks)
    if not main_rank:
        return
    final = result.final
    click.echo(f"{result.summary['status']}: {config.strategy} on {config.dataset}/{config.model}, "
               f"{result.state.epoch} epochs, test accuracy {100 * final.get('test_accuracy', float('nan')):.2f}% "
               f"-> {target}")
    if result.summary["status"] == "failed":
        click.echo(f"run failed: {result.summary['reason']}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--config", "config_file", type=str, help="YAML file of config keys.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Directory for the runs (default: runs/compare-<date>-<time>).")
@click.option("--strategies", default=None,
              help="Comma-separated strategies to compare with the archetype twin "
                   "[default: the config's strategy, else batchwise].")
@click.argument("overrides", nargs=-1)
def compare(config_file: Optional[str], out: Optional[str], strategies: Optional[str],
            overrides: tuple[str, ...]) -> None:
    """Train the archetype and strategies on the same data and seed; print the thesis table.

    Defaults: scikit-learn's bundled digits (offline), FCNet100, 20 epochs."""
    import time

    from assist.api import compare as compare_runs
    from assist.strategies.resolve import strategy_name
    from assist.engine.callbacks import ProgressReporter
    from assist.tables import comparison_table, cost_table, headline, run_cost

    values = resolve_values(config_file, overrides, COMPARE_DEFAULTS)
    chosen = values.pop("strategy", None)
    flags = {flag: values.pop(flag) for flag in ("epoch_filtering", "batch_filtering") if flag in values}
    if strategies is None:
        if chosen is None and flags:  # the thesis's flags name the strategy to compare
            chosen = strategy_name(flags)
        strategies = chosen or "batchwise"
    elif chosen is not None or flags:
        raise ConfigError("compare: give the strategies either with --strategies or as strategy=..., not both")
    names = [name.strip() for name in strategies.split(",") if name.strip()]
    variants = [{"strategy": name} for name in names if name != "archetype"]
    target = Path(out) if out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    results = compare_runs(values, variants, out=target, callbacks_for=lambda label: [ProgressReporter(label=label)])
    base = results["archetype"].config
    finals = {label: r.final for label, r in results.items()}
    costs = {label: run_cost(r.history, r.state.train_time_s) for label, r in results.items()}
    click.echo(f"\n{base.dataset} / {base.model}, {base.epochs} epochs, batch {base.batch_size}, seed {base.rng_seed}\n")
    for line in headline(finals, costs):
        click.echo(line)
    click.echo("\nfinal values; ratio = test ÷ train\n")
    click.echo(comparison_table(finals))
    click.echo("\ncost (sample passes = samples scored + samples trained)\n")
    click.echo(cost_table(costs))
    loads = [row.get("load_average_1m") for r in results.values() for row in r.history]
    busiest = max((value for value in loads if isinstance(value, (int, float))), default=None)
    if busiest is not None and busiest > (os.cpu_count() or 1) + 0.5:
        click.echo(f"\ncaveat: the machine was busy (load average up to {busiest:.1f} on {os.cpu_count()} cores): "
                   "the time ratios are unreliable, the sample-pass ratios are not")
    click.echo(f"\nruns written to {target} (assist report {target})")


def _attach_optional_commands() -> None:
    """Commands that live in other modules (report, sweep, ...) register themselves here."""
    try:
        from assist.report.command import report_command
    except ImportError:
        pass
    else:
        cli.add_command(report_command, "report")
    from assist.experiments.commands import examples_command, status_command, sweep_command

    cli.add_command(sweep_command, "sweep")
    cli.add_command(examples_command, "examples")
    cli.add_command(status_command, "status")
    from assist.tracking.export import export_command

    cli.add_command(export_command, "export")


_attach_optional_commands()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: Optional[str] = None) -> None:
    """A warning as the CLI's one line (Python's default adds the file and the source line)."""
    click.echo(f"assist: warning: {message}", err=True)


def main(argv: Optional[list[str]] = None) -> None:
    from assist.data.base import DataError
    from assist.engine.distributed import DistributedError, main_process
    from assist.files import StorageError
    from assist.tracking import RunDirError

    try:
        with warnings.catch_warnings():   # restores the hook when main returns (tests call it in-process)
            warnings.showwarning = _one_line_warning
            cli.main(args=argv, prog_name="assist", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (StorageError, DataError, RunDirError, DistributedError, *USER_ERRORS) as error:
        if os.environ.get("ASSIST_DEBUG"):
            raise
        code = 1 if isinstance(error, (StorageError, DistributedError)) else 2
        if not main_process():
            sys.exit(code)   # a data-parallel run: rank 0 says it once (the same error reaches every rank)
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        for line in message.splitlines() or [""]:  # several bad runs of a sweep: one line each
            click.echo(f"assist: error: {line}", err=True)
        # a full disk (quota, read-only) is not the input's fault: exit 1, the last good state kept
        sys.exit(code)


if __name__ == "__main__":
    main()
