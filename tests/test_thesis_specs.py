"""The thesis's experiments as shipped sweeps: each spec is what the generator makes from the
published data, plans exactly the thesis's runs with their settings (and an archetype twin for
each strategic run), and its header states the run count the sweep plans."""

from __future__ import annotations

from functools import lru_cache

import pytest
import yaml

from assist.experiments.examples import examples
from assist.experiments.plan import expand
from assist.experiments.spec import load_spec
from assist.experiments.thesis_specs import (APPENDIX_SPEC, RUN_KEYS, TABLE_SPECS, appendix_runs, generated_specs,
                                             placeable, table_runs)
from assist.report.thesis_settings import appendix_records, record_matches, thesis_tables

SHIPPED = {e.path.stem: e for e in examples()}
KEYS = RUN_KEYS + ("epoch_filtering", "batch_filtering")


@lru_cache(maxsize=None)
def _planned(stem: str) -> tuple:
    return tuple(expand(load_spec(SHIPPED[stem].path)))


def planned(stem: str) -> list[dict]:
    return [{k: v for k, v in r.config.model_dump().items() if k in KEYS} for r in _planned(stem)]


def canonical(config: dict) -> str:
    values = {k: v for k, v in config.items() if k in KEYS}
    if values.get("lr_scheduler") not in ("exponential", "multistep"):
        values.pop("gamma", None)
    if values.get("lr_scheduler") != "multistep":
        values.pop("milestone_every", None)
    return yaml.safe_dump(values, sort_keys=True)


def test_the_shipped_thesis_specs_are_the_generated_ones():
    generated = generated_specs()
    shipped = {stem for stem in SHIPPED if stem.startswith("thesis_")}
    assert shipped == set(generated), "rerun: python -m assist.experiments.thesis_specs"
    for stem, text in generated.items():
        assert SHIPPED[stem].path.read_text() == text, f"{stem}.yaml was edited by hand or the data changed"


@pytest.mark.parametrize("stem", sorted(TABLE_SPECS))
def test_each_table_spec_plans_the_tables_runs_with_their_settings(stem):
    name, table_id = TABLE_SPECS[stem]
    table = thesis_tables()["tables"][table_id]
    wanted = {canonical(c) for _, c in table_runs(table_id)}
    runs = planned(stem)
    got = {canonical(r) for r in runs}
    assert wanted <= got
    extra = got - wanted                                   # only the archetype twins of strategic runs
    assert all(not (yaml.safe_load(e)["epoch_filtering"] or yaml.safe_load(e)["batch_filtering"]) for e in extra)
    settings = table["settings"]
    for run in runs:
        for key in ("optimizer", "learning_rate", "lr_scheduler", "momentum", "weight_decay", "epochs"):
            assert run[key] == settings[key], (stem, key)
        assert run["dataset"] == table["dataset"]
        if settings["lr_scheduler"] == "exponential":
            assert run["gamma"] == settings["gamma"]
    # every strategic run of the table also stands in Appendix II with the same settings
    for run in runs:
        if run["epoch_filtering"] or run["batch_filtering"]:
            assert any(record_matches(run, r) for r in appendix_records() if r.get("table") == table_id), run


def test_the_four_tables_that_were_not_baseline_runs_carry_their_true_settings():
    settings = {stem: planned(stem)[0] for stem in ("thesis_mnist_fcnets", "thesis_cifar10_fcnets",
                                                    "thesis_cifar100_fcnets", "thesis_cifar10_batch_sizes")}
    fc = ("batch_size", "learning_rate", "lr_scheduler", "gamma", "epochs")
    assert tuple(settings["thesis_mnist_fcnets"][k] for k in fc) == (256, 0.01, "exponential", 0.995, 500)
    assert tuple(settings["thesis_cifar10_fcnets"][k] for k in fc) == (512, 0.01, "exponential", 0.995, 500)
    assert tuple(settings["thesis_cifar100_fcnets"][k] for k in fc) == (512, 0.01, "exponential", 0.995, 500)
    resnet = settings["thesis_cifar10_batch_sizes"]
    assert (resnet["learning_rate"], resnet["lr_scheduler"], resnet["gamma"], resnet["epochs"]) == (
        0.1, "exponential", 0.995, 300)
    assert all(run["weight_decay"] == 0.0005 for stem in settings for run in planned(stem))


def test_the_appendix_specs_plan_every_placeable_row():
    rows = [r for r in appendix_records() if placeable(r)]
    got = {canonical(r) for r in planned(APPENDIX_SPEC[0])}
    assert {canonical(c) for _, c in appendix_runs()} <= got and len(rows) >= 100
    everything = planned(APPENDIX_SPEC[0])
    for record in rows:
        assert any(record_matches(run, record) for run in everything), record["id"]
    groups = {r["group"] for r in rows if not r["group"].startswith("table-")}
    for group in groups:
        stem = f"thesis_appendix_{group.replace('-', '_')}"
        got = {canonical(r) for r in planned(stem)}
        assert {canonical(c) for _, c in appendix_runs(group)} <= got, group
    # MNIST rows never augment, whatever the appendix's column printed (the thesis augments CIFAR only)
    assert all(not run["data_augmentation"] for run in planned(APPENDIX_SPEC[0]) if run["dataset"] == "mnist")


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.name)
def test_every_header_states_the_run_count_the_sweep_plans(example):
    assert example.declared_runs == len(_planned(example.path.stem)), example.name
    assert "cpu" in example.commands() and "full" in example.commands(), example.name
    assert example.commands()["cpu"].startswith(f"assist sweep {example.name} ")
