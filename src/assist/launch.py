"""``assist train --nproc N``: one run as N processes, started by PyTorch's own elastic
launcher (what ``torchrun --standalone`` does), each process running ``python -m assist
train`` with the same arguments. See docs/distributed.md for launching on several machines."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

LAUNCHER_PID = "ASSIST_LAUNCHER_PID"   # set for the workers: the process they live and die with


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with(pid: int, poll_s: float = 1.0) -> None:
    """End this process (exit 1) as soon as process ``pid`` is gone, however it died: a
    watchdog thread, so a worker never trains on, holding its run's lock, after a SIGKILL of
    the process that started it (the sweep's workers and the --nproc workers alike)."""
    if not alive(pid):
        os._exit(1)

    def watchdog() -> None:
        while alive(pid):
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watchdog, daemon=True, name="exit-with-parent").start()


def watch_launcher() -> None:
    """In an --nproc worker: die with the launcher (no-op elsewhere)."""
    pid = os.environ.get(LAUNCHER_PID)
    if pid and "WORLD_SIZE" in os.environ:
        exit_with(int(pid))

from assist.engine.distributed import DistributedError


def launch_train(nproc: int, config: Any, out: Path, config_file: Optional[str], restart: bool,
                 overrides: tuple[str, ...]) -> int:
    """Run the workers on this machine and wait; the exit status of the run (that of the
    lowest rank that failed by itself)."""
    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    if torch.device(config.device).type == "cuda" and nproc > torch.cuda.device_count():
        raise DistributedError(f"--nproc {nproc} needs one GPU per process for device={config.device!r}, "
                               f"but this machine has {torch.cuda.device_count()}")
    # each process's share of the cores (torchrun would set 1 and print a banner about it);
    # a num_threads key in the config still applies inside each process
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ[LAUNCHER_PID] = str(os.getpid())   # the workers die with this process (watch_launcher)
    argv = ["--standalone", f"--nproc-per-node={nproc}", "--module", "assist", "train", "--out", str(out)]
    if config_file:
        argv += ["--config", config_file]
    if restart:
        argv.append("--restart")
    argv += list(overrides)
    try:
        run(get_args_parser().parse_args(argv))
    except ChildFailedError as error:
        # the ranks stopped by the launcher after the first failure exit by a signal (< 0)
        codes = [int(f.exitcode) for _, f in sorted(error.failures.items())]
        return next((code for code in codes if code > 0), 1)
    return 0
