"""`assist report --thesis`: runs made with a thesis run's settings (at any scale) set beside its
published values, the findings checked, in the terminal, Markdown and the HTML report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assist.report import load_runs
from assist.report.command import cli_report
from assist.report.synthetic import generate_runs
from assist.report.thesis import thesis_comparison
from assist.report.thesis_settings import (appendix_records, dataset_family, record_matches, settings_differ,
                                           thesis_tables)

TABLE_44 = {"dataset": "mnist", "batch_size": 1024, "learning_rate": 0.1, "lr_scheduler": "none", "momentum": 0.9,
            "weight_decay": 0.0005, "optimizer": "sgd", "data_augmentation": False}


@pytest.fixture
def runs_44(tmp_path):
    """LeNet runs with Table 4.4's settings at 3 epochs, and beside them runs that differ only
    in the learning rate (which must not be set beside the thesis)."""
    gen = torch.Generator().manual_seed(5)
    generate_runs(tmp_path / "thesis", variants=("archetype", "epochwise", "batchwise"), seeds=(0, 1, 2),
                  epochs=3, generator=gen, overrides=TABLE_44)
    generate_runs(tmp_path / "other", variants=("archetype", "batchwise"), seeds=(0,), epochs=3, generator=gen,
                  overrides={**TABLE_44, "learning_rate": 0.05})
    return tmp_path


def _final(path, key):
    return json.loads((path / "summary.json").read_text())["final"][key]


def test_only_runs_with_the_tables_settings_are_compared(runs_44):
    comparison = thesis_comparison(load_runs(runs_44), "4.4")
    data = comparison.table.data.set_index("strategy")
    assert set(data.index) == {"archetype", "epochwise", "batchwise"} and set(data["model"]) == {"lenet"}
    assert (data["n"] == 3).all()                               # the lr 0.05 runs are left out
    assert set(data["scale"]) == {"3/300 epochs"}
    batchwise = sorted((runs_44 / "thesis").glob("*/*batchwise*"))
    assert data.at["batchwise", "accuracy_test"] == pytest.approx(np.mean([_final(p, "test_accuracy")
                                                                            for p in batchwise]))
    lenet = thesis_tables()["tables"]["4.4"]["rows"]["lenet"]
    row = comparison.table.rows[list(data.index).index("batchwise")]
    assert row[5] == f"{data.at['batchwise', 'accuracy_test']:.3f} ({lenet['batchwise']['accuracy'][1]:.3f})"
    # findings: the thesis's direction, the measured one, and the verdict
    assert any(line.startswith("model=lenet, batchwise: test accuracy below the archetype's (thesis 0.988 vs 0.990")
               for line in comparison.findings), comparison.findings
    assert all(line.endswith((": holds", ": does not hold", ": cannot tell")) for line in comparison.findings)


def test_findings_say_holds_and_does_not_hold_from_the_measured_direction():
    from assist.report.thesis import findings

    published = ({"accuracy": [None, 0.9, None], "loss_mean": [1, 1, 1.1], "loss_q90": [1, 1, None]},
                 {"accuracy": [None, 0.95, None], "loss_mean": [1, 1, 1.5], "loss_q90": [1, 1, None]})
    better = {"accuracy_test": 0.97, "loss_mean_ratio": 1.4}
    worse = {"accuracy_test": 0.8, "loss_mean_ratio": 1.05}
    archetype = {"accuracy_test": 0.9, "loss_mean_ratio": 1.2}
    lines = findings("x", published, (worse, archetype))
    assert lines[0].endswith("test accuracy below the archetype's (thesis 0.900 vs 0.950; here 0.800 vs 0.900): holds")
    assert lines[1].endswith(": holds") and len(lines) == 2          # q=0.9: the thesis prints no ratio
    lines = findings("x", published, (better, archetype))
    assert lines[0].endswith("does not hold") and lines[1].endswith("does not hold")


def test_the_comparison_reaches_the_terminal_markdown_and_html(runs_44, capsys):
    out = runs_44 / "report"
    assert cli_report(runs_44, out, fmt="html", thesis="4.4") == 0
    printed = capsys.readouterr().out
    assert "Thesis Table 4.4" in printed and "Findings of the thesis" in printed
    assert (out / "thesis-4.4.md").is_file()
    html = (out / "report.html").read_text()
    assert "<section id='thesis'>" in html and "href='#thesis'" in html
    assert html.count("<li class='holds'>") + html.count("<li class='fails'>") >= 2


def test_no_matching_run_warns_and_says_which_would_match(runs_44, capsys):
    assert cli_report(runs_44, runs_44 / "r", fmt="csv", thesis="4.5") == 0
    err = capsys.readouterr().err
    assert "--thesis 4.5: no completed run matches" in err and "batch_size=256" in err and "learning_rate=0.01" in err
    assert cli_report(runs_44, runs_44 / "r", fmt="csv", thesis="4.3") == 2
    assert "no such table" in capsys.readouterr().err


def test_appendix_matches_each_run_to_the_row_of_its_settings(runs_44, capsys):
    comparison = thesis_comparison(load_runs(runs_44), "appendix")
    ids = {row[0] for row in comparison.table.rows}
    lenet_44 = {r["id"] for r in appendix_records() if r["model"] == "lenet" and r["dataset"] == "mnist"
                and r.get("batch_size") == 1024 and r.get("learning_rate") == 0.1 and r.get("lr_scheduler") == "none"
                and r.get("epoch_filtering") is not None and r.get("batch_filtering") is not None
                and r.get("momentum") == 0.9 and r.get("weight_decay") == 0.0005}
    assert ids and ids <= lenet_44
    assert all(row[6] == "3/300 epochs" for row in comparison.table.rows)
    assert cli_report(runs_44, runs_44 / "r", fmt="md", thesis="appendix") == 0
    assert "Thesis Appendix II" in (runs_44 / "r" / "report.md").read_text()


def test_settings_match_whatever_the_scale_but_not_across_settings():
    record = {"dataset": "cifar10", "model": "fcnet100", "epoch_filtering": False, "batch_filtering": True,
              "optimizer": "sgd", "batch_size": 512, "learning_rate": 0.01, "lr_scheduler": "exponential",
              "gamma": 0.995, "momentum": 0.9, "weight_decay": 0.0005, "milestone_every": None,
              "data_augmentation": True, "epochs": 500}
    config = {**record, "dataset": "folder:/data/cifar10-jpeg.tar.gz", "epochs": 5, "samples_per_class": 100,
              "strategy": "batchwise", "gamma": None, "data_augmentation": None, "milestone_every": 30}
    assert dataset_family(config["dataset"]) == "cifar10" and dataset_family("folder:/x/cifar100.zip") == "cifar100"
    assert record_matches(config, record)                 # gamma and augmentation resolve to the thesis's
    assert settings_differ({**config, "learning_rate": 0.1}, record, "cifar10") == ["learning_rate"]
    assert not record_matches({**config, "data_augmentation": False}, record)
    assert not record_matches({**config, "strategy": "infobatch"}, record)     # a peer is no thesis run
    assert settings_differ({**config, "label_noise": 0.2}, record, "cifar10") == ["label_noise"]   # noisy data
    assert not record_matches({**config, "class_imbalance": 10.0}, record)
    assert not record_matches(config, {**record, "batch_filtering": None})     # unreadable flags match nothing
