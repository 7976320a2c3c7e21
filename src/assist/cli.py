"""``assist`` command line: train, compare (and the commands other modules attach)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Optional

import click

from assist.config import ConfigError, apply_overrides, config_default, load_config_file

# Errors that are the user's input, not a bug: one line, non-zero exit, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, KeyError, FileNotFoundError,
                                                 NotADirectoryError, PermissionError)

COMPARE_DEFAULTS = {"dataset": "digits", "model": "fcnet100", "epochs": 20, "batch_size": 32,
                    "learning_rate": 0.05}


def _defaults_text(values: dict) -> str:
    """``digits / fcnet100, 20 epochs at batch 32``: the run size a command uses unless told."""
    return f"{values['dataset']} / {values['model']}, {values['epochs']} epochs at batch {values['batch_size']}"


# train takes the config's defaults, compare its own (a longer, smaller-batch run on digits);
# both helps say so, from these values (docs/architecture.md, "Options")
TRAIN_SIZE = _defaults_text({key: config_default(key) for key in ("dataset", "model", "epochs", "batch_size")})
COMPARE_SIZE = _defaults_text(COMPARE_DEFAULTS)


def resolve_values(config_file: Optional[str], overrides: tuple[str, ...], defaults: Optional[dict] = None) -> dict:
    values = dict(defaults or {})
    if config_file:
        values.update(load_config_file(config_file))
    return apply_overrides(values, list(overrides))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="assist-sampling")
def cli() -> None:
    """ASSIST: strategic data sampling for supervised training."""


@cli.command(context_settings={"ignore_unknown_options": False},
             help=f"""Train one run. OVERRIDES are key=value pairs (values read as YAML); `assist keys`
             lists every key with its type, default and meaning.

             Unset keys take their defaults: {TRAIN_SIZE} (assist compare's are
             {COMPARE_SIZE}).""")
@click.option("--config", "config_file", type=str, help="YAML file of config keys.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<name>).")
@click.option("--restart", is_flag=True, help="Start over if --out holds an earlier run.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes of one data-parallel run (torch.distributed; docs/distributed.md).")
@click.argument("overrides", nargs=-1)
def train(config_file: Optional[str], out: Optional[str], restart: bool, nproc: int,
          overrides: tuple[str, ...]) -> None:
    from assist.api import run_name, train as train_run
    from assist.engine.callbacks import ProgressReporter
    from assist.experiments.commands import check_out
    from assist.launch import watch_launcher
    from assist.tracking import RunFinished
    from assist.validation import validate_run

    watch_launcher()   # an --nproc worker dies with its launcher, even a SIGKILLed one
    config = validate_run(resolve_values(config_file, overrides))
    check_out(out)
    target = Path(out) if out else Path("runs") / run_name(config)
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from assist.launch import LauncherStopped, launch_train

        try:
            with stopped_by_signals() as received:
                code = launch_train(nproc, config, target, config_file, restart, overrides)
        except KeyboardInterrupt:   # a signal before the launcher's own handlers were set
            sys.exit(interrupted(target, received))
        except LauncherStopped as stop:   # its workers are stopped: say where the run stands
            sys.exit(interrupted(target, [stop.name]))
        sys.exit(code)
    from assist.engine.distributed import main_process

    main_rank = main_process()
    callbacks = [ProgressReporter(label=config.strategy)] if main_rank else []
    try:
        with stopped_by_signals() as received:
            result = train_run(config, out=target, restart=restart, callbacks=callbacks)
    except KeyboardInterrupt:
        sys.exit(interrupted(target, received))
    except RunFinished as finished:
        if finished.summary.get("status") != "completed":
            raise
        # rerunning a completed run's command (a requeued job, say) is no error
        if main_rank:
            accuracy = (finished.summary.get("final") or {}).get("test_accuracy")
            shown = f", test accuracy {100 * accuracy:.2f}%" if isinstance(accuracy, (int, float)) else ""
            click.echo(f"already completed: {target} ({finished.summary.get('epochs_completed')} epochs{shown}); "
                       "nothing to do")
        return
    if not main_rank:
        return
    final = result.final
    click.echo(f"{result.summary['status']}: {config.strategy} on {config.dataset}/{config.model}, "
               f"{result.state.epoch} epochs, test accuracy {100 * final.get('test_accuracy', float('nan')):.2f}% "
               f"-> {target}")
    if result.summary["status"] == "failed":
        click.echo(f"run failed: {result.summary['reason']}", err=True)
        sys.exit(1)


@cli.command(help=f"""Train the archetype, the strategies and their random controls on the same data
             and seeds; print the thesis table and the paired verdicts. OVERRIDES are key=value pairs (`assist keys` lists them).

             Defaults: {COMPARE_SIZE}, learning rate {COMPARE_DEFAULTS['learning_rate']:g} (not
             assist train's {TRAIN_SIZE}); the other keys as in assist train.""")
@click.option("--config", "config_file", type=str, help="YAML file of config keys.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Directory for the runs (default: runs/compare-<date>-<time>).")
@click.option("--strategies", default=None,
              help="Comma-separated strategies to compare with the archetype twin "
                   "[default: the config's strategy, else batchwise].")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds from rng_seed on, each training every side; paired verdicts need 3.")
@click.option("--control", type=click.Choice(["rs2", "random_subset", "none"]), default="rs2", show_default=True,
              help="Each strategy's random control at the share of sample-steps it trained (docs/peers.md).")
@click.argument("overrides", nargs=-1)
def compare(config_file: Optional[str], out: Optional[str], strategies: Optional[str], seeds: int, control: str,
            overrides: tuple[str, ...]) -> None:
    import time

    from assist.api import compare as compare_runs
    from assist.strategies.resolve import strategy_name
    from assist.engine.callbacks import ProgressReporter
    from assist.tables import comparison_table, cost_table, headline, run_cost
    from assist.verdicts import verdict_text

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
    from assist.experiments.commands import check_out

    check_out(out)
    target = Path(out) if out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    results = compare_runs(values, variants, out=target, seeds=seeds, control=None if control == "none" else control,
                           callbacks_for=lambda label: [ProgressReporter(label=label)])
    base = results["archetype"].config
    finals = {label: r.final for label, r in results.items()}
    costs = {label: run_cost(r.history, r.state.train_time_s) for label, r in results.items()}
    first = f" (the first of {seeds} seeds)" if seeds > 1 else ""
    click.echo(f"\n{base.dataset} / {base.model}, {base.epochs} epochs, batch {base.batch_size}, "
               f"seed {base.rng_seed}{first}\n")
    for line in headline(finals, costs):
        click.echo(line)
    click.echo("\nfinal values; ratio = test ÷ train\n")
    click.echo(comparison_table(finals))
    click.echo("\ncost (sample passes = samples scored + samples trained)\n")
    click.echo(cost_table(costs))
    click.echo(f"\npaired verdicts over {seeds} seed{'s' if seeds > 1 else ''}\n")
    click.echo(verdict_text(results.verdicts))
    loads = [row.get("load_average_1m") for runs in results.by_seed.values() for r in runs for row in r.history]
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
    from assist.keys import keys_command

    cli.add_command(keys_command, "keys")


_attach_optional_commands()


SIGNAL_EXIT = {"SIGINT": 130, "SIGHUP": 129, "SIGTERM": 143}


@contextlib.contextmanager
def stopped_by_signals():
    """SIGTERM and SIGHUP (a scheduler's or a closed terminal's stop) end a training run as
    Ctrl-C does: the step in flight is dropped, the last checkpoint stays. Yields a list that
    holds the signal's name once one came."""
    received: list[str] = []

    def stop(number: int, frame: Any) -> None:
        received.append(signal.Signals(number).name)
        raise KeyboardInterrupt

    if "WORLD_SIZE" in os.environ or threading.current_thread() is not threading.main_thread():
        yield received   # data-parallel workers are stopped by their launcher
        return
    previous = {number: signal.signal(number, stop) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def interrupted(target: Path, received: list[str]) -> int:
    """Say where an interrupted run stands (and log it in the run); its exit code."""
    from assist.tracking import RunStore
    from assist.tracking.checkpoints import where_it_stands

    name = received[0] if received else "SIGINT"
    message = f"interrupted ({name}) {where_it_stands(target)}"
    store = RunStore(target)
    if store.exists:
        store.log(message)
    click.echo(f"assist: {message}", err=True)
    return SIGNAL_EXIT.get(name, 130)


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: Optional[str] = None) -> str:
    """A warning as the CLI's one line (Python's default adds the file and the source line)."""
    return f"assist: warning: {message}\n"


def main(argv: Optional[list[str]] = None) -> None:
    from assist.data.base import DataError
    from assist.engine.distributed import DistributedError, main_process
    from assist.files import STORAGE_ERRNOS, StorageError, storage_error
    from assist.tracking import RunDirError

    formatter = warnings.formatwarning
    warnings.formatwarning = _one_line_warning   # a format, not a display: pytest.warns still records
    try:
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
    except OSError as error:
        # what only writing meets (read-only file system, no space or inodes, quota) where no
        # write site named it: still one line naming the path, exit 1 (docs/reliability.md)
        if error.errno not in STORAGE_ERRNOS or os.environ.get("ASSIST_DEBUG"):
            raise
        if main_process():
            click.echo(f"assist: error: {storage_error(error, error.filename or 'the output')}", err=True)
        sys.exit(1)
    except (MemoryError, RuntimeError) as error:
        from assist.launch import lost_peer, quit_lost

        if lost_peer(error) and not os.environ.get("ASSIST_DEBUG"):
            quit_lost(error)   # another rank died: the launcher names it (docs/distributed.md)
        what = out_of_memory(error)
        if what is None or os.environ.get("ASSIST_DEBUG"):
            raise
        if main_process():
            click.echo(f"assist: error: out of memory ({what}); the last checkpoint is intact: rerun the same "
                       "command with more memory, or a smaller batch_size or eval_batch_size", err=True)
        sys.exit(1)
    finally:
        warnings.formatwarning = formatter   # tests call main in-process


def out_of_memory(error: BaseException) -> Optional[str]:
    """What could not be allocated, when ``error`` is running out of memory (Python's
    MemoryError, torch's CPU or CUDA allocator failing); None for any other error."""
    text = str(error).strip()
    if isinstance(error, MemoryError):
        return text.splitlines()[0][:200] if text else "an allocation failed"
    found = re.search(r"(?:can't allocate memory: )?you tried to allocate (\d+) bytes", text)
    if found:
        return f"{int(found.group(1)):,} bytes could not be allocated"
    if "CUDA out of memory" in text or "DefaultCPUAllocator" in text:
        return text.splitlines()[0][:200]
    return None


if __name__ == "__main__":
    main()
