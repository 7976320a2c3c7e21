"""``assist train --nproc N``: one run as N processes, started by PyTorch's own elastic
launcher (what ``torchrun --standalone`` does), each process running ``python -m assist
train`` with the same arguments. See docs/distributed.md for launching on several machines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

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
