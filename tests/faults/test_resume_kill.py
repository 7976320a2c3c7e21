"""A run killed at any moment resumes from its last checkpoint and ends bit-identical to an
uninterrupted run: `assist train` is SIGKILLed mid-epoch and rerun with the same command."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import faults_tally
from conftest import deterministic

from assist.api import train
from assist.cli import main, resolve_values
from assist.api import make_config
from assist.engine.checkpoint import checkpoint_paths, load_latest_checkpoint
from assist.events import Callback
from assist.tracking import RunDirError, RunStore

# One thread: results must not depend on thread scheduling, and the shared test machine is busy.
COMMON = ["dataset=synthetic", "model=fcnet16", "epochs=6", "learning_rate=0.01", "rng_seed=7", "num_threads=1"]
# Selecting the top half keeps every epoch equally long (a hard filter soon accepts almost
# nothing on this easy data, leaving epochs too short to be killed in); batch_size=3 with
# overflow=carry leaves samples in the accumulation buffer across steps and checkpoints.
STRATEGIES = {
    "archetype": ["batch_size=1"],
    "epochwise": ["batch_size=1", "epoch_filtering=true", "filter=none", "selector=top_q", "select_q=0.5"],
    "batchwise_accumulation": ["batch_size=3", "batch_filtering=true", "accumulation_batch_size=8", "filter=none",
                               "selector=top_q", "select_q=0.5", "overflow=carry"],
}
def assert_same_run(path: Path, reference: Path) -> None:
    run, ref = RunStore(path), RunStore(reference)
    assert run.read_summary()["status"] == "completed"
    assert deterministic(run.read_metrics()) == deterministic(ref.read_metrics())
    weights = load_latest_checkpoint(path / "checkpoints")
    expected = load_latest_checkpoint(reference / "checkpoints")
    assert weights["state"]["epoch"] == expected["state"]["epoch"]
    for name, tensor in expected["model"].items():
        assert torch.equal(weights["model"][name], tensor), f"weight {name} differs"
    for key in ("generators", "accumulator", "strategy"):
        assert repr(weights[key]) == repr(expected[key]), f"checkpointed {key} differs"


def reference_run(args: list[str], out: Path) -> Path:
    train(make_config(resolve_values(None, tuple(args))), out=out)
    return out


def launch(args: list[str], out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "assist.cli", "train", "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def kill_mid_epoch(processes: dict[str, subprocess.Popen], dirs: dict[str, Path], timeout: float = 180.0) -> None:
    """SIGKILL each process halfway through its third epoch: two epochs and their checkpoints
    are on disk, and the epoch time is taken from the metrics it wrote."""
    deadline = time.monotonic() + timeout
    kill_at: dict[str, float] = {}
    while len(kill_at) < len(processes) or any(p.poll() is None for p in processes.values()):
        assert time.monotonic() < deadline, f"runs {sorted(set(processes) - set(kill_at))} never reached epoch 2"
        now = time.monotonic()
        for name, process in processes.items():
            if process.poll() is not None:
                if name not in kill_at:
                    pytest.fail(f"{name} exited before it could be killed:\n{process.stdout.read()}")
                continue
            if name not in kill_at:
                rows = RunStore(dirs[name]).read_metrics()
                if len(rows) >= 2:
                    kill_at[name] = now + 0.5 * rows[1]["epoch_time_s"]
            elif now >= kill_at[name]:
                process.send_signal(signal.SIGKILL)
                process.wait()
        time.sleep(0.002)



def test_sigkill_mid_epoch_then_rerun_is_bit_identical(tmp_path: Path, keep_torch_threads):
    dirs = {name: tmp_path / name for name in STRATEGIES}
    processes = {name: launch(COMMON + extra, dirs[name]) for name, extra in STRATEGIES.items()}
    kill_mid_epoch(processes, dirs)
    for name, path in dirs.items():
        store = RunStore(path)
        assert not store.finished, f"{name} finished before the kill: the test did not interrupt it"
        assert 2 <= len(store.read_metrics()) < 6
        assert checkpoint_paths(path / "checkpoints"), f"{name} has no checkpoint to resume from"
    for name, extra in STRATEGIES.items():
        main(["train", "--out", str(dirs[name]), *COMMON, *extra])  # the same command again, in-process
        log = (dirs[name] / "train.log").read_text()
        assert "resume from epoch" in log, log
        faults_tally.count("kills")
        assert_same_run(dirs[name], reference_run(COMMON + extra, tmp_path / f"ref-{name}"))
        faults_tally.count("kills_identical")


class KillAt(Callback):
    """Simulates a kill mid-epoch: an exception the trainer does not catch."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch, self.seen = epoch, batch, 0

    def on_batch_end(self, trainer, **info) -> None:
        if trainer.state.epoch + 1 == self.epoch:
            self.seen += 1
            if self.seen == self.batch:
                raise SystemExit("simulated kill")


def test_corrupt_checkpoint_falls_back_and_config_and_restart_rules(tmp_path: Path, capsys, keep_torch_threads):
    args = COMMON + STRATEGIES["batchwise_accumulation"]
    config = make_config(resolve_values(None, tuple(args)))
    reference = reference_run(args, tmp_path / "ref")
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(config, out=run, callbacks=[KillAt(epoch=4, batch=5)])
    newest = checkpoint_paths(run / "checkpoints")
    assert [int(p.stem.split("-")[1]) for p in newest] == [3, 2]
    newest[0].write_bytes(newest[0].read_bytes()[:100])  # a truncated copy
    # a different config is refused, naming the run directory and the changed key
    with pytest.raises(RunDirError, match="different config .*learning_rate: 0.01 -> 0.1"):
        train(config.model_copy(update={"learning_rate": 0.1}), out=run)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(run), *args[:-1], "learning_rate=0.1"])
    assert exit_info.value.code == 2
    assert "holds an unfinished run with a different config" in capsys.readouterr().err
    # same config: resumes from the previous (epoch 2) checkpoint, with a warning
    with pytest.warns(UserWarning, match="epoch-00003.pt is not usable .checksum mismatch.*trying the previous one"):
        train(config, out=run)
    assert "resume from epoch 2" in (run / "train.log").read_text()
    assert_same_run(run, reference)
    # a finished run is not resumed; --restart starts it over
    with pytest.raises(RunDirError, match="holds a completed run"):
        train(config, out=run)
    shutil.rmtree(run / "checkpoints")
    main(["train", "--out", str(run), "--restart", *args])
    assert "resume" not in (run / "train.log").read_text()
    assert_same_run(run, reference)
