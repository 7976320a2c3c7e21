"""Per-run locks: exclusive between processes, released by the kernel when the holder dies."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from assist.tracking.locks import RunLock, lock_holder
from assist.experiments.runner import RunTask, run_task

HOLD = """
import sys, time
from assist.tracking.locks import RunLock
lock = RunLock(sys.argv[1])
assert lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_lock_is_exclusive_and_reports_its_holder(tmp_path: Path):
    path = tmp_path / ".locks" / "abc.lock"
    first, second = RunLock(path), RunLock(path)
    assert lock_holder(path) is None
    assert first.acquire()
    assert not second.acquire(wait_s=0.2)
    holder = lock_holder(path)
    assert holder is not None and holder["pid"] == os.getpid() and holder["host"]
    first.release()
    assert lock_holder(path) is None
    assert second.acquire()
    second.release()


def test_lock_of_a_killed_process_is_free_at_once(tmp_path: Path):
    path = tmp_path / "run.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_holder(path)["pid"] == holder.pid
        assert not RunLock(path).acquire(wait_s=0.3)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_holder(path) is None  # the dead holder's pid is still in the file, but it holds nothing
    lock = RunLock(path)
    assert lock.acquire()
    lock.release()


def test_a_run_locked_elsewhere_is_left_alone(tmp_path: Path):
    task = RunTask("0123456789", "run-0123456789", str(tmp_path),
                   {"dataset": "synthetic", "model": "fcnet16", "epochs": 1})
    other = RunLock(tmp_path / ".locks" / "0123456789.lock")
    assert other.acquire()
    try:
        outcome = run_task(task, redirect=False, lock_wait_s=0.2)
    finally:
        other.release()
    assert outcome.status == "busy"
    assert not (tmp_path / "run-0123456789").exists()
