"""Run directories written by the first landing (before the selection step, the strategies'
schemas and the keys added since) still load, keep their identity, and resume to the result
the first landing reached. ``tests/data/first_landing_run`` is such a run, cut back to its
epoch-2 checkpoint; ``first_landing_expected.json`` holds its hash and its epoch-3 metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assist.api import config_hash, make_config, run_name, train
from assist.config import load_config_file
from assist.metrics.system import system_metrics
from assist.report import load_runs

DATA = Path(__file__).resolve().parent / "data"
EXPECTED = json.loads((DATA / "first_landing_expected.json").read_text())
VOLATILE = {"wall_clock_s", "train_time_s", "epoch_time_s"}


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(DATA / "first_landing_run", run)
    return run


def test_identity_is_unchanged(old_run):
    config = make_config(load_config_file(old_run / "config.yaml"))
    assert config_hash(config) == EXPECTED["identity"]["hash"]
    assert run_name(config) == EXPECTED["identity"]["name"]


def test_resumes_to_the_first_landings_result(old_run):
    import torch

    threads = torch.get_num_threads()
    try:
        result = train(load_config_file(old_run / "config.yaml"), out=old_run)
    finally:
        torch.set_num_threads(threads)
    assert result.summary["status"] == "completed" and len(result.history) == 3
    assert "resume from epoch 2" in (old_run / "train.log").read_text()
    expected = EXPECTED["epoch3"]
    skip = VOLATILE | set(system_metrics(torch.device("cpu")))
    got = result.history[-1]
    for key, value in expected.items():
        if key not in skip:
            assert got[key] == value, key


def test_loads_in_the_report(old_run):
    runs = load_runs(old_run.parent)
    assert runs.runs.iloc[0]["status"] == "incomplete" and runs.runs.iloc[0]["label"].startswith("batchwise")
