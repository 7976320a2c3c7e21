"""The whole local sweep killed at random moments (SIGKILL, and once Ctrl-C), then finished
by two sweep processes at once: every run completes exactly once, and every run, resumed or
not, equals its uninterrupted reference bit for bit."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import faults_tally
from conftest import deterministic
import torch
import yaml

from assist.api import train
from assist.engine.checkpoint import load_latest_checkpoint
from assist.tracking.locks import lock_holder
from assist.experiments.sweep import plan_sweep
from assist.tracking import RunStore

EPOCHS = 8  # 48 epochs in all: three kills of 1-4 epochs plus a fraction land mid-sweep on a fast machine too
SPEC = {
    "name": "kill-test",
    # num_threads=1: bit-identical results need the same kernels in the workers and in here
    "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": EPOCHS, "batch_size": 2, "learning_rate": 0.01,
             "num_threads": 1},
    "experiments": {
        "none": {},
        "epochwise": {"epoch_filtering": True, "filter": "none", "selector": "top_q", "select_q": 0.5},
        # 3 of each 6 accepted, trained in pairs: one sample carried in the buffer each time
        "batchwise": {"batch_filtering": True, "accumulation_batch_size": 6, "filter": "none",
                      "selector": "top_q", "select_q": 0.5, "overflow": "carry"},
    },
    "seeds": [0, 1],
}
KILLS = 3


# Its sitecustomize makes every epoch of the killed sweeps last at least EPOCH_FLOOR_S: a kill
# comes 1-4 epochs after the test saw progress, with at least 36 epochs (>= 4.5 s on two
# workers) still to go, so it cannot arrive after the sweep finished, on a fast machine either.
HOLD = Path(__file__).resolve().parents[1] / "distributed" / "hold"
EPOCH_FLOOR_S = 0.25


def launch(spec: Path, out: Path, floor: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if floor:
        env.update(ASSIST_TEST_EPOCH_FLOOR_S=str(EPOCH_FLOOR_S),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(HOLD), env.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "assist.cli", "sweep", str(spec), "--out", str(out),
                             "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=env)


def epochs_on_disk(out: Path) -> int:
    return sum(len(RunStore(p).read_metrics()) for p in out.iterdir() if (p / "config.yaml").is_file()) \
        if out.is_dir() else 0


def wait_for_epochs(process: subprocess.Popen, out: Path, count: int, timeout: float = 120.0) -> None:
    """Until the sweep has written ``count`` more epochs (over all runs) than it found."""
    target, deadline = epochs_on_disk(out) + count, time.monotonic() + timeout
    while epochs_on_disk(out) < target:
        assert process.poll() is None, f"the sweep ended before {count} more epochs:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "the sweep made no progress"
        time.sleep(0.005)


def wait_for_locks_free(out: Path, timeout: float = 20.0) -> None:
    """The killed sweep's workers die with it, releasing every run lock."""
    deadline = time.monotonic() + timeout
    while any(lock_holder(path) is not None for path in (out / ".locks").glob("*.lock")):
        assert time.monotonic() < deadline, "a worker of a killed sweep kept its lock"
        time.sleep(0.05)



@pytest.mark.slow
def test_sweep_killed_repeatedly_then_finished_by_two_sweeps(tmp_path: Path, keep_torch_threads):
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    print(f"kill moments drawn with seed {seed}")   # shown with a failure, so that it can be replayed
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    plan = plan_sweep(spec, out)
    assert len(plan.runs) == 6

    # Random moments in terms of progress, so that the kills land mid-sweep on any machine:
    # after 1-4 more epochs (of 48), plus a random fraction of an epoch.
    for cycle in range(KILLS):
        process = launch(spec, out)
        wait_for_epochs(process, out, rng.randint(1, 4))
        time.sleep(rng.uniform(0.0, 0.03))
        if cycle == 1:  # Ctrl-C as a terminal sends it: to the whole process group
            os.killpg(process.pid, signal.SIGINT)
            output = process.communicate(timeout=60)[0]
            assert process.returncode == 130, output
            assert "rerun the same command to resume" in output
        else:
            process.send_signal(signal.SIGKILL)
            process.wait()
        wait_for_locks_free(out)
    unfinished = [r for r in plan.runs if not RunStore(out / r.name).finished]
    assert unfinished, f"(seed {seed}) the kills came too late: every run had already finished"

    # finish with two sweeps on the same directory at once
    finishers = [launch(spec, out, floor=False), launch(spec, out, floor=False)]
    outputs = [p.communicate(timeout=300)[0] for p in finishers]
    assert [p.returncode for p in finishers] == [0, 0], outputs
    completed = len(re.findall(r"^\[\s*\d+/\d+\] completed ", "\n".join(outputs), flags=re.MULTILINE))
    assert completed == len(unfinished), outputs  # no run was trained by both finishers

    resumed = 0
    for run in plan.runs:
        path = out / run.name
        store = RunStore(path)
        log = (path / "train.log").read_text()
        assert store.read_summary()["status"] == "completed"
        assert log.count("end: completed") == 1, log
        resumed += "resume from epoch" in log
        reference = train(run.config, out=tmp_path / "ref" / run.name)
        rows = store.read_metrics()
        assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
        assert deterministic(rows) == deterministic(reference.history), f"(seed {seed}) {run.name} differs from its reference"
        final = load_latest_checkpoint(path / "checkpoints")["model"]
        expected = load_latest_checkpoint(tmp_path / "ref" / run.name / "checkpoints")["model"]
        assert all(torch.equal(final[k], expected[k]) for k in expected), run.name
    faults_tally.count("kills", KILLS)
    faults_tally.count("kills_identical", KILLS)  # every run of every killed sweep ended identical
    print(f"kill/resume cycles: {KILLS}, runs resumed from a checkpoint: {resumed}, seed {seed}")
    assert resumed >= 1, f"(seed {seed}) no run was resumed from a checkpoint"
