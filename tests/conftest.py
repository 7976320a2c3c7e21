import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from assist.data.base import ImageDataset, channel_stats

# A shell that starts the tests in the background (`cmd &`, nohup, some CI runners) starts them
# with SIGINT ignored, and every process they start inherits that: the fault tests' Ctrl-C
# (tests/faults) would then never reach the runs it stops, which train on to the end. A test
# process takes Ctrl-C as a terminal's foreground process does (docs/reliability.md).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
# The real data (MNIST IDX files, the CIFAR-10 image-folder archive): ASSIST_SHARED_DATA, by
# default ../shared/data beside the checkout. Without it, the tests that need it are skipped
# with the reason, except under CI (CI=true), where everything must run.
SHARED_DATA = Path(os.environ.get("ASSIST_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_ALL = os.environ.get("CI", "").lower() == "true"


# Metrics that measure the machine, not the training: they legitimately differ between runs.
def _volatile() -> set[str]:
    from assist.metrics.system import system_metrics

    return {"wall_clock_s", "train_time_s", "epoch_time_s", *system_metrics(torch.device("cpu"))}


VOLATILE = _volatile()


def deterministic(rows: list[dict]) -> list[dict]:
    """Metrics rows without the machine-dependent keys: what a resumed run must reproduce."""
    return [{k: v for k, v in row.items() if k not in VOLATILE and not k.startswith("gpu_")} for row in rows]


@pytest.fixture
def keep_torch_threads():
    """Runs that set num_threads change this process's threads: give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def unavailable(reason: str, *, module: bool = False) -> None:
    """Skip a test (or, with ``module``, a whole test module) whose requirement is missing
    here; under CI, fail instead."""
    if REQUIRE_ALL:
        pytest.fail(reason + " (CI=true: every test must run)")
    pytest.skip(reason, allow_module_level=module)


def make_toy_dataset(n_train: int = 192, n_test: int = 64, classes: int = 4, size: int = 8,
                     noise: float = 0.6, seed: int = 0) -> ImageDataset:
    """A small learnable data set: class prototypes plus noise (hard enough that a model
    keeps misclassifying some samples for a few epochs)."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    labels = torch.randint(0, classes, (n,), generator=g)
    prototypes = torch.rand(classes, 1, size, size, generator=g)
    images = (1 - noise) * prototypes[labels] + noise * torch.rand(n, 1, size, size, generator=g)
    images = (images * 255).round().to(torch.uint8)
    mean, std = channel_stats(images[:n_train])
    return ImageDataset("toy", images[:n_train], labels[:n_train], images[n_train:], labels[n_train:],
                        classes, mean, std, tuple(str(c) for c in range(classes)))


@pytest.fixture(scope="session", autouse=True)
def _session_cache_dir(tmp_path_factory):
    """Caches (decoded image folders, RHO-LOSS losses) go to a directory of this test session,
    never the user's cache and never the (read-only) data directory; subprocesses inherit it."""
    before = os.environ.get("ASSIST_CACHE_DIR")
    os.environ["ASSIST_CACHE_DIR"] = str(tmp_path_factory.mktemp("assist-cache"))
    yield Path(os.environ["ASSIST_CACHE_DIR"])
    if before is None:
        os.environ.pop("ASSIST_CACHE_DIR", None)
    else:
        os.environ["ASSIST_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def toy_data() -> ImageDataset:
    return make_toy_dataset()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        unavailable(f"real data not found at {SHARED_DATA}; set ASSIST_SHARED_DATA to the shared data folder")
    return SHARED_DATA


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The fault suite's figures (tests/faults/faults_tally.py), when it ran."""
    tally = sys.modules.get("faults_tally")
    lines = tally.summary_lines() if tally is not None else []
    if lines:
        terminalreporter.section("fault suite")
        for line in lines:
            terminalreporter.write_line(line)
