"""Loading run directories: statuses, final metrics, damaged files, labels."""

import json
import math

import pytest
import torch
import yaml

from assist.report import ReportError, load_runs, strategy_labels
from assist.report.synthetic import corrupt_line, generate_runs, make_failed, make_incomplete


def _lines(run):
    """The metric rows of a run that parse (a truncated tail is left out)."""
    rows = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


@pytest.fixture
def runs(tmp_path):
    gen = torch.Generator().manual_seed(3)
    return generate_runs(tmp_path / "runs", variants=("archetype", "batchwise"), seeds=(0, 1),
                         epochs=4, generator=gen)


def test_one_row_per_run_with_config_and_final_metrics(runs, tmp_path):
    rs = load_runs(tmp_path / "runs")
    assert len(rs) == 4 and len(rs.epochs) == 16
    assert set(rs.runs["status"]) == {"completed"}
    run = runs[2]
    name = run.relative_to(tmp_path / "runs").as_posix()
    last = _lines(run)[-1]
    row = rs.runs.loc[name]
    assert row["final_test_accuracy"] == pytest.approx(last["test_accuracy"])
    assert row["final_train_loss_worst"] == pytest.approx(last["train_loss_worst"])
    assert row["model"] == "lenet" and row["strategy"] == "batchwise" and row["rng_seed"] == 0
    assert row["epochs_completed"] == 4 and row["epochs_planned"] == 4
    per_epoch = rs.epochs[rs.epochs["run"] == name].sort_values("epoch")
    assert per_epoch["epoch"].tolist() == [1, 2, 3, 4]
    assert per_epoch["test_accuracy"].tolist() == pytest.approx([l["test_accuracy"] for l in _lines(run)])
    assert rs.warnings == [] and rs.skipped == []


def test_incomplete_run_with_truncated_tail(runs, tmp_path):
    make_incomplete(runs[1], keep_epochs=2)
    rs = load_runs(tmp_path / "runs")
    name = runs[1].relative_to(tmp_path / "runs").as_posix()
    row = rs.runs.loc[name]
    assert row["status"] == "incomplete" and row["epochs_completed"] == 2
    assert row["final_test_accuracy"] == pytest.approx(_lines(runs[1])[-1]["test_accuracy"])
    assert len(rs.warnings) == 1 and f"{runs[1] / 'metrics.jsonl'}:3" in rs.warnings[0]
    assert "truncated" in rs.warnings[0]


def test_failed_run_keeps_its_status_and_reason(runs, tmp_path):
    make_failed(runs[3], at_epoch=1, reason="loss became NaN")
    rs = load_runs(tmp_path / "runs")
    row = rs.runs.loc[runs[3].relative_to(tmp_path / "runs").as_posix()]
    assert row["status"] == "failed" and row["reason"] == "loss became NaN"
    assert row["epochs_completed"] == 1


def test_corrupt_middle_line_is_skipped_and_listed(runs, tmp_path):
    corrupt_line(runs[0], 2)
    rs = load_runs(tmp_path / "runs")
    name = runs[0].relative_to(tmp_path / "runs").as_posix()
    assert rs.epochs[rs.epochs["run"] == name]["epoch"].tolist() == [1, 3, 4]
    assert rs.warnings == [f"{runs[0] / 'metrics.jsonl'}:2: corrupt line skipped "
                           + rs.warnings[0].split("corrupt line skipped ")[1]]
    assert rs.runs.loc[name, "status"] == "completed" and rs.runs.loc[name, "corrupt_lines"] == 1


def test_unreadable_runs_are_skipped_not_fatal(runs, tmp_path):
    (runs[0] / "config.yaml").write_text("model: [unclosed\n")
    orphan = tmp_path / "runs" / "orphan"
    orphan.mkdir()
    (orphan / "metrics.jsonl").write_text('{"epoch": 1}\n')
    rs = load_runs(tmp_path / "runs")
    assert len(rs) == 3
    reasons = dict(rs.skipped)
    assert "config.yaml is unreadable" in reasons[str(runs[0])]
    assert "no config.yaml" in reasons[str(orphan)]


def test_empty_and_missing_directories_raise_clear_errors(tmp_path):
    with pytest.raises(ReportError, match="no runs found"):
        load_runs(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        load_runs(tmp_path / "nope")
    bad = tmp_path / "only_bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("- a list, not a mapping\n")
    with pytest.raises(ReportError, match="could be read"):
        load_runs(tmp_path / "only_bad")


def test_infinities_and_resumed_epochs(runs, tmp_path):
    lines = _lines(runs[0])
    lines[-1]["test_loss_worst"] = 1e308  # how the run store writes +inf
    resumed = dict(lines[1], train_accuracy=0.123)  # epoch 2 rewritten after a resume
    text = "".join(json.dumps(l) + "\n" for l in lines + [resumed])
    (runs[0] / "metrics.jsonl").write_text(text)
    (runs[0] / "summary.json").unlink()
    rs = load_runs(tmp_path / "runs")
    name = runs[0].relative_to(tmp_path / "runs").as_posix()
    mine = rs.epochs[rs.epochs["run"] == name].set_index("epoch")
    assert list(mine.index) == [1, 2, 3, 4]
    assert mine.loc[2, "train_accuracy"] == pytest.approx(0.123)
    assert math.isinf(mine.loc[4, "test_loss_worst"])
    assert math.isinf(rs.runs.loc[name, "final_test_loss_worst"])


def test_labels_name_every_distinct_variant():
    base = {"batch_size": 64, "batch_accumulation": True, "accumulation_batch_size": None,
            "filter": "hard", "soft_margin": 0.1, "fill_random": False}
    configs = {
        "a": {**base, "strategy": "archetype"},
        "b": {**base, "strategy": "batchwise"},
        "c": {**base, "strategy": "batchwise", "filter": "soft", "accumulation_batch_size": 256},
        "d": {**base, "strategy": "batchwise", "fill_random": True},
        "e": {**base, "strategy": None, "epoch_filtering": True, "batch_filtering": False},
        "f": {**base, "strategy": "selective_backprop", "selector": "top_k", "select_k": 0.5},
    }
    labels = strategy_labels(configs)
    assert labels["a"] == "archetype"
    assert labels["b"] == "batchwise (hard, raw batch 64, fill_random=False)"
    assert labels["c"] == "batchwise (soft α=0.1, raw batch 256, fill_random=False)"
    assert labels["d"] == "batchwise (hard, raw batch 64, fill_random=True)"
    assert labels["e"] == "epochwise (hard)"
    assert labels["f"] == "selective backprop (top-k k=0.5)"
    assert len(set(labels.values())) == len(labels)


def test_config_written_by_yaml_round_trips_lists(tmp_path):
    gen = torch.Generator().manual_seed(0)
    generate_runs(tmp_path, variants=("archetype",), seeds=(0,), epochs=2, generator=gen,
                  overrides={"num_classes": [1, 7]})
    rs = load_runs(tmp_path)
    (name,) = rs.runs.index
    assert rs.runs.loc[name, "num_classes"] == "[1, 7]"  # hashable text for grouping
    assert rs.configs[name]["num_classes"] == [1, 7]
    assert yaml.safe_load((tmp_path / name / "config.yaml").read_text())["num_classes"] == [1, 7]


def test_progress_bar_when_asked(runs, tmp_path, capsys):
    load_runs(tmp_path / "runs", progress=True)
    assert "loading runs" in capsys.readouterr().err
    load_runs(tmp_path / "runs")  # 4 runs: below the automatic threshold
    assert "loading runs" not in capsys.readouterr().err


def test_a_summary_that_disagrees_with_the_metrics_is_warned_about_and_the_metrics_win(tmp_path):
    """One flipped digit in summary.json (still valid JSON) must not reach the tables unwarned."""
    run = generate_runs(tmp_path, variants=("archetype",), seeds=(0,), epochs=3,
                        generator=torch.Generator().manual_seed(2))[0]
    summary = json.loads((run / "summary.json").read_text())
    true = summary["final"]["test_accuracy"]
    summary["final"]["test_accuracy"] = round(true + 0.1, 6)
    (run / "summary.json").write_text(json.dumps(summary))
    rs = load_runs(tmp_path)
    assert any("disagree" in w and "test_accuracy" in w for w in rs.warnings), rs.warnings
    assert rs.runs["final_test_accuracy"].iloc[0] == pytest.approx(true)
    summary["final"]["test_accuracy"] = true                      # agreeing again: no warning
    (run / "summary.json").write_text(json.dumps(summary))
    assert not [w for w in load_runs(tmp_path).warnings if "disagree" in w]
