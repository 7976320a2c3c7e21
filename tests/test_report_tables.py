"""Grouping, twin matching, mean ± std over seeds, ratios, and honest handling of
runs that did not complete."""

import json

import numpy as np
import pytest
import torch
import yaml

from assist.report import (ReportError, appendix_table, comparison_table, find_twins, group_runs,
                           load_runs, parse_group_by)
from assist.report.grouping import group_title
from assist.report.synthetic import generate_runs, make_failed, make_incomplete

VARIANTS = ("archetype", "epochwise", "batchwise")


@pytest.fixture
def root(tmp_path):
    gen = torch.Generator().manual_seed(11)
    generate_runs(tmp_path, groups=2, variants=VARIANTS, seeds=(0, 1, 2), epochs=3, generator=gen)
    return tmp_path


def _final(root, run, key):
    return json.loads((root / run / "summary.json").read_text())["final"][key]


def _runs_of(rs, model, strategy):
    sel = rs.runs[(rs.runs["model"] == model) & (rs.runs["strategy"] == strategy)]
    return sorted(sel.index)


def test_groups_split_on_non_strategy_keys_only(root):
    # A different data_dir (where the data lives) must not split a group; a different
    # learning rate must.
    rs = load_runs(root)
    groups = group_runs(rs)
    assert len(groups) == 2
    assert [g.title for g in groups] == ["model=fcnet100", "model=lenet"]
    for g in groups:
        assert len(g.runs) == 9 and len(g.subgroups) == 1 and g.row_keys == []
        assert len({rs.configs[r]["model"] for r in g.runs}) == 1
    some = _runs_of(rs, "lenet", "batchwise")[0]
    config = yaml.safe_load((root / some / "config.yaml").read_text())
    (root / some / "config.yaml").write_text(yaml.safe_dump({**config, "data_dir": "/elsewhere"}))
    assert len(group_runs(load_runs(root))) == 2
    (root / some / "config.yaml").write_text(yaml.safe_dump({**config, "learning_rate": 0.5}))
    assert len(group_runs(load_runs(root))) == 3


def test_group_labels_name_the_keys_that_differ_and_not_the_unset_ones(tmp_path):
    """A mixed runs folder: labels start with dataset and model, then the keys that tell the
    groups apart; a key unset (None) or at its default is left out of the label."""
    gen = torch.Generator().manual_seed(4)
    plain = {"dataset": "digits", "model": "fcnet100", "batch_size": 32, "data_augmentation": None,
             "train_eval_subset": None, "learning_rate": 0.05}
    changed = {"dataset": "mnist", "model": "lenet", "batch_size": 128, "data_augmentation": True,
               "train_eval_subset": 5000, "learning_rate": 0.01}
    generate_runs(tmp_path / "a", variants=("archetype",), seeds=(0,), epochs=2, generator=gen, overrides=plain)
    generate_runs(tmp_path / "b", variants=("archetype",), seeds=(0,), epochs=2, generator=gen, overrides=changed)
    titles = sorted(g.title for g in group_runs(load_runs(tmp_path)))
    assert titles == ["dataset=digits, model=fcnet100, batch_size=32",
                      "dataset=mnist, model=lenet, batch_size=128, data_augmentation=True, "
                      "learning_rate=0.01, train_eval_subset=5000"]
    assert not any("None" in title for title in titles)
    # nothing but unset keys tell two groups apart: dataset and model still name each
    assert group_title({"dataset": "mnist", "model": "lenet", "train_eval_subset": None},
                       ["train_eval_subset"]) == "dataset=mnist, model=lenet"
    assert group_title({"model": "lenet", "epochs": 10}, ["model", "epochs"]) == "model=lenet"


def test_twins_match_config_and_seed(root):
    rs = load_runs(root)
    twins = find_twins(rs)
    assert len(twins) == 12  # every strategic run, none of the archetypes
    for run, twin in twins.items():
        assert rs.configs[twin]["strategy"] == "archetype"
        for key in ("model", "rng_seed", "batch_size", "learning_rate"):
            assert rs.configs[twin][key] == rs.configs[run][key]


def test_mean_std_and_ratio_over_seeds(root):
    rs = load_runs(root)
    group = group_runs(rs)[1]  # lenet
    table = comparison_table(rs, group)
    assert table.data["strategy"].tolist()[0] == "archetype"  # archetype first
    row = table.data[table.data["strategy"] == "batchwise (hard, raw batch 64)"].iloc[0]
    runs = _runs_of(rs, "lenet", "batchwise")
    train = np.array([_final(root, r, "train_loss_mean") for r in runs])
    test = np.array([_final(root, r, "test_loss_mean") for r in runs])
    assert row["n"] == 3 and row["seeds"] == "0, 1, 2"
    assert row["loss_mean_test_mean"] == pytest.approx(test.mean())
    assert row["loss_mean_test_std"] == pytest.approx(test.std(ddof=1))
    assert row["loss_mean_ratio_mean"] == pytest.approx((test / train).mean())
    assert row["loss_mean_ratio_std"] == pytest.approx((test / train).std(ddof=1))
    acc = np.array([_final(root, r, "test_accuracy") for r in runs])
    acc_tr = np.array([_final(root, r, "train_accuracy") for r in runs])
    assert row["accuracy_ratio_mean"] == pytest.approx((acc / acc_tr).mean())
    shown = table.rows[table.data.index[table.data["strategy"] == row["strategy"]][0]]
    header = [f"{a} {b}".strip() for a, b in table.header]
    cell = shown[header.index("Mean loss Test")]
    assert cell == f"{test.mean():.3f} ± {test.std(ddof=1):.3f} (med {np.median(test):.3f})"
    assert shown[header.index("n")] == "3"


def test_incomplete_and_failed_runs_are_never_averaged(root):
    rs0 = load_runs(root)
    lenet_batch = _runs_of(rs0, "lenet", "batchwise")
    make_incomplete(root / lenet_batch[0], keep_epochs=1)
    make_failed(root / lenet_batch[1], at_epoch=2, reason="diverged")
    rs = load_runs(root)
    table = comparison_table(rs, group_runs(rs)[1])
    rows = table.data[table.data["strategy"] == "batchwise (hard, raw batch 64)"]
    assert rows["status"].tolist() == ["completed", "incomplete at epoch 1/3", "failed at epoch 2/3"]
    done = rows.iloc[0]
    assert done["n"] == 1 and done["seeds"] == "2"
    assert done["accuracy_test_mean"] == pytest.approx(_final(root, lenet_batch[2], "test_accuracy"))
    assert rows.iloc[2]["note"] == "diverged"
    assert table.classes[list(table.data.index).index(rows.index[1])] == "not-completed"


def test_twinless_runs_are_marked(root):
    rs0 = load_runs(root)
    archetype_seed1 = [r for r in _runs_of(rs0, "lenet", "archetype") if rs0.configs[r]["rng_seed"] == 1]
    for path in (root / archetype_seed1[0]).iterdir():
        path.unlink()
    (root / archetype_seed1[0]).rmdir()
    rs = load_runs(root)
    twins = find_twins(rs)
    lonely = [r for r, t in twins.items() if t is None]
    assert sorted(rs.configs[r]["rng_seed"] for r in lonely) == [1, 1]
    table = comparison_table(rs, group_runs(rs)[1], twins)
    notes = table.data.set_index("strategy")["note"]
    assert notes["batchwise (hard, raw batch 64)"] == "no completed archetype twin (seed 1)"
    assert notes["archetype"] == ""
    # The twin of a run whose archetype failed is not a completed twin either.
    archetype_seed2 = [r for r in _runs_of(rs, "lenet", "archetype") if rs.configs[r]["rng_seed"] == 2]
    make_failed(root / archetype_seed2[0], at_epoch=1)
    rs = load_runs(root)
    table = comparison_table(rs, group_runs(rs)[1])
    note = table.data[(table.data["strategy"] == "epochwise (hard)")]["note"].iloc[0]
    assert note == "no completed archetype twin (seed 1, 2)"


def test_group_by_moves_varying_keys_into_rows(root):
    rs = load_runs(root)
    (group,) = group_runs(rs, parse_group_by("dataset", rs))
    assert group.row_keys == ["model"] and len(group.subgroups) == 2
    table = comparison_table(rs, group)
    assert table.header[0] == ("", "model")
    assert [r[0] for r in table.rows] == ["fcnet100"] * 3 + ["lenet"] * 3
    assert [r[1] for r in table.rows][:3] == ["archetype", "batchwise (hard, raw batch 64)", "epochwise (hard)"]
    with pytest.raises(ReportError, match="'modle'") as info:
        parse_group_by("dataset,modle", rs)
    assert info.value.exit_code == 2


def test_appendix_lists_every_run(root):
    rs0 = load_runs(root)
    make_incomplete(root / _runs_of(rs0, "lenet", "epochwise")[0], keep_epochs=2)
    rs = load_runs(root)
    groups = group_runs(rs)
    table = appendix_table(rs, groups)
    assert len(table.rows) == 18
    header = [b for _, b in table.header]
    done = {r[header.index("Run")]: r[header.index("Ran to completion")] for r in table.rows}
    assert sum(v == "✗" for v in done.values()) == 1
    for column in ("model", "batch_size", "learning_rate", "Wall-clock (s)", "Epochs"):
        assert column in header
    incomplete = next(r for r in table.rows if r[header.index("Ran to completion")] == "✗")
    assert incomplete[header.index("Epochs")] == "2/3"
    assert set(table.data["run"]) == set(rs.runs.index)


def collapse(root, run):
    """Rewrite a completed run's metrics so its test accuracy sits at chance (10 classes)."""
    lines = [json.loads(line) for line in (root / run / "metrics.jsonl").read_text().splitlines()]
    for row in lines:
        row["test_accuracy"] = 0.098
    (root / run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in lines))
    summary = json.loads((root / run / "summary.json").read_text())
    summary["final"]["test_accuracy"] = 0.098
    (root / run / "summary.json").write_text(json.dumps(summary))


def test_a_collapsed_seed_is_shown_apart_and_never_averaged(root):
    from assist.experiments.store import SweepDir, format_states
    from assist.metrics.collapse import is_collapsed

    assert is_collapsed([0.5, 0.1, 0.099, 0.1], 10) and not is_collapsed([0.1, 0.1, 0.3], 10)
    assert not is_collapsed([0.1], None)
    rs = load_runs(root)
    victim = _runs_of(rs, "lenet", "archetype")[2]
    others = _runs_of(rs, "lenet", "archetype")[:2]
    collapse(root, victim)
    rs = load_runs(root)
    assert rs.runs.at[victim, "status"] == "collapsed"
    group = next(g for g in group_runs(rs) if g.title == "model=lenet")
    table = comparison_table(rs, group)
    rows = table.data[table.data["strategy"] == "archetype"]
    averaged = rows[rows["status"] == "completed"].iloc[0]
    assert averaged["n"] == 2 and "collapsed seed 2 shown apart" in averaged["note"]
    assert averaged["accuracy_test_mean"] == pytest.approx(np.mean([_final(root, r, "test_accuracy") for r in others]))
    assert rows[rows["status"].str.startswith("collapsed")].iloc[0]["accuracy_test_mean"] == pytest.approx(0.098)
    sweep = SweepDir(root)
    states = [sweep.state(run, run, index={run: root / run}) for run in [victim, *others]]
    assert [s.state for s in states] == ["collapsed", "done", "done"]
    assert "1 collapsed" in format_states(states) and format_states(states).startswith("collapsed")
