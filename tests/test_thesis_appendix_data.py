"""The thesis's Appendix II as data (report/data/appendix2.json) and the published tables it fills
(report/data/thesis_tables.json): every record well formed, every table row backed by an appendix
run with the table's settings and the same values."""

import json
from pathlib import Path

import pytest

from assist.config import TrainConfig
from assist.strategies.filtering import THESIS_FLAGS
from assist.models import list_models
from assist.strategies import STRATEGIES

DATA = Path(__file__).resolve().parents[1] / "src" / "assist" / "report" / "data"
APPENDIX = json.loads((DATA / "appendix2.json").read_text())
RUNS = APPENDIX["runs"]
TABLES = json.loads((DATA / "thesis_tables.json").read_text())
FINAL = ["accuracy_train", "accuracy_test", "loss_mean_train", "loss_mean_test", "loss_q90_train", "loss_q90_test",
         "loss_worst_train", "loss_worst_test"]
FIELDS = ["id", "line", "dataset", "model", "batch_filtering", "epoch_filtering", "batch_size", "optimizer",
          "learning_rate", "gamma", "momentum", "lr_scheduler", "milestone_every", "epochs", "weight_decay",
          "completed", "data_augmentation", "final", "table", "group", "note"]
SETTING_KEYS = ["dataset", "batch_size", "optimizer", "learning_rate", "lr_scheduler", "gamma", "momentum",
                "weight_decay", "epochs", "data_augmentation"]
METRIC_COLUMNS = {"accuracy": ("accuracy_train", "accuracy_test"), "loss_mean": ("loss_mean_train", "loss_mean_test"),
                  "loss_q90": ("loss_q90_train", "loss_q90_test"), "loss_worst": ("loss_worst_train", "loss_worst_test")}
HALF = 0.0005  # the thesis prints three decimals


def test_top_level_keys():
    assert set(APPENDIX) == {"source", "reading", "runs"} and len(RUNS) > 150
    assert {"source", "tables", "notes"} <= set(TABLES)
    assert {"4.4", "4.5", "4.6", "4.7", "4.8", "4.9"} <= set(TABLES["tables"])
    assert set(TABLES["tables"]) <= set(TABLES["notes"])


def test_ids_unique_and_in_appendix_order():
    ids = [r["id"] for r in RUNS]
    assert len(set(ids)) == len(ids)
    assert ids == [f"A2-{i:03d}" for i in range(1, len(RUNS) + 1)]
    lines = [r["line"] for r in RUNS]
    assert lines == sorted(lines) and 1865 < lines[0] and lines[-1] < 2030


@pytest.mark.parametrize("run", RUNS, ids=lambda r: r["id"])
def test_record_fields_are_valid(run):
    assert list(run) == FIELDS
    assert run["dataset"] in {"mnist", "cifar10", "cifar100", None}
    assert run["model"] in set(list_models()) | {None}
    assert run["model"] in {"lenet", "resnet18", "dla", "simpledla", "fcnet100", "fcnet1000", "fcnet3000", None}
    assert run["optimizer"] in {"sgd", "adam", None}
    assert run["lr_scheduler"] in {"exponential", "multistep", "none", None}
    assert run["weight_decay"] in {0.0005, 0.0, None}
    assert run["momentum"] in {0.9, 0.0, None}
    assert run["learning_rate"] in {0.1, 0.01, None}
    for flag in ("batch_filtering", "epoch_filtering", "completed", "data_augmentation"):
        assert run[flag] in {True, False, None}
    for key in ("batch_size", "epochs"):
        assert run[key] is None or (isinstance(run[key], int) and run[key] > 0)
    if run["lr_scheduler"] == "none":
        assert run["gamma"] is None and run["milestone_every"] is None
    if run["lr_scheduler"] == "exponential":
        assert run["gamma"] in {0.995, 0.99, None} and run["milestone_every"] is None
    if run["lr_scheduler"] == "multistep":
        assert run["gamma"] in {0.1, 0.5, None}
    assert run["milestone_every"] is None or (isinstance(run["milestone_every"], int) and run["milestone_every"] > 0)
    assert run["gamma"] is None or 0 < run["gamma"] < 1
    assert list(run["final"]) == FINAL
    for key, value in run["final"].items():
        assert value is None or (isinstance(value, float) and value >= 0), key
        if value is not None and key.startswith("accuracy"):
            assert value <= 1
    assert run["table"] in {None, "4.4", "4.5", "4.6", "4.7", "4.8", "4.9"}
    assert isinstance(run["group"], str) and run["group"]
    if run["table"]:
        assert run["group"] == f"table-{run['table']}"
    # a cell left null says why
    settings = [run[k] for k in ("dataset", "model", "batch_filtering", "epoch_filtering", "batch_size", "optimizer",
                                 "learning_rate", "momentum", "lr_scheduler", "epochs", "weight_decay", "completed",
                                 "data_augmentation")]
    if None in settings or None in run["final"].values():
        assert isinstance(run["note"], str) and run["note"]


def strategy_of(run):
    flags = (run["epoch_filtering"], run["batch_filtering"])
    return next((name for name, f in THESIS_FLAGS.items() if f == flags), None)


def table_items():
    for table_id, spec in TABLES["tables"].items():
        for key, strategies in spec["rows"].items():
            for strategy, metrics in strategies.items():
                yield table_id, spec, key, strategy, metrics


def has_settings(run, spec):
    settings = spec["settings"]
    for key in SETTING_KEYS:
        if key in settings and run[key] != settings[key]:
            return False
    if "models" in settings and run["model"] not in settings["models"]:
        return False
    if "model" in settings and run["model"] != settings["model"]:
        return False
    if "batch_sizes" in settings and run["batch_size"] not in settings["batch_sizes"]:
        return False
    return True


@pytest.mark.parametrize("table_id,spec,key,strategy,metrics",
                         list(table_items()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_table_row_has_its_appendix_run(table_id, spec, key, strategy, metrics):
    assert strategy in THESIS_FLAGS and strategy in STRATEGIES
    match = spec["match"]
    candidates = [r for r in RUNS if has_settings(r, spec) and str(r[match]) == key and strategy_of(r) == strategy]
    assert candidates, f"Table {table_id} {key} {strategy}: no appendix run with the table's settings"
    agreeing = [r for r in candidates
                if all(r["final"][col] is None or metrics[metric][part] is None
                       or r["final"][col] == metrics[metric][part]
                       for metric, cols in METRIC_COLUMNS.items() for part, col in enumerate(cols))]
    assert agreeing, f"Table {table_id} {key} {strategy}: no appendix run with the table's values"
    # the run the table names is among them, and every cell it gives is in the table
    own = [r for r in agreeing if r["table"] == table_id]
    assert len(own) == 1
    for metric, cols in METRIC_COLUMNS.items():
        for part, col in enumerate(cols):
            if own[0]["final"][col] is not None:
                assert metrics[metric][part] == own[0]["final"][col]


def test_each_table_run_is_one_table_row():
    rows = {(t, k, s) for t, _, k, s, _ in table_items()}
    seen = []
    for run in RUNS:
        if run["table"]:
            spec = TABLES["tables"][run["table"]]
            seen.append((run["table"], str(run[spec["match"]]), strategy_of(run)))
    assert len(seen) == len(set(seen)) and set(seen) == rows


@pytest.mark.parametrize("table_id", sorted(TABLES["tables"]))
def test_table_settings_equal_those_of_its_appendix_rows(table_id):
    spec = TABLES["tables"][table_id]
    settings = spec["settings"]
    assert set(settings) - {"model", "models", "batch_size", "batch_sizes"} == set(SETTING_KEYS) - {"batch_size"}
    assert all(k in TrainConfig.model_fields for k in SETTING_KEYS) and spec["match"] in TrainConfig.model_fields
    assert ("model" in settings) != ("models" in settings)
    assert ("batch_size" in settings) != ("batch_sizes" in settings)
    assert spec["dataset"] == settings["dataset"]
    members = [r for r in RUNS if r["table"] == table_id]
    assert members and all(has_settings(r, spec) for r in members)
    assert all(r["milestone_every"] is None for r in members)
    for key in (k for k in SETTING_KEYS if k in settings):
        printed = {r[key] for r in members if r[key] is not None}
        assert printed == {settings[key]} or (printed == set() and settings[key] is None), key
    varied = settings.get("models") or settings.get("batch_sizes")
    assert sorted(map(str, varied)) == sorted(spec["rows"])


def test_table_triples_and_ratios_are_consistent():
    for table_id, _, key, strategy, metrics in table_items():
        assert set(metrics) == set(METRIC_COLUMNS)
        for metric, (train, test, ratio) in metrics.items():
            for value in (train, test, ratio):
                assert value is None or isinstance(value, (int, float))
            if None not in (train, test, ratio) and train > HALF:
                low, high = (test - HALF) / (train + HALF), (test + HALF) / (train - HALF)
                assert low - HALF <= ratio <= high + HALF, (table_id, key, strategy, metric)


def test_the_published_runs_settings():
    """Only Tables 4.4 and 4.8 ran on the Table 4.1 baseline."""
    tables = TABLES["tables"]
    for table_id in ("4.4", "4.8"):
        s = tables[table_id]["settings"]
        assert (s["learning_rate"], s["lr_scheduler"], s["epochs"]) == (0.1, "none", 300)
    assert tables["4.5"]["settings"]["batch_size"] == 256
    for table_id in ("4.5", "4.7", "4.9"):
        s = tables[table_id]["settings"]
        assert (s["learning_rate"], s["lr_scheduler"], s["gamma"], s["epochs"]) == (0.01, "exponential", 0.995, 500)
    s = tables["4.6"]["settings"]
    assert (s["learning_rate"], s["lr_scheduler"], s["gamma"], s["epochs"]) == (0.1, "exponential", 0.995, 300)
