"""Faults of a data-parallel run (`assist train --nproc 2`, gloo on CPU; docs/distributed.md):
a rank that dies or a launcher that is stopped ends in one line and resumes with the same
command; a run resumed on another number of processes says it will not repeat its
uninterrupted twin exactly. Kills land at held points (tests/distributed/hold)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from assist.cli import main
from assist.engine.checkpoint import load_latest_checkpoint
from assist.tracking import RunStore

HOLD = Path(__file__).resolve().parents[1] / "distributed" / "hold"
RUN = ["dataset=synthetic", "model=fcnet16", "batch_size=16", "rng_seed=4", "num_threads=1"]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    if extra:   # the hold: tests/distributed/hold/sitecustomize.py
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HOLD), env.get("PYTHONPATH")]))
    return env


def command(out: Path, nproc: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "assist", "train", "--nproc", str(nproc), "--out", str(out), f"epochs={epochs}", *RUN]


def start(out: Path, epochs: int, **hold: str) -> subprocess.Popen:
    return subprocess.Popen(command(out, 2, epochs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment(**hold), start_new_session=True)


def wait_for_checkpoint(process: subprocess.Popen, out: Path, epoch: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not (out / "checkpoints" / f"epoch-{epoch:05d}.pt").exists():   # renamed in whole, after its digest
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the two-process run never finished epoch {epoch}"
        time.sleep(0.02)


def ranks(process: subprocess.Popen) -> dict[int, psutil.Process]:
    found = {}
    for child in psutil.Process(process.pid).children(recursive=True):
        env = child.environ()
        if "RANK" in env and "WORLD_SIZE" in env:
            found[int(env["RANK"])] = child
    return found


def one_line(stderr: str, prefix: str) -> str:
    """The one line a stopped run prints (besides its progress lines), and nothing else."""
    assert "Traceback" not in stderr and "torch.distributed" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("assist:")]
    assert len(said) == 1 and said[0].startswith(prefix), stderr
    assert len(stderr.splitlines()) <= 3 + 1, stderr   # at most the epochs' progress lines and it
    return said[0]


def finish(out: Path, epochs: int) -> None:
    """The same command again: it resumes (saying so in train.log), on as many processes as
    the run trained on (no warning), and completes."""
    done = subprocess.run(command(out, 2, epochs), capture_output=True, text=True, timeout=180, env=environment())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "assist: warning" not in done.stderr, done.stderr
    store = RunStore(out)
    assert store.read_summary()["status"] == "completed" and len(store.read_metrics()) == epochs
    assert "resume from epoch 1" in (out / "train.log").read_text()
    assert all(row["world_size"] == 2 for row in store.read_metrics())


def test_a_dead_rank_is_one_line_and_the_run_resumes(tmp_path):
    """Rank 1 is SIGKILLed while rank 0 waits for it in a collective: one `assist: error:` line
    naming rank 1 and its signal, exit 1, where the survivor's traceback and the elastic
    agent's log used to make 50-60 lines; the same command resumes and completes."""
    out = tmp_path / "run"
    victim = start(out, 2, ASSIST_TEST_HOLD_AFTER_EPOCH="1", ASSIST_TEST_HOLD_RANK="1")
    wait_for_checkpoint(victim, out, 1)
    held = ranks(victim)
    assert sorted(held) == [0, 1]
    time.sleep(0.3)   # rank 0 is in epoch 2's first collective, waiting for the held rank 1
    held[1].send_signal(signal.SIGKILL)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == 1, stderr
    line = one_line(stderr, "assist: error: ")
    assert "rank 1 of 2 died (SIGKILL)" in line and "after epoch 1's checkpoint" in line, line
    assert "rerun the same command to resume" in line, line
    finish(out, 2)


def test_a_stopped_launcher_is_one_line_and_a_resume_on_fewer_processes_warns(tmp_path, keep_torch_threads):
    """SIGTERM of `assist train --nproc 2` (rank 0 held after epoch 1's checkpoint): one line,
    exit 143. Copies of the stopped run resumed on one process warn in one line naming both
    counts (the checkpoint records the count; one written before it did still loads, its
    count read from its metrics); the run itself resumes with the same command, unwarned."""
    out = tmp_path / "run"
    victim = start(out, 2, ASSIST_TEST_HOLD_AFTER_EPOCH="1")
    wait_for_checkpoint(victim, out, 1)
    victim.send_signal(signal.SIGTERM)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == 143, stderr
    one_line(stderr, "assist: interrupted (SIGTERM) after epoch 1's checkpoint; rerun the same command to resume")
    assert load_latest_checkpoint(out / "checkpoints")["world_size"] == 2

    fewer, old = tmp_path / "fewer", tmp_path / "old"
    shutil.copytree(out, fewer)
    without_world_size(out, old)   # the same run as an older ASSIST left it
    for path in (fewer, old):
        with pytest.warns(UserWarning) as caught:
            main(["train", "--out", str(path), "epochs=2", *RUN])
        said = [str(w.message) for w in caught if "process" in str(w.message)]
        assert len(said) == 1 and "\n" not in said[0], said
        assert "trained on 2 processes and resumes on 1 process" in said[0], said
        assert "will not repeat the uninterrupted one exactly" in said[0], said
        assert RunStore(path).read_summary()["status"] == "completed"
        assert load_latest_checkpoint(path / "checkpoints")["world_size"] == 1
    finish(out, 2)


def test_resuming_on_the_same_number_of_processes_does_not_warn(tmp_path, keep_torch_threads, recwarn):
    """One process, killed after its first epoch's checkpoint (here: its second epoch's
    checkpoint removed), resumed on one: no warning about processes."""
    out = tmp_path / "run"
    main(["train", "--out", str(out), "epochs=2", *RUN])
    store = RunStore(out)
    (out / "summary.json").unlink()
    for name in ("epoch-00002.pt", "epoch-00002.pt.sha256"):
        (out / "checkpoints" / name).unlink()
    store.rewrite_metrics(store.read_metrics()[:1])
    main(["train", "--out", str(out), "epochs=2", *RUN])
    assert not [w for w in recwarn if "process" in str(w.message)], [str(w.message) for w in recwarn]
    assert store.read_summary()["status"] == "completed"


def without_world_size(run: Path, copy: Path) -> None:
    """A copy of ``run`` whose checkpoint lacks the ``world_size`` entry (with a matching digest)."""
    from assist.tracking.checkpoints import save_checkpoint

    shutil.copytree(run, copy)
    for stale in (copy / "checkpoints").iterdir():
        stale.unlink()
    state = load_latest_checkpoint(run / "checkpoints")
    del state["world_size"]
    save_checkpoint(copy / "checkpoints", 1, state)
    assert "world_size" not in torch.load(copy / "checkpoints" / "epoch-00001.pt", weights_only=True)


def test_the_launcher_names_the_rank_that_ended_by_itself(tmp_path):
    """Which rank the one line names, from the launcher's failures (in the order it saw them):
    a rank killed by a signal, not the survivors that lost it (PEER_LOST) nor those the
    launcher stopped afterwards (SIGTERM); a rank that exited with a status of its own said
    why already (no line, its status); ranks that all lost contact say what they saw."""
    import json

    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    from assist.launch import PEER_LOST, dead_rank

    said = tmp_path / "error.json"
    said.write_text(json.dumps({"message": "Connection reset by peer", "timestamp": 0}))

    def ended(rank: int, code: int, error_file: Path = tmp_path / "none") -> ProcessFailure:
        return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=code, error_file=str(error_file))

    assert dead_rank({0: ended(0, PEER_LOST), 1: ended(1, -9)}, 2) == ("rank 1 of 2 died (SIGKILL)", 1)
    assert dead_rank({2: ended(2, -11), 0: ended(0, -15), 1: ended(1, -15)}, 3) == ("rank 2 of 3 died (SIGSEGV)", 1)
    # gloo aborted the survivor (seen once in 8 quiet passes of the fault suite): not the cause
    assert dead_rank({0: ended(0, -6), 1: ended(1, -9)}, 2) == ("rank 1 of 2 died (SIGKILL)", 1)
    assert dead_rank({1: ended(1, -6), 0: ended(0, -15)}, 2) == ("rank 1 of 2 died (SIGABRT)", 1)
    # a rank SIGTERMed from outside: seen first, before the launcher stopped the other one
    assert dead_rank({1: ended(1, -15), 0: ended(0, -15)}, 2) == ("rank 1 of 2 died (SIGTERM)", 1)
    assert dead_rank({0: ended(0, 2), 1: ended(1, 2)}, 2) == (None, 2)
    assert dead_rank({0: ended(0, PEER_LOST, said), 1: ended(1, PEER_LOST)}, 2) == \
        ("rank 0 of 2 lost contact with the other ranks (Connection reset by peer)", 1)
