"""``assist train --nproc N``: one run as N processes, started by PyTorch's own elastic
launcher (what ``torchrun --standalone`` does), each process running ``python -m assist
train`` with the same arguments. See docs/distributed.md for launching on several machines."""

from __future__ import annotations

import contextlib
import os
import sys
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

# the exit status of a worker whose collective failed because another rank went away: it says
# nothing (the launcher names the rank that died), and the launcher does not take it for the cause
PEER_LOST = 75


class LauncherStopped(Exception):
    """The launcher got SIGTERM, SIGINT or SIGHUP; its workers are stopped. ``name``: the signal."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def lost_peer(error: BaseException) -> bool:
    """Whether ``error``, in an ``--nproc`` worker, is a collective failing because another
    rank is gone (the launcher then stops this one and names that rank)."""
    if not (os.environ.get(LAUNCHER_PID) and int(os.environ.get("WORLD_SIZE", "1")) > 1):
        return False
    import traceback

    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistBackendError", ())):
        return True
    frames = traceback.extract_tb(error.__traceback__)
    inside = any(f"torch{os.sep}distributed{os.sep}" in frame.filename for frame in frames)
    return isinstance(error, RuntimeError) and (inside or "gloo" in str(error) or "NCCL" in str(error))


def quit_lost(error: BaseException) -> None:
    """End a worker whose peer is gone: its reason goes to the file the launcher reads a
    failed worker's message from (torch's TORCHELASTIC_ERROR_FILE), not to the terminal."""
    import json

    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if path:
        with contextlib.suppress(OSError):
            Path(path).write_text(json.dumps({"message": str(error).splitlines()[0][:300] if str(error) else
                                              type(error).__name__, "timestamp": int(time.time())}))
    sys.exit(PEER_LOST)


def dead_rank(failures: dict, nproc: int) -> tuple[Optional[str], int]:
    """From the launcher's failed ranks (rank -> ProcessFailure, in the order the launcher saw
    them end: those that ended by themselves first, then those it stopped): the line that
    names the rank that died, or None when a rank exited by itself with a status (it said why
    already); and the exit status of the run."""
    import signal

    own = [(rank, failure) for rank, failure in failures.items() if failure.exitcode != PEER_LOST]
    if not own:   # every rank lost the others: a broken connection, not a death
        rank, failure = next(iter(failures.items()))
        said = failure.error_file_data.get("message")   # what quit_lost wrote, if it could
        said = said if isinstance(said, str) and said != "<NONE>" else ""
        return f"rank {rank} of {nproc} lost contact with the other ranks" + (f" ({said})" if said else ""), 1
    killed = [(r, f) for r, f in own if f.exitcode < 0 and f.exitcode != -signal.SIGTERM]
    exited = [f.exitcode for _, f in own if f.exitcode > 0]
    if not killed and exited:
        return None, exited[0]
    # gloo may abort a survivor (SIGABRT from its C++ runtime) when a peer's socket closes, and
    # the launcher can see it end first: a rank killed by any other signal is the cause
    killed.sort(key=lambda ranked: ranked[1].exitcode == -signal.SIGABRT)
    rank, failure = (killed or own)[0]
    return f"rank {rank} of {nproc} died ({signal.Signals(-failure.exitcode).name})", 1


def launch_train(nproc: int, config: Any, out: Path, config_file: Optional[str], restart: bool,
                 overrides: tuple[str, ...]) -> int:
    """Run the workers on this machine and wait; the exit status of the run (that of the
    first rank that exited by itself with a status). A rank that died (killed, crashed) is
    :class:`DistributedError` naming it; a signal to the launcher, :class:`LauncherStopped`
    once the workers are stopped. Torch's own reports of either (the elastic agent's log, the
    surviving ranks' tracebacks) are not shown: see docs/distributed.md."""
    import torch
    from torch.distributed.elastic.multiprocessing.api import SignalException
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
        with _quiet_agent():
            run(get_args_parser().parse_args(argv))
    except SignalException as stop:
        raise LauncherStopped(stop.sigval.name) from None
    except ChildFailedError as error:
        line, code = dead_rank(error.failures, nproc)
        if line is not None:
            from assist.tracking.checkpoints import where_it_stands

            raise DistributedError(f"{line}, so the run stopped {where_it_stands(out)}") from None
        return code
    return 0


@contextlib.contextmanager
def _quiet_agent():
    """Torch's elastic agent logs every stop and failure (several lines each): not shown
    while it runs, unless ASSIST_DEBUG is set; the launcher says what matters in one line."""
    import logging

    if os.environ.get("ASSIST_DEBUG"):
        yield
        return
    quiet = logging.NullHandler()
    saved = []
    for name in ("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run"):
        logger = logging.getLogger(name)   # its records stop here: a handler that drops them
        saved.append((logger, logger.propagate))
        logger.addHandler(quiet)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(quiet)
            logger.propagate = propagate
