"""Fill a tracker afterwards from an existing run directory (``assist export``).

The run directory holds everything a tracker shows (config.yaml, metrics.jsonl,
summary.json), so a run trained without trackers, or whose tracker was offline or failed,
can be mirrored later. Wall-clock times are replayed: the run's start is the time its
config.yaml was written, each epoch at ``start + wall_clock_s``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Optional

import click

from assist.files import StorageError

from assist.tracking.run_dir import RunDirError, RunStore
from assist.tracking.trackers import (TRACKERS, MlflowTracker, TensorBoardTracker, Tracker, TrackerError,
                                      WandbTracker, check_available)

EVENT_FILE_PREFIX = "events.out.tfevents."


def tensorboard_target(run_dir: Path, logdir: Optional[Path], force: bool) -> Path:
    """``RUN_DIR/tensorboard`` (or ``LOGDIR/<run name>``); refuses to add a second copy of
    the same run's events unless ``force``, which removes the old event files first."""
    target = run_dir / "tensorboard" if logdir is None else Path(logdir) / run_dir.resolve().name
    existing = sorted(target.glob(EVENT_FILE_PREFIX + "*")) if target.is_dir() else []
    if existing and not force:
        raise TrackerError(f"{str(target)!r} already holds TensorBoard events for this run "
                           "(from trackers=[tensorboard] or an earlier export); pass --force to replace them")
    for path in existing:
        path.unlink()
    return target


def build_tracker(name: str, run_dir: Path, *, logdir: Optional[Path] = None, force: bool = False) -> Tracker:
    check_available(name)
    if name == "tensorboard":
        return TensorBoardTracker(tensorboard_target(run_dir, logdir, force))
    if name == "wandb":
        return WandbTracker(run_dir)
    return MlflowTracker(run_dir)


def export_run(run_dir: str | Path, to: str, *, logdir: Optional[str | Path] = None, force: bool = False,
               rebuild: bool = False) -> str:
    """Replay one run directory into tracker ``to``; returns where it went. Corrupt metrics
    lines and epochs the summary counts but the metrics lack are warned about; ``rebuild``
    first restores ``metrics.jsonl`` from the newest checkpoint's history."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.exists:
        raise RunDirError(f"{str(run_dir)!r} is not a run directory (no {RunStore.CONFIG})")
    if rebuild and store.rebuild_metrics():
        warnings.warn(f"{run_dir}: metrics.jsonl rebuilt from its newest checkpoint")
    corrupt: list[int] = []
    config, rows, summary = store.read_config(), store.read_metrics(corrupt), store.read_summary()
    if corrupt:
        warnings.warn(f"{run_dir}: {len(corrupt)} corrupt line(s) of metrics.jsonl skipped "
                      f"(line {', '.join(map(str, corrupt[:5]))})")
    counted = (summary or {}).get("epochs_completed")
    if isinstance(counted, int) and counted > len(rows):
        warnings.warn(f"{run_dir}: metrics.jsonl holds {len(rows)} of the run's {counted} epochs; "
                      "`assist export --rebuild-metrics` restores them from the newest checkpoint")
    tracker = build_tracker(to, run_dir, logdir=None if logdir is None else Path(logdir), force=force)
    started = (run_dir / RunStore.CONFIG).stat().st_mtime
    tracker.start(run_dir.resolve().name, config)
    for row in rows:
        wall = row.get("wall_clock_s")
        tracker.log(row, step=int(row["epoch"]), walltime=None if wall is None else started + float(wall))
    status = summary.get("status", "completed") if summary else "incomplete"
    tracker.finish(status, summary or {"epochs_completed": len(rows)})
    return f"{tracker.describe()} ({len(rows)} epochs, {status})"


@click.command("export")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--to", "targets", multiple=True, required=True, type=click.Choice(TRACKERS),
              help="Tracker to fill (repeat for several).")
@click.option("--logdir", type=click.Path(file_okay=False),
              help="TensorBoard: write under DIR/<run name> instead of RUN_DIR/tensorboard.")
@click.option("--force", is_flag=True, help="TensorBoard: replace event files already there.")
@click.option("--rebuild-metrics", "rebuild", is_flag=True,
              help="First restore metrics.jsonl from the run's newest checkpoint when it lost epochs.")
def export_command(run_dirs: tuple[str, ...], targets: tuple[str, ...], logdir: Optional[str], force: bool,
                   rebuild: bool) -> None:
    """Copy finished (or unfinished) runs into TensorBoard, W&B or MLflow.

    RUN_DIRS are run directories written by `assist train`; the tracker settings come from
    the usual environment (WANDB_MODE, WANDB_PROJECT, MLFLOW_TRACKING_URI, ...)."""
    for target in dict.fromkeys(targets):
        check_available(target)  # all packages checked before anything is written
    bad = []
    for run_dir in run_dirs:
        for target in dict.fromkeys(targets):
            try:
                click.echo(f"{run_dir} -> {export_run(run_dir, target, logdir=logdir, force=force, rebuild=rebuild)}")
            except (RunDirError, StorageError, OSError) as error:  # one bad run is named; the others are exported
                if len(run_dirs) == 1:
                    raise
                bad.append(run_dir)
                click.echo(f"assist: error: {run_dir}: {error}", err=True)
                break
    if bad:
        click.echo(f"assist: {len(bad)} of {len(run_dirs)} run directories not exported", err=True)
        sys.exit(1)
