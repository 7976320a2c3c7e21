"""TensorBoard, W&B (offline) and MLflow (SQLite store) mirror a run; export fills them later.

Everything written is read back with each tool's own reader: TensorBoard's
EventAccumulator, W&B's protobuf records from the offline run file, MLflow's client.
"""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from assist.api import train
from assist.cli import main as cli_main
from assist.tracking import RunStore
from assist.tracking.trackers import TrackerError, tracker_callbacks
from conftest import unavailable

_MISSING = [name for name in ("tensorboard", "wandb", "mlflow") if importlib.util.find_spec(name) is None]
if _MISSING:
    unavailable(f"the tracker extras are not installed ({', '.join(_MISSING)}): pip install -e '.[trackers]'",
                module=True)


@pytest.fixture(scope="module")
def tracker_env(tmp_path_factory):
    """One SQLite MLflow store and offline W&B for the whole module (creating the store is slow)."""
    root = tmp_path_factory.mktemp("trackers")
    patch = pytest.MonkeyPatch()
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_SILENT", "true")
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    patch.setenv("MLFLOW_EXPERIMENT_NAME", "assist-tests")
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def tracked_run(tracker_env, toy_data):
    config = {"epochs": 2, "batch_size": 32, "strategy": "batchwise", "rng_seed": 3,
              "trackers": ["tensorboard", "wandb", "mlflow"]}
    result = train(config, out=tracker_env / "run", data=toy_data)
    assert result.summary["status"] == "completed"
    return tracker_env / "run"


def numeric_history(run_dir: Path, key: str) -> list[tuple[int, float]]:
    return [(row["epoch"], row[key]) for row in RunStore(run_dir).read_metrics()]


def assert_series(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [step for step, _ in sorted(got)] == [step for step, _ in expected]
    assert [value for _, value in sorted(got)] == pytest.approx([value for _, value in expected], rel=1e-6)


# ---------------------------------------------------------------- readers
def tensorboard_scalars(logdir: Path, key: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(key)]


def tensorboard_tags(logdir: Path) -> list[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return list(events.Tags()["scalars"])


def wandb_records(run_file: Path) -> list:
    """Records of a W&B transaction log (.wandb): a 7-byte header, then LevelDB-style
    32 KiB blocks of chunks (crc32c: 4 bytes, length: 2, type: 1 full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    records, position, pending, block = [], 7, b"", 32768
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def item_key(item) -> str:
    return item.key or ".".join(item.nested_key)


def wandb_history(run_dir: Path) -> tuple[list[dict], dict]:
    (run_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    history, config = [], {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({item_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "run":
            config.update({item_key(item): json.loads(item.value_json) for item in record.run.config.update})
    return history, config


def mlflow_run(run_dir: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name("assist-tests")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.`assist.run_dir` = '{run_dir.resolve()}'")
    return client, runs


# ---------------------------------------------------------------- live mirroring during training
def test_tensorboard_mirrors_every_epoch(tracked_run):
    assert_series(tensorboard_scalars(tracked_run / "tensorboard", "test/accuracy"),
                  numeric_history(tracked_run, "test_accuracy"))
    assert_series(tensorboard_scalars(tracked_run / "tensorboard", "cost/samples_trained"),
                  numeric_history(tracked_run, "samples_trained"))
    tags = tensorboard_tags(tracked_run / "tensorboard")
    assert tags and all(t.split("/")[0] in ("train", "test", "cost", "system", "optim", "selection") for t in tags)
    assert not any("rng_seed" in t for t in tags)   # the config is logged as parameters only


def test_wandb_offline_run_holds_config_and_metrics(tracked_run):
    history, config = wandb_history(tracked_run)
    logged = [(row["_step"], row["test/loss_mean"]) for row in history if "test/loss_mean" in row]
    assert_series(logged, numeric_history(tracked_run, "test_loss_mean"))
    assert config["strategy"] == "batchwise" and config["batch_size"] == 32


def test_mlflow_store_holds_params_and_metric_history(tracked_run):
    client, runs = mlflow_run(tracked_run)
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.params["strategy"] == "batchwise"
    assert run.data.params["rng_seed"] == "3" and run.data.tags["assist.status"] == "completed"
    history = client.get_metric_history(run.info.run_id, "test/accuracy")
    assert_series([(m.step, m.value) for m in history], numeric_history(tracked_run, "test_accuracy"))


# ---------------------------------------------------------------- export afterwards
def test_export_fills_each_tracker_from_a_run_directory(tracker_env, toy_data, capsys):
    run_dir = tracker_env / "plain"
    train({"epochs": 2, "batch_size": 32, "strategy": "infobatch", "rng_seed": 1}, out=run_dir, data=toy_data)
    assert not (run_dir / "tensorboard").exists()
    cli_main(["export", str(run_dir), "--to", "tensorboard", "--to", "wandb", "--to", "mlflow"])
    expected = numeric_history(run_dir, "train_loss_mean")
    assert_series(tensorboard_scalars(run_dir / "tensorboard", "train/loss_mean"), expected)
    history, _ = wandb_history(run_dir)
    assert_series([(row["_step"], row["train/loss_mean"]) for row in history], expected)
    client, (run,) = mlflow_run(run_dir)
    assert_series([(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss_mean")], expected)
    assert run.data.params["strategy"] == "infobatch"
    # a second TensorBoard export would duplicate the curves: refused unless --force
    with pytest.raises(SystemExit):
        cli_main(["export", str(run_dir), "--to", "tensorboard"])
    assert "already holds TensorBoard events" in capsys.readouterr().err
    cli_main(["export", str(run_dir), "--to", "tensorboard", "--force"])
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_export_of_a_missing_run_directory_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["export", str(tmp_path / "nope"), "--to", "tensorboard"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"assist: error: '{tmp_path / 'nope'}' is not a run directory (no config.yaml)"


# ---------------------------------------------------------------- errors
def test_missing_package_is_a_clear_error_before_the_run_directory_exists(tmp_path, toy_data, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TrackerError, match=r"tracker 'wandb' needs the wandb package: pip install 'assist-sampling\[wandb\]'"):
        train({"epochs": 1, "trackers": ["tensorboard", "wandb"]}, out=tmp_path / "run", data=toy_data)
    assert not (tmp_path / "run").exists()
    with pytest.raises(TrackerError, match="mirror a run directory"):
        tracker_callbacks(["tensorboard"], None)


def test_unknown_tracker_is_a_config_error():
    from assist.api import make_config
    from assist.config import ConfigError

    with pytest.raises(ConfigError, match="trackers"):
        make_config({"trackers": ["neptune"]})


def test_a_failing_tracker_does_not_stop_training(tmp_path, toy_data, monkeypatch):
    from assist.tracking.trackers import TensorBoardTracker

    def broken(self, row, step, walltime=None):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardTracker, "log", broken)
    with pytest.warns(RuntimeWarning, match="tracker 'tensorboard' failed to log .*assist export"):
        result = train({"epochs": 2, "batch_size": 64, "trackers": ["tensorboard"]}, out=tmp_path / "run", data=toy_data)
    assert result.summary["status"] == "completed" and len(RunStore(tmp_path / "run").read_metrics()) == 2


def test_a_resumed_run_continues_its_trackers(tracker_env, toy_data):
    """Killed after epoch 3 with the last checkpoint at epoch 2: the resumed run replaces
    epoch 3 in TensorBoard (purge) and continues the same MLflow run."""
    from assist.events import Callback

    class Crash(Callback):
        def on_epoch_end(self, trainer, *, epoch, **info):
            if epoch == 3:
                raise KeyboardInterrupt("simulated kill")

    run_dir = tracker_env / "resumed"
    config = {"epochs": 4, "batch_size": 32, "checkpoint_every": 2, "trackers": ["tensorboard", "mlflow"]}
    with pytest.raises(KeyboardInterrupt):
        train(config, out=run_dir, data=toy_data, callbacks=[Crash()])
    result = train(config, out=run_dir, data=toy_data)
    assert result.summary["status"] == "completed"
    expected = numeric_history(run_dir, "test_loss_mean")
    assert [step for step, _ in expected] == [1, 2, 3, 4]
    assert_series(tensorboard_scalars(run_dir / "tensorboard", "test/loss_mean"), expected)
    client, runs = mlflow_run(run_dir)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "test/loss_mean")}
    assert steps == {1, 2, 3, 4}


def test_export_names_corrupt_and_lost_metrics_and_can_rebuild_them(tmp_path, toy_data, capsys):
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    train({"epochs": 3, "batch_size": 32, "rng_seed": 1}, out=run_dir, data=toy_data)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "{half a line", lines[2]]) + "\n")
    with pytest.warns(UserWarning) as warned:
        cli_main(["export", str(run_dir), "--to", "tensorboard", "--logdir", str(tmp_path / "tb1")])
    said = " | ".join(str(w.message) for w in warned)
    assert "1 corrupt line(s) of metrics.jsonl skipped (line 2)" in said
    assert "metrics.jsonl holds 2 of the run's 3 epochs" in said and "(2 epochs, completed)" in capsys.readouterr().out
    metrics.unlink()                                       # lost altogether: rebuilt from the checkpoint
    with pytest.warns(UserWarning, match="rebuilt from its newest checkpoint"):
        cli_main(["export", str(run_dir), "--to", "tensorboard", "--logdir", str(tmp_path / "tb2"),
                  "--rebuild-metrics"])
    assert "(3 epochs, completed)" in capsys.readouterr().out
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
