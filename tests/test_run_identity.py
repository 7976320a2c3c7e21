"""Runs keep their identity across the move of the strategy keys out of config.py (issue 23):
``tests/data/identities_before_issue23.json`` holds, for runs of every strategy, what the code
before it stored in ``config.yaml``, the run's hash and name, and a sweep's run ids and
directory names. The resolved run must store, hash and name them the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assist.api import config_hash, make_config, run_name
from assist.experiments.plan import expand
from assist.experiments.spec import SweepSpec

# keys added after issue 23 (issue 24's data scenarios): stored at their defaults, out of the hash
ADDED_SINCE = {"label_noise": 0.0, "label_noise_kind": "symmetric", "class_imbalance": 1.0, "duplicates": 0.0}
BEFORE = json.loads((Path(__file__).resolve().parent / "data" / "identities_before_issue23.json").read_text())


@pytest.mark.parametrize("run", BEFORE["runs"], ids=lambda run: run["name"].rsplit("-", 1)[0])
def test_a_stored_config_keeps_its_identity_and_its_stored_form(run):
    stored = make_config(run["stored"])   # what resuming reads from config.yaml
    assert (config_hash(stored), run_name(stored)) == (run["hash"], run["name"])
    assert stored.flat(mode="json") == {**run["stored"], **ADDED_SINCE}
    given = make_config({"dataset": "digits", "model": "fcnet16", "epochs": 2, **run["given"]})
    assert config_hash(given) == run["hash"]


def test_a_sweep_keeps_its_run_ids_and_directory_names():
    runs = expand(SweepSpec.model_validate(BEFORE["sweep"]["spec"]))
    assert sorted([run.run_id, run.name] for run in runs) == sorted(BEFORE["sweep"]["runs"])   # the file sorts keys
