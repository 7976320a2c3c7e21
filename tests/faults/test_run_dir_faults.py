"""Run directories under faults: foreign directories, two writers, a full disk, corrupt and
wrong checkpoints, kills while files are written. Each case ends in one line and an intact
last good state, and a resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import faults_tally
from conftest import deterministic
from assist.api import make_config, train
from assist.cli import main
from assist.engine.checkpoint import checkpoint_paths, digest_path
from assist.events import Callback
from assist.files import PART_SUFFIX
from assist.tracking import RunStore

ARGS = ["dataset=synthetic", "model=fcnet16", "epochs=5", "batch_size=8", "rng_seed=3", "num_threads=1"]


pytestmark = pytest.mark.usefixtures("keep_torch_threads")


def cli(args: list[str], capsys) -> tuple[int, str]:
    """Run ``assist`` in-process: exit code and stderr."""
    capsys.readouterr()
    try:
        main(args)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    return code, capsys.readouterr().err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line
             and not line.startswith("  ")]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("assist: error:")]
    assert len(errors) == 1, err
    return errors[0]


def config(**changes):
    values = dict(item.split("=", 1) for item in ARGS)
    values.update({k: str(v) for k, v in changes.items()})
    from assist.cli import resolve_values

    return make_config(resolve_values(None, tuple(f"{k}={v}" for k, v in values.items())))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train(config(), out=out)
    return out


def assert_identical(run: Path, reference: Path) -> None:
    store = RunStore(run)
    assert store.read_summary()["status"] == "completed"
    assert deterministic(store.read_metrics()) == deterministic(RunStore(reference).read_metrics())
    mine = torch.load(checkpoint_paths(run / "checkpoints")[0], weights_only=True)["model"]
    theirs = torch.load(checkpoint_paths(reference / "checkpoints")[0], weights_only=True)["model"]
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


class CrashAfter(Callback):
    """An uncaught error after epoch ``epoch`` was recorded and checkpointed (as a kill would)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, *, epoch: int, **info) -> None:
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


def crashed_run(path: Path, epoch: int = 3) -> Path:
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config(), out=path, callbacks=[CrashAfter(epoch)])
    return path


def no_leftovers(path: Path) -> None:
    left = [p for p in path.rglob(f"*{PART_SUFFIX}")] + [p for p in path.rglob("*.tmp")]
    assert not left, left


# ------------------------------------------------------------------ 1. marker and --restart
def test_restart_refuses_a_directory_assist_did_not_write(tmp_path, capsys):
    p = tmp_path / "p"
    (p / "src").mkdir(parents=True)
    (p / "src" / "notes.txt").write_text("keep")
    (p / "config.yaml").write_text("lr: 1\n")
    code, err = cli(["train", *ARGS, "--out", str(p), "--restart"], capsys)
    assert code == 2
    assert "holds files that are not an ASSIST run" in one_line(err)
    assert (p / "src" / "notes.txt").read_text() == "keep"
    assert (p / "config.yaml").read_text() == "lr: 1\n"
    assert sorted(x.name for x in p.iterdir()) == ["config.yaml", "src"]  # not even a lock file
    code, err = cli(["train", *ARGS, "--out", str(p)], capsys)  # without --restart: not "an unfinished run"
    assert code == 2 and "not an ASSIST run" in one_line(err) and "unfinished" not in err


def test_restart_clears_only_what_assist_wrote(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run")
    assert RunStore(run).marked
    (run / "notes.txt").write_text("mine")
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)  # resumes: fine
    assert code == 0, err
    code, err = cli(["train", *ARGS, "--out", str(run), "--restart"], capsys)
    assert code == 0, err
    assert (run / "notes.txt").read_text() == "mine"
    assert "resume" not in (run / "train.log").read_text()
    assert_identical(run, reference)


def test_a_run_from_before_the_marker_resumes_and_is_adopted(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run")
    (run / RunStore.MARKER).unlink()
    for sidecar in (run / "checkpoints").glob("*.sha256"):
        sidecar.unlink()  # the first landing wrote neither
    assert RunStore(run).is_run()
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert code == 0, err
    assert RunStore(run).marked
    assert_identical(run, reference)


# ------------------------------------------------------------------ 2. one writer per directory
def test_a_second_train_on_the_same_directory_stops_at_once(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from assist.tracking import RunStore
        lock = RunStore({str(run)!r}).lock()
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
        assert time.monotonic() - started < 10
        assert code == 2
        assert f"in use by PID {holder.pid} on" in one_line(err)
        assert not (run / RunStore.METRICS).exists()
    finally:
        holder.kill()
        holder.wait()
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)  # the holder died: the lock went with it
    assert code == 0, err


def test_two_concurrent_trains_never_both_train(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "assist.cli", "train", *ARGS, "epochs=100000", "--out", str(run)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not RunStore(run).read_metrics() and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2 and "is in use by PID" in second.stderr, second.stderr
    epochs = [row["epoch"] for row in RunStore(run).read_metrics()]
    assert epochs == list(range(1, len(epochs) + 1))  # one writer: no epoch twice


# ------------------------------------------------------------------ 3. disk full
def _fail_fsync_for(monkeypatch, pattern: str) -> list[str]:
    """os.fsync raises ENOSPC for files whose name contains ``pattern`` (where a full disk
    shows itself on most file systems: the data is allocated when it is flushed)."""
    real, hits = os.fsync, []

    def fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if pattern in Path(name).name:
            hits.append(name)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return hits


@pytest.mark.parametrize("victim", ["epoch-00003.pt", "summary.json", "config.yaml"])
def test_disk_full_is_one_line_keeps_the_last_state_and_resumes(tmp_path, capsys, monkeypatch, reference, victim):
    run = tmp_path / "run"
    faults_tally.count("storage_faults")
    hits = _fail_fsync_for(monkeypatch, victim)
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert hits, f"{victim} was never written"
    assert code == 1
    line = one_line(err)
    assert line.startswith("assist: error: no space left on device writing ") and victim in line
    no_leftovers(run)
    monkeypatch.undo()  # space freed
    if victim == "config.yaml":  # nothing was written but the marker: the run starts cleanly
        assert not (run / "config.yaml").exists()
    elif victim == "summary.json":
        assert not RunStore(run).finished and len(RunStore(run).read_metrics()) == 5
    else:
        assert [int(p.stem[-5:]) for p in checkpoint_paths(run / "checkpoints")] == [2, 1]
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert code == 0, err
    assert_identical(run, reference)
    faults_tally.count("storage_clean")


def test_disk_full_while_appending_a_metrics_line_leaves_no_half_line(tmp_path, capsys, monkeypatch, reference):
    run = tmp_path / "run"
    faults_tally.count("storage_faults")
    real_write, calls = os.write, []

    def write(fd: int, data) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(RunStore.METRICS):
            calls.append(fd)
            if len(calls) == 3:  # the third epoch's line: half of it lands, then the disk is full
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    monkeypatch.undo()
    assert code == 1 and "no space left on device writing" in one_line(err)
    text = (run / RunStore.METRICS).read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 2  # cut back to the last whole line
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert code == 0, err
    assert_identical(run, reference)
    faults_tally.count("storage_clean")


MOUNT_SCRIPT = """
set -e
mount -t tmpfs -o size=256k tmpfs "$DISK"
set +e
"$PY" -m assist.cli train $ARGS --out "$DISK/run" 2> "$OUT/first.err"
echo $? > "$OUT/first.rc"
ls -a "$DISK/run" "$DISK/run/checkpoints" > "$OUT/listing" 2>&1
mount -o remount,size=8m "$DISK"
"$PY" -m assist.cli train $ARGS --out "$DISK/run" 2> "$OUT/second.err"
echo $? > "$OUT/second.rc"
cp -r "$DISK/run" "$OUT/run"
"""


def test_a_real_full_file_system(tmp_path, reference):
    """A 256 KiB tmpfs in a user namespace (no root needed where user namespaces are allowed):
    fcnet100's checkpoints fill it on the third epoch."""
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:  # the injected faults above still run everywhere
        pytest.skip("this machine does not allow user namespaces to mount a small tmpfs")
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    args = " ".join(ARGS + ["model=fcnet100"])
    env = {**os.environ, "DISK": str(disk), "OUT": str(out), "PY": sys.executable, "ARGS": args}
    subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", MOUNT_SCRIPT],
                   env=env, check=True, timeout=300)
    faults_tally.count("storage_faults")
    first = (out / "first.err").read_text()
    assert (out / "first.rc").read_text().strip() == "1", first
    assert one_line(first).startswith("assist: error: no space left on device writing ")
    assert PART_SUFFIX not in (out / "listing").read_text()
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()
    expected = tmp_path / "reference100"
    train(config(model="fcnet100"), out=expected)
    assert_identical(out / "run", expected)
    faults_tally.count("storage_clean")


# ------------------------------------------------------------------ 4, 5. checkpoints
def test_a_flipped_byte_falls_back_to_the_previous_checkpoint(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run")
    newest = checkpoint_paths(run / "checkpoints")[0]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0x01
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"epoch-00003\.pt is not usable \(checksum mismatch"):
        train(config(), out=run)
    assert "resume from epoch 2" in (run / "train.log").read_text()
    assert_identical(run, reference)


def test_wrong_structures_fall_back_through_every_older_checkpoint(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run", epoch=3)
    newest, older = checkpoint_paths(run / "checkpoints")
    torch.save({"foo": 1}, newest)
    digest_path(newest).unlink()
    with pytest.warns(UserWarning, match=r"epoch-00003\.pt is not usable \(lacks model"):
        train(config(), out=run)
    assert "resume from epoch 2" in (run / "train.log").read_text()
    assert_identical(run, reference)


def test_a_checkpoint_that_does_not_fit_the_model_is_skipped(tmp_path, reference):
    run = crashed_run(tmp_path / "run", epoch=3)
    newest = checkpoint_paths(run / "checkpoints")[0]
    state = torch.load(newest, weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = torch.zeros(3, 3)
    torch.save(state, newest)
    digest_path(newest).unlink()
    with pytest.warns(UserWarning, match=r"epoch-00003\.pt does not fit this run"):
        train(config(), out=run)
    assert_identical(run, reference)


def test_no_usable_checkpoint_is_said_plainly_and_nothing_is_touched(tmp_path, capsys):
    run = crashed_run(tmp_path / "run", epoch=3)
    for path in checkpoint_paths(run / "checkpoints"):
        path.write_bytes(b"garbage")
    before = (run / RunStore.METRICS).read_bytes()
    with pytest.warns(UserWarning) as caught:
        code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert code == 2
    assert "no usable checkpoint in" in one_line(err) and "--restart" in err
    messages = [str(w.message) for w in caught]
    assert "trying the previous one" in messages[0] and "no older checkpoint is left" in messages[-1]
    assert (run / RunStore.METRICS).read_bytes() == before


def test_leftovers_of_a_kill_during_a_checkpoint_write_are_harmless(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run", epoch=3)
    checkpoints = run / "checkpoints"
    newest = checkpoint_paths(checkpoints)[0]
    # killed after the digest of epoch 4 and halfway through its data: what the writer leaves
    (checkpoints / "epoch-00004.pt.sha256").write_text(hashlib.sha256(b"x").hexdigest() + "  epoch-00004.pt\n")
    (checkpoints / f".epoch-00004.pt.k1ll3d{PART_SUFFIX}").write_bytes(newest.read_bytes()[:500])
    (run / f".metrics.jsonl.zz{PART_SUFFIX}").write_text('{"epoch": 1')
    code, err = cli(["train", *ARGS, "--out", str(run)], capsys)
    assert code == 0, err
    no_leftovers(run)
    assert_identical(run, reference)


# ------------------------------------------------------------------ kills at random moments
def test_random_sigkills_including_during_writes_resume_bit_identically(tmp_path):
    """A run with checkpoints every epoch is killed again and again at random moments; the
    kills that find a temporary file on disk landed during a write."""
    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    args = [*ARGS, "model=fcnet100", "epochs=40"]
    run = tmp_path / "run"
    command = [sys.executable, "-m", "assist.cli", "train", *args, "--out", str(run)]
    kills = 0
    for _ in range(6):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        done = len(RunStore(run).read_metrics())
        target = done + rng.randint(1, 5)
        deadline = time.monotonic() + 120
        while len(RunStore(run).read_metrics()) < target and process.poll() is None:
            assert time.monotonic() < deadline, f"(seed {seed}) no progress"
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.02))
        if process.poll() is not None:
            break  # it finished first
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        if list(run.rglob(f"*{PART_SUFFIX}")):
            faults_tally.count("kills_in_write")
    finish = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert kills >= 3, f"(seed {seed}) the run finished before enough kills"
    faults_tally.count("kills", kills)
    expected = tmp_path / "reference"
    train(config(model="fcnet100", epochs=40), out=expected)
    assert_identical(run, expected)
    assert [row["epoch"] for row in RunStore(run).read_metrics()] == list(range(1, 41))
    faults_tally.count("kills_identical", kills)
    no_leftovers(run)


# ------------------------------------------------------------------ 6. one bad run directory
@pytest.fixture
def two_runs(tmp_path) -> Path:
    root = tmp_path / "sweep"
    train(config(epochs=1), out=root / "good-aaaa")
    train(config(epochs=1, rng_seed=4), out=root / "bad-bbbb")
    return root


def test_status_export_and_report_carry_on_past_a_bad_run(two_runs, capsys):
    bad = two_runs / "bad-bbbb"
    (bad / "config.yaml").write_text("epochs: [1,\n")
    capsys.readouterr()
    try:
        main(["status", str(two_runs)])
    except SystemExit as stop:
        assert stop.code in (0, None)
    out = capsys.readouterr().out
    assert "broken" in out and str(bad / "config.yaml") in out and "done" in out, out
    # resume of the bad run (unfinished, its config corrupt): one line naming the file
    summary_text = (bad / "summary.json").read_text()
    (bad / "summary.json").unlink()
    code, err = cli(["train", *ARGS, "epochs=1", "rng_seed=4", "--out", str(bad)], capsys)
    assert code == 2 and str(bad / "config.yaml") in one_line(err)
    # report: a summary whose "final" is not a mapping is read with a warning
    (bad / "config.yaml").write_text((two_runs / "good-aaaa" / "config.yaml").read_text())
    summary = json.loads(summary_text)
    (bad / "summary.json").write_text(json.dumps({**summary, "final": [1, 2]}))
    code, err = cli(["report", str(two_runs), "--out", str(two_runs.parent / "report"), "--format", "md"], capsys)
    assert code == 0, err
    assert (two_runs.parent / "report").is_dir()


def test_export_names_the_bad_run_and_exports_the_good_one(two_runs, capsys):
    import importlib.util

    from conftest import unavailable

    if importlib.util.find_spec("tensorboard") is None:
        unavailable("needs the tensorboard extra: pip install -e '.[tensorboard]'")
    (two_runs / "bad-bbbb" / "config.yaml").write_text("epochs: [1,\n")
    code, err = cli(["export", str(two_runs / "bad-bbbb"), str(two_runs / "good-aaaa"), "--to", "tensorboard"], capsys)
    assert code == 1
    assert "bad-bbbb" in err and "1 of 2 run directories not exported" in err
    assert (two_runs / "good-aaaa" / "tensorboard").is_dir()


def test_a_sweep_names_a_broken_run_and_runs_the_others(tmp_path, capsys):
    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "two", "seeds": [0, 1], "experiments": {"none": {}},
                                    "base": {"dataset": "synthetic", "model": "fcnet16", "epochs": 1,
                                             "batch_size": 16, "num_threads": 1}}))
    out = tmp_path / "out"
    code, err = cli(["sweep", str(spec), "--out", str(out), "--workers", "1"], capsys)
    assert code == 0, err
    first, second = sorted(p for p in out.iterdir() if (p / "config.yaml").is_file())
    (first / "config.yaml").write_text("epochs: [1,\n")
    (first / "summary.json").unlink()
    shutil.rmtree(second)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["sweep", str(spec), "--out", str(out), "--workers", "1"])
    captured = capsys.readouterr()
    assert stop.value.code == 1
    assert f"broken: {first.name}: {first / 'config.yaml'}" in captured.err.replace("  ", " ").replace("  ", " ")
    assert "Traceback" not in captured.err + captured.out
    assert RunStore(second).read_summary()["status"] == "completed"
    assert (first / "config.yaml").read_text() == "epochs: [1,\n"  # left as it was


# ------------------------------------------------------------------ a lost config.yaml, a rerun
def test_a_run_that_lost_its_config_is_rebuilt_from_its_checkpoint_not_wiped(tmp_path, capsys, reference):
    run = crashed_run(tmp_path / "run")
    (run / "config.yaml").unlink()
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.warns(UserWarning, match="config.yaml was missing; rebuilt from checkpoint epoch-00003.pt"):
        code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 0, err
    assert "resume from epoch 3" in (run / "train.log").read_text()
    assert_identical(run, reference)
    assert kept["assist-run.json"] == (run / "assist-run.json").read_bytes()
    # a finished run that lost it: rebuilt, and the same command has nothing to do
    (run / "config.yaml").unlink()
    summary = (run / "summary.json").read_bytes()
    with pytest.warns(UserWarning, match="rebuilt from checkpoint"):
        code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 0 and (run / "summary.json").read_bytes() == summary and (run / "config.yaml").is_file()


def test_a_run_that_lost_its_config_and_checkpoints_is_refused_untouched(tmp_path, capsys):
    run = crashed_run(tmp_path / "run")
    (run / "config.yaml").unlink()
    shutil.rmtree(run / "checkpoints")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 2 and "lost its config.yaml and no checkpoint carries one; nothing was changed" in one_line(err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # a directory holding only the marker (killed while being created) still starts afresh
    only_marker = tmp_path / "fresh"
    only_marker.mkdir()
    shutil.copy(run / "assist-run.json", only_marker / "assist-run.json")
    assert cli(["train", "--out", str(only_marker), *ARGS], capsys)[0] == 0


def test_a_sweep_keeps_an_unfinished_run_that_lost_its_config(tmp_path, capsys):
    import yaml

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "lost", "base": dict(item.split("=", 1) for item in ARGS) | {"epochs": 5,
                                                                                                        "batch_size": 8}}))
    from assist.experiments.sweep import plan_sweep

    plan = plan_sweep(spec, tmp_path / "out")
    run = plan.runs[0]
    path = tmp_path / "out" / run.name
    crashed_run(path)
    (path / "config.yaml").unlink()
    code, err = cli(["sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert code == 0, err
    assert "resume from epoch 3" in (path / "train.log").read_text()
    assert RunStore(path).read_summary()["status"] == "completed"


def test_rerunning_a_completed_runs_command_is_no_error(tmp_path, capsys, reference):
    run = tmp_path / "run"
    train(config(), out=run)
    metrics = (run / "metrics.jsonl").read_bytes()
    code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 0 and not err.strip()
    code, err = cli(["train", "--out", str(run), *ARGS[:-1], "num_threads=1", "learning_rate=0.2"], capsys)
    assert code == 2 and "holds a completed run of another config" in one_line(err)
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_a_checkpoint_copied_in_from_another_run_is_skipped(tmp_path, reference):
    run = crashed_run(tmp_path / "run")                       # checkpoints of epochs 1-3
    other = tmp_path / "other"
    train(config(rng_seed=4), out=other)
    for name in ("epoch-00004.pt", "epoch-00004.pt.sha256"):  # a valid file with a valid sidecar
        shutil.copy(other / "checkpoints" / name, run / "checkpoints" / name)
    with pytest.warns(UserWarning, match=r"epoch-00004.pt was written by another run .*rng_seed"):
        train(config(), out=run)
    assert "resume from epoch 3" in (run / "train.log").read_text()
    assert_identical(run, reference)


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_signal_ends_a_run_with_where_it_stands_and_the_rerun_says_it_resumed(tmp_path, name, code):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "assist.cli", "train", "--out", str(run), "dataset=synthetic", "model=fcnet16",
            "epochs=300", "batch_size=2", "num_threads=1"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while len(RunStore(run).read_metrics()) < 2:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(getattr(signal, name))
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    lines = [line for line in err.splitlines() if line.startswith("assist:")]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0] and "Traceback" not in err, err
    assert f"interrupted ({name}) after epoch" in (run / "train.log").read_text()
    saved = int(lines[0].split("after epoch ")[1].split("'")[0])
    again = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = again.stderr.readline()          # the resumed run's first words, before any epoch line
    again.send_signal(signal.SIGTERM)
    again.communicate(timeout=60)
    assert first.startswith(f"[archetype] resuming after epoch {saved} (its checkpoint)"), first


def test_a_resumed_run_trains_with_the_thread_count_it_started_with(tmp_path):
    """Left to the defaults (num_threads unset), a run killed under 2 threads and resumed in a
    process of 1 thread (a sweep with fewer runs left than cores) trains on with 2: CPU kernels
    sum in a thread-dependent order, so this is what keeps the resume bit-identical."""
    values = {"dataset": "synthetic", "model": "fcnet16", "epochs": 4, "batch_size": 8, "rng_seed": 3}

    class Threads(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, trainer, **info):
            self.seen.append(torch.get_num_threads())

    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(values, out=tmp_path / "run", callbacks=[CrashAfter(2)])
    torch.set_num_threads(1)
    threads = Threads()
    train(values, out=tmp_path / "run", callbacks=[threads])
    assert threads.seen == [2, 2]


@pytest.mark.parametrize("error", [
    MemoryError("Unable to allocate 7.45 GiB for an array with shape (1000000000,)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 8000000000 bytes. Error code 12 (Cannot allocate memory)"),
], ids=["numpy", "torch"])
def test_out_of_memory_is_one_line_and_the_run_resumes(tmp_path, capsys, monkeypatch, reference, error):
    run = crashed_run(tmp_path / "run", epoch=2)
    from assist.engine.trainer import Trainer

    def starved(self, *args, **kwargs):
        raise error

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "run_epoch", starved)
        code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 1
    line = one_line(err)
    assert line.startswith("assist: error: out of memory (") and "the last checkpoint is intact" in line
    assert ("8,000,000,000 bytes could not be allocated" in line) == isinstance(error, RuntimeError)
    code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 0, err
    assert_identical(run, reference)


@pytest.mark.parametrize("name, kind", [("checkpoints", "file"), ("metrics.jsonl", "dir"), (".assist.lock", "dir"),
                                        ("config.yaml", "dir")])
def test_an_entry_of_the_wrong_type_is_one_line_and_nothing_is_touched(tmp_path, capsys, name, kind):
    run = crashed_run(tmp_path / "run")
    target = run / name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if kind == "file":
        target.write_text("not a folder")
    else:
        target.mkdir()
    before = {p.relative_to(run).as_posix(): (p.read_bytes() if p.is_file() else None) for p in run.rglob("*")}
    code, err = cli(["train", "--out", str(run), *ARGS], capsys)
    assert code == 2
    line = one_line(err)
    assert name in line and "nothing was changed" in line
    assert {p.relative_to(run).as_posix(): (p.read_bytes() if p.is_file() else None) for p in run.rglob("*")} == before
