"""Paired verdicts (assist.verdicts) on outcomes whose answer is known: a clear win, a tie, a
loss, too few seeds, equal differences, and runs that never reach the target."""

import pytest

from assist.verdicts import (BETTER, SAME, WORSE, Outcome, control_budget, interval, outcome, paired_verdict,
                             verdict_text)


def run(final: float, reach_at: float, passes: float) -> Outcome:
    """A run that sits at 0.5 until it jumps to ``final`` at second ``reach_at``."""
    return Outcome(final, ((0.5, reach_at / 2, passes / 2), (final, reach_at, passes), (final, 2 * reach_at, 2 * passes)))


ARCHETYPES = {s: run(0.90 + 0.01 * s, 10.0, 1000) for s in range(4)}


def verdict(strategy: dict, reference: dict):
    return paired_verdict("s", "rs2", strategy, reference, ARCHETYPES)


def test_a_clear_win_a_tie_and_a_loss():
    # the strategy beats its control on every seed by a margin, on every measure
    strong = {s: run(0.92 + 0.01 * s + 0.002 * s, 4.0 + 0.3 * s, 400 + 10 * s) for s in range(4)}
    weak = {s: run(0.90 + 0.01 * s - 0.001 * s, 9.0 + 0.2 * s, 900 + 30 * s) for s in range(4)}
    win = verdict(strong, weak)
    assert [win.of(m).verdict for m in ("accuracy", "seconds", "passes")] == [BETTER, BETTER, BETTER]
    assert win.accuracy.low > 0 and win.seconds.high < 0 and win.passes.high < 0
    assert win.accuracy.mean == pytest.approx(0.02 + 0.003 * 1.5)
    loss = verdict(weak, strong)
    assert [loss.of(m).verdict for m in ("accuracy", "seconds", "passes")] == [WORSE, WORSE, WORSE]
    # differences symmetric around zero
    jitter = (+1, -1, +2, -2)
    a = {s: run(0.905 + 0.01 * s + 0.001 * j, 8.0 + 0.5 * j, 800 + 50 * j) for s, j in enumerate(jitter)}
    b = {s: run(0.905 + 0.01 * s - 0.001 * j, 8.0 - 0.5 * j, 800 - 50 * j) for s, j in enumerate(jitter)}
    tie = verdict(a, b)
    assert [tie.of(m).verdict for m in ("accuracy", "seconds", "passes")] == [SAME, SAME, SAME]
    assert tie.accuracy.low < 0 < tie.accuracy.high and tie.accuracy.mean == pytest.approx(0.0)
    # the bootstrap's stream is fixed: the same runs give the same intervals
    assert verdict(strong, weak) == win
    text = verdict_text([win, tie, loss])
    assert "test accuracy" in text and "better" in text and "worse" in text and "no measurable difference" in text
    assert max(len(line) for line in text.splitlines()) <= 120


def test_fewer_than_three_seeds_cannot_be_judged():
    strong = {s: run(0.95, 4.0 + s, 400) for s in range(2)}
    weak = {s: run(0.90, 9.0, 900) for s in range(2)}
    two = verdict(strong, weak)
    assert {two.of(m).verdict for m in ("accuracy", "seconds", "passes")} == {"cannot judge (2 seeds; 3 needed)"}
    one = verdict({0: strong[0]}, {0: weak[0]})
    assert one.accuracy.verdict == "cannot judge (1 seed; 3 needed)" and one.accuracy.mean == pytest.approx(0.05)


def test_equal_differences_give_their_value_as_the_interval():
    assert interval([3.0, 4.0, 5.0], [1.0, 2.0, 3.0]) == (2.0, 2.0, 2.0)
    assert interval([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]) == (0.0, 0.0, 0.0)
    same = verdict({s: run(0.95, 5.0, 500) for s in range(3)}, {s: run(0.95, 5.0, 500) for s in range(3)})
    assert same.passes.verdict == SAME and (same.passes.low, same.passes.high) == (0.0, 0.0)


def test_a_side_that_missed_the_target_is_never_called_better():
    # faster than the control on the 3 seeds where both reached it, but short of it on seed 3
    fast = {s: run(0.95 + 0.01 * s, 3.0 + 0.1 * s, 300 + 7 * s) for s in range(3)}
    fast[3] = run(0.80, 3.0, 300)            # the archetype's target on seed 3 is 0.925
    slow = {s: run(0.95 + 0.01 * s, 9.0 + 0.2 * s, 900 + 11 * s) for s in range(4)}
    v = verdict(fast, slow)
    assert v.seconds.pairs == 3 and v.seconds.seeds == 4 and v.seconds.high < 0
    assert v.seconds.verdict == SAME and v.passes.verdict == SAME and v.seconds.reached == (3, 4)
    assert "(reached 3/4 vs 4/4)" in verdict_text([v])
    # the control that missed cannot make the strategy worse either; with fewer than 3 pairs left: no verdict
    assert verdict(slow, fast).seconds.verdict == SAME
    never = verdict({s: run(0.80, 3.0, 300) for s in range(4)}, slow)
    assert never.seconds.verdict == "cannot judge (0 pairs reached; 3 needed)"
    assert never.accuracy.verdict == WORSE


def test_outcome_counts_passes_and_seconds_as_the_cost_table():
    history = [
        {"epoch": 1, "test_accuracy": 0.5, "train_time_s": 2.0, "samples_scored": 100, "samples_trained": 50,
         "rho_il_samples_scored": 30, "rho_il_samples_trained": 70, "rho_il_cached": True, "rho_il_time_s": 5.0},
        {"epoch": 2, "test_accuracy": 0.9, "train_time_s": 4.0, "samples_scored": 100, "samples_trained": 40},
    ]
    result = outcome(history)
    assert result.final_accuracy == 0.9
    assert result.reach(0.8) == (9.0, 100 + 50 + 100 + 100 + 40)   # the cached model's seconds and passes count
    assert result.reach(0.95) is None


def test_control_budget_is_the_share_of_the_twins_sample_steps():
    archetype = [{"samples_trained": 1000}] * 4
    strategy = [{"samples_trained": 500}, {"samples_trained": 300}, {"samples_trained": 200}, {"samples_trained": 234}]
    assert control_budget(strategy, archetype) == round(1234 / 4000, 4)


def test_the_budget_curve_benchmark_judges_its_runs_by_the_same_rule():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from budget_curve import control_of, verdicts

    def bench_run(label, seed, accuracies, trained):
        return {"label": label, "seed": seed, "il_sample_passes": 0,
                "history": [{"epoch": i + 1, "test_accuracy": a, "train_time_s": float(i + 1), "samples_scored": 0,
                             "samples_trained": trained} for i, a in enumerate(accuracies)]}

    runs = []
    for s in range(3):
        runs += [bench_run("archetype", s, [0.6, 0.9 + 0.01 * s], 100),
                 bench_run("infobatch", s, [0.95 + 0.01 * s] * 2, 50),
                 bench_run("rs2 @ infobatch", s, [0.5, 0.7 - 0.02 * s], 50)]
    assert control_of("rs2 @ infobatch") == ("rs2", "infobatch") and control_of("infobatch") is None
    found = verdicts(runs, ["archetype", "infobatch", "rs2 @ infobatch"])
    assert [(v.strategy, v.against) for v in found] == [("infobatch", "archetype"), ("infobatch", "rs2")]
    assert found[0].accuracy.verdict == BETTER and found[0].passes.verdict == BETTER
    assert found[1].accuracy.verdict == BETTER and found[1].seconds.verdict == "cannot judge (0 pairs reached; 3 needed)"


def test_three_noisy_differences_of_one_sign_are_not_enough():
    # a bootstrap over 3 values excludes zero whenever they share a sign; the t-interval does not
    from scipy import stats
    import numpy as np

    ours, theirs = [0.901, 0.95, 1.0], [0.9, 0.9, 0.9]
    mean, low, high = interval(ours, theirs)
    t = stats.ttest_rel(ours, theirs).confidence_interval(confidence_level=0.95)
    assert low <= t.low < 0 < high and high >= t.high and mean == pytest.approx(np.mean(ours) - 0.9)
    noisy = {s: run(a, 10.0, 1000) for s, a in enumerate(ours)}
    flat = {s: run(b, 10.0, 1000) for s, b in enumerate(theirs)}
    assert verdict(noisy, flat).accuracy.verdict == SAME
    # a consistent difference of the same size is still found
    steady = {s: run(b + 0.05 + 0.001 * s, 10.0, 1000) for s, b in enumerate(theirs)}
    assert verdict(steady, flat).accuracy.verdict == BETTER
