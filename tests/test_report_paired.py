"""`assist report`'s paired verdicts on crafted run directories whose answers are known, the
rule that finds a strategy's random control, and the who-gets-trained figure."""

from html import escape

import pytest

from assist.report import cli_report, load_runs
from assist.report.build import build_report
from assist.report.cost import run_histories
from assist.report.grouping import find_twins, group_runs
from assist.report.paired import find_controls
from assist.report.synthetic import BASE_CONFIG, write_run

ARCH_TRAINED, EPOCHS = 1000, 3


def craft(root, name, strategy, seed, accuracies, seconds, trained, scored=0, fraction=None, extra=None, **keys):
    config = {**BASE_CONFIG, "epochs": EPOCHS, "rng_seed": seed, "strategy": strategy,
              "strategy_options": {} if fraction is None else {"fraction": fraction}, **keys}
    rows = []
    for i, (accuracy, second) in enumerate(zip(accuracies, seconds)):
        rows.append({"epoch": i + 1, "test_accuracy": accuracy, "train_accuracy": accuracy, "train_time_s": second,
                     "wall_clock_s": second + 0.1, "steps": 10, "samples_trained": trained, "samples_scored": scored,
                     "cum_samples_trained": trained * (i + 1), "cum_samples_scored": scored * (i + 1),
                     "test_loss_mean": 1.0, "train_loss_mean": 1.0, **((extra or [{}] * EPOCHS)[i])})
    return write_run(root / name, config, rows)


def arch_final(seed):
    return 0.90 + 0.01 * seed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per seed: the archetype; infobatch (budget 0.4), which beats its rs2 control on every
    measure; selective_backprop (budget 0.6, it also scores), which loses to its rs2 control on
    every measure; an rs2 run at 0.41 (no one's control); a random_subset at 0.4 on seed 1 only."""
    root = tmp_path_factory.mktemp("paired")
    for s in range(3):
        a = arch_final(s)
        craft(root, f"arch-{s}", "archetype", s, [0.6, 0.8, a], [1, 2, 3], ARCH_TRAINED)
        craft(root, f"ib-{s}", "infobatch", s, [a + 0.02 + 0.005 * s] * 3, [0.4 + 0.05 * s, 0.8, 1.2], 400)
        craft(root, f"ib-rs2-{s}", "rs2", s, [0.5, a, a - 0.003 - 0.002 * s], [0.4, 0.8 + 0.07 * s, 1.2], 400,
              fraction=0.4)
        craft(root, f"sb-{s}", "selective_backprop", s, [0.5, 0.7, a], [1.1, 2.2, 3.3 + 0.1 * s], 600, scored=1000)
        craft(root, f"sb-rs2-{s}", "rs2", s, [a + 0.01 + 0.003 * s] * 3, [0.6 + 0.02 * s, 1.2, 1.8], 600,
              fraction=0.6)
        craft(root, f"a-rs2-off-{s}", "rs2", s, [0.5, 0.6, 0.7], [0.4, 0.8, 1.2], 410, fraction=0.41)
    craft(root, "rsub-1", "random_subset", 1, [0.5, 0.6, 0.7], [0.4, 0.8, 1.2], 400, fraction=0.4)
    return root


def test_a_control_is_the_same_seeds_control_run_at_the_strategys_budget(runs):
    rs = load_runs(runs)
    controls = find_controls(rs, list(rs.runs.index), find_twins(rs), run_histories(rs))
    assert controls == {"ib-0": {"rs2": "ib-rs2-0"}, "ib-1": {"rs2": "ib-rs2-1", "random_subset": "rsub-1"},
                        "ib-2": {"rs2": "ib-rs2-2"}, "sb-0": {"rs2": "sb-rs2-0"}, "sb-1": {"rs2": "sb-rs2-1"},
                        "sb-2": {"rs2": "sb-rs2-2"}}


def test_the_verdict_table_of_a_win_and_a_loss(runs, tmp_path, capsys):
    report = build_report(load_runs(runs), figures=False)
    rows = {(row[0], row[1]): row for row in report.groups[0].paired.rows}
    win, loss = rows[("infobatch", "rs2")], rows[("selective backprop", "rs2")]
    assert win[2] == "3" and win[4] == win[6] == win[8] == "better"
    assert win[7].startswith("-400 [-400, -400]")       # 400 passes at epoch 1 against 800 at epoch 2, every seed
    assert loss[4] == loss[6] == loss[8] == "worse"
    assert rows[("infobatch", "archetype")][4] == "better"
    assert rows[("infobatch", "random_subset")][4] == "cannot judge (1 seed; 3 needed)"
    # selective backprop's accuracy equals its twin's on every seed: a point interval at zero
    assert rows[("selective backprop", "archetype")][3] == "+0.00 pt [+0.00, +0.00]"
    assert rows[("selective backprop", "archetype")][4] == "no measurable difference"

    assert cli_report(runs, tmp_path / "md", "md", progress=False) == 0
    printed = capsys.readouterr().out
    block = printed[printed.index("Paired verdicts"):].splitlines()
    assert any(line.startswith("infobatch") and line.endswith("better") for line in block)
    markdown = (tmp_path / "md" / "report.md").read_text()
    assert "| infobatch | rs2 | 3 | +" in markdown and "| better | -400 [-400, -400] | better |" in markdown
    assert cli_report(runs, tmp_path / "html", "html", progress=False) == 0
    page = (tmp_path / "html" / "report.html").read_text()
    table = page[page.index("<h3>Paired verdicts</h3>"):]
    table = table[:table.index("</table>")]
    assert "report-table paired" in table and escape("selective backprop") in table
    assert table.count('<td class="text verdict better">better</td>') == 6
    assert table.count('<td class="text verdict worse">worse</td>') == 6
    # the controls are judged beside their strategies, not again as strategies of their own;
    # the rs2 run at 0.41, no one's control, is judged as a strategy
    judged = sorted(name for name, against in rows if against == "archetype" and name.startswith(("rs2", "random")))
    assert len(judged) == 1 and "0.41" in judged[0]


def test_who_gets_trained_figure_and_balanced_accuracy(tmp_path):
    shares = lambda noisy, rare: [{"trained_noisy_share": noisy[i], "data_noisy_share": 0.2,
                                   "trained_rare_share": rare[i], "data_rare_share": 0.1,
                                   "test_balanced_accuracy": 0.8 + 0.01 * i, "trained_class_share": [0.5, 0.5],
                                   "train_class_counts": [900, 100], "test_class_accuracy": [0.9, 0.7]}
                                  for i in range(EPOCHS)]
    for s in range(2):
        craft(tmp_path / "runs", f"arch-{s}", "archetype", s, [0.6, 0.8, 0.9], [1, 2, 3], ARCH_TRAINED,
              extra=shares([0.2] * 3, [0.1] * 3))
        craft(tmp_path / "runs", f"ib-{s}", "infobatch", s, [0.6, 0.8, 0.9], [1, 2, 3], 400,
              extra=shares([0.3, 0.4, 0.5], [0.15, 0.2, 0.25]))
    plain = {"trained_noisy_share": None, "data_noisy_share": None, "trained_rare_share": None,
             "data_rare_share": None}
    craft(tmp_path / "runs", "other/arch", "archetype", 0, [0.6, 0.8, 0.9], [1, 2, 3], 500, extra=[plain] * EPOCHS,
          batch_size=128)
    report = build_report(load_runs(tmp_path / "runs"), tmp_path / "out", formats=("png",))
    kinds = [[f.kind for s in g.figures for f in s.figures] for g in report.groups]
    with_shares, without = sorted(kinds, key=len, reverse=True)
    assert "shares" in with_shares and "shares" not in without
    group = next(g for g in report.groups if "shares" in [f.kind for s in g.figures for f in s.figures])
    assert ("Balanced accuracy", "Test") in group.table.header
    at = group.table.header.index(("Balanced accuracy", "Test"))
    assert group.table.rows[0][at] == "0.820 ± 0.000"   # the archetype, 2 seeds
    other = next(g for g in report.groups if g is not group)
    assert ("Balanced accuracy", "Test") not in other.table.header
