"""Mirror runs into the trackers people already use: TensorBoard, Weights & Biases, MLflow.

The run directory stays the source of truth; a tracker receives a copy of the resolved
config (as parameters) and of every per-epoch metrics row (numeric measurements only, under
namespaced tags: ``train/accuracy``, ``test/loss_mean``, ``cost/samples_trained``,
``system/process_rss_mb``, ``optim/learning_rate``, ``selection/acceptance_ratio``;
``step = epoch``). Each
backend is an optional extra, imported only when used; a missing one is a one-line error
naming the pip extra. Where each writes:

* ``tensorboard``: event files in ``RUN_DIR/tensorboard/`` (the scalars under those
  tags, the config as hyper-parameters and text);
* ``wandb``: ``wandb.init(dir=RUN_DIR)``, so offline runs (``WANDB_MODE=offline``) land in
  ``RUN_DIR/wandb/``; project from ``WANDB_PROJECT`` (default ``assist``);
* ``mlflow``: the tracking store MLflow is configured with (``MLFLOW_TRACKING_URI``, else
  MLflow's default), experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``assist``), the run
  tagged ``assist.run_dir`` with the run directory's absolute path.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterable, Optional

from assist.events import Callback
from assist.files import storage_errors

TRACKERS: tuple[str, ...] = ("tensorboard", "wandb", "mlflow")
# tracker -> (module that must import, pip extra that installs it)
REQUIREMENTS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
                "mlflow": ("mlflow", "mlflow")}
MLFLOW_STATUS = {"completed": "FINISHED", "failed": "FAILED", "stopped": "KILLED", "incomplete": "KILLED"}
# metrics declared to TensorBoard's HParams dashboard (values come from the scalars)
HPARAM_METRICS = ("test/accuracy", "test/loss_mean", "train/accuracy", "train/loss_mean")
# metrics-row entries that are the config (logged once, as parameters), not measurements
CONFIG_ENTRIES = frozenset({"epoch", "rng_seed", "num_classes"})
COST_ENTRIES = frozenset({"steps", "total_steps", "samples_scored", "samples_trained", "cum_samples_scored",
                          "cum_samples_trained", "train_time_s", "epoch_time_s", "wall_clock_s",
                          "rho_il_samples_trained", "rho_il_samples_scored", "rho_il_time_s"})
SYSTEM_ENTRIES = frozenset({"process_rss_mb", "cpu_percent", "cpu_threads", "system_memory_available_mb",
                            "load_average_1m"})


class TrackerError(ValueError):
    """A tracker cannot be used as asked; the message says why and what to install or do."""


def check_available(name: str) -> None:
    """Fail fast (before a run directory is touched) if a tracker's package is missing."""
    if name not in REQUIREMENTS:
        raise TrackerError(f"unknown tracker {name!r}; available: {', '.join(TRACKERS)}")
    module, extra = REQUIREMENTS[name]
    if importlib.util.find_spec(module) is None:
        raise TrackerError(f"tracker {name!r} needs the {module} package: pip install 'assist-sampling[{extra}]'")


def require(name: str) -> Any:
    check_available(name)
    return importlib.import_module(REQUIREMENTS[name][0])


def tracker_tag(key: str) -> str:
    """A metrics-row key as a namespaced tracker tag: ``train/…``, ``test/…``, ``cost/…``,
    ``system/…``, ``optim/learning_rate``, and ``selection/…`` for what the strategy did."""
    if key in COST_ENTRIES:
        return f"cost/{key}"
    if key.startswith("train_"):
        return f"train/{key.removeprefix('train_')}"
    if key.startswith("test_"):
        return f"test/{key.removeprefix('test_')}"
    if key in SYSTEM_ENTRIES or key.startswith("gpu_"):
        return f"system/{key}"
    if key == "learning_rate":
        return "optim/learning_rate"
    return f"selection/{key}"


def metric_values(row: dict[str, Any]) -> dict[str, float]:
    """The numeric, finite measurements of a metrics row under their tracker tags (booleans as
    0/1; the epoch is the step; config entries such as the seed are parameters, not metrics)."""
    values = {}
    for key, value in row.items():
        if key in CONFIG_ENTRIES or value is None or isinstance(value, str):
            continue
        if isinstance(value, (bool, int, float)) and math.isfinite(float(value)):
            values[tracker_tag(key)] = float(value)
    return values


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Config as flat scalar parameters: nested dicts dotted, lists and None as text."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


class Tracker:
    """One backend: ``start`` once, ``log`` per epoch, ``finish`` at the end."""

    name: ClassVar[str] = "tracker"

    def start(self, run_name: str, config: dict[str, Any], *, resume_from: int = 0) -> None:
        raise NotImplementedError

    def log(self, row: dict[str, Any], step: int, walltime: Optional[float] = None) -> None:
        raise NotImplementedError

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, logdir: str | Path) -> None:
        check_available(self.name)
        self.logdir = Path(logdir)
        self.writer: Any = None

    def start(self, run_name: str, config: dict[str, Any], *, resume_from: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # on resume, events after the checkpoint's epoch are dropped, as in metrics.jsonl
        with storage_errors(self.logdir):   # a read-only or full file system: one line
            self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=resume_from + 1 if resume_from else None)
        experiment, start_info, end_info = hparams(flat_params(config), {k: 0.0 for k in HPARAM_METRICS})
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start_info, end_info):
            file_writer.add_summary(summary)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", global_step=0)

    def log(self, row: dict[str, Any], step: int, walltime: Optional[float] = None) -> None:
        for key, value in metric_values(row).items():
            self.writer.add_scalar(key, value, global_step=step, walltime=walltime)

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        text = "```\n" + json.dumps({"status": status, **summary}, indent=2, default=str) + "\n```"
        self.writer.add_text("summary", text)
        self.writer.close()

    def describe(self) -> str:
        return f"tensorboard: {self.logdir}"


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, run_dir: str | Path, run_id: Optional[str] = None) -> None:
        check_available(self.name)
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self.run: Any = None

    def start(self, run_name: str, config: dict[str, Any], *, resume_from: int = 0) -> None:
        wandb = require(self.name)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "assist"), name=run_name,
                              dir=str(self.run_dir), config=config, id=self.run_id,
                              resume="allow" if self.run_id else None, settings=wandb.Settings(console="off"))

    def log(self, row: dict[str, Any], step: int, walltime: Optional[float] = None) -> None:
        self.run.log(metric_values(row), step=step)

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.run.summary.update({"status": status, "epochs_completed": summary.get("epochs_completed")})
        self.run.finish(exit_code=0 if status == "completed" else 1)

    def describe(self) -> str:
        where = self.run.dir if self.run is not None else self.run_dir / "wandb"
        return f"wandb: {where}"


class MlflowTracker(Tracker):
    name = "mlflow"

    def __init__(self, run_dir: str | Path, tracking_uri: Optional[str] = None) -> None:
        check_available(self.name)
        self.run_dir = Path(run_dir).resolve()
        self.tracking_uri = tracking_uri
        self.client: Any = None
        self.run_id: Optional[str] = None

    def start(self, run_name: str, config: dict[str, Any], *, resume_from: int = 0) -> None:
        mlflow = require(self.name)
        from mlflow.entities import Param

        self.tracking_uri = self.tracking_uri or mlflow.get_tracking_uri()
        self.client = mlflow.tracking.MlflowClient(self.tracking_uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "assist")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        if resume_from:  # continue the run this directory started, if the store has it
            found = self.client.search_runs([experiment_id], filter_string=f"tags.`assist.run_dir` = '{self.run_dir}'",
                                            order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
                return
        tags = {"assist.run_dir": str(self.run_dir), "assist.strategy": str(config.get("strategy"))}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        params = [Param(key, str(value)[:6000]) for key, value in flat_params(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, row: dict[str, Any], step: int, walltime: Optional[float] = None) -> None:
        from mlflow.entities import Metric

        stamp = int(1000 * (walltime if walltime is not None else time.time()))
        metrics = [Metric(key, value, stamp, step) for key, value in metric_values(row).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, summary: dict[str, Any]) -> None:
        self.client.set_tag(self.run_id, "assist.status", status)
        self.client.set_terminated(self.run_id, status=MLFLOW_STATUS.get(status, "FINISHED"))

    def describe(self) -> str:
        return f"mlflow: run {self.run_id} in {self.tracking_uri}"


def live_wandb_id(run_dir: Path) -> str:
    """Same id when a run resumes, a new one after ``--restart`` (config.yaml is rewritten)."""
    config = run_dir / "config.yaml"
    stamp = config.stat().st_mtime_ns if config.exists() else 0
    return hashlib.sha256(f"{run_dir.resolve()}:{stamp}".encode()).hexdigest()[:16]


class TrackerCallback(Callback):
    """Mirrors a training run into trackers. Registered after the run recorder, so the run
    directory is written first; a tracker that fails mid-run is dropped with a warning (the
    run goes on, and ``assist export`` can fill the tracker afterwards)."""

    def __init__(self, names: Iterable[str], run_dir: str | Path) -> None:
        self.names = list(dict.fromkeys(names))
        for name in self.names:
            check_available(name)
        self.run_dir = Path(run_dir)
        self.trackers: list[Tracker] = []

    def _build(self, name: str) -> Tracker:
        if name == "tensorboard":
            return TensorBoardTracker(self.run_dir / "tensorboard")
        if name == "wandb":
            return WandbTracker(self.run_dir, run_id=live_wandb_id(self.run_dir))
        return MlflowTracker(self.run_dir)

    def _each(self, action: str, call) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as error:  # a tracker must not take the run down with it
                self.trackers.remove(tracker)
                warnings.warn(f"tracker {tracker.name!r} failed to {action} ({type(error).__name__}: {error}); "
                              f"training continues; fill it later with: assist export {self.run_dir} "
                              f"--to {tracker.name}", RuntimeWarning, stacklevel=2)

    def on_train_start(self, trainer: Any, **info: Any) -> None:
        self.trackers = [self._build(name) for name in self.names]
        config = trainer.run.flat(mode="json")
        self._each("start", lambda t: t.start(self.run_dir.name, config, resume_from=trainer.state.epoch))

    def on_epoch_end(self, trainer: Any, *, metrics: dict[str, Any], **info: Any) -> None:
        self._each("log", lambda t: t.log(metrics, step=int(metrics["epoch"])))

    def on_train_end(self, trainer: Any, *, status: str, **info: Any) -> None:
        summary = trainer.summary()
        self._each("finish", lambda t: t.finish(status, summary))


def tracker_callbacks(names: Iterable[str], run_dir: Optional[str | Path]) -> list[Callback]:
    """Callbacks for ``config.trackers`` (empty list: none); checks the packages now."""
    names = list(names)
    if not names:
        return []
    if run_dir is None:
        raise TrackerError(f"trackers {names} mirror a run directory: train with out=... (assist train --out DIR)")
    return [TrackerCallback(names, run_dir)]
