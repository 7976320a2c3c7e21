"""Paired verdicts: is a strategy better than its reference, seed by seed, with 95% confidence?

A strategy is judged against one reference, its archetype twin or its random control at the
same budget (``assist.strategies.controls``), on the seeds where both ran (each seed shares the
data subset and the initial weights between the two). Three measures, each as the mean of the
per-seed differences (strategy − reference) with a 95% confidence interval from SciPy's paired
bootstrap (``scipy.stats.bootstrap(..., paired=True)``, a fixed seed, so a table is
reproducible), widened to the paired t-interval when there are fewer than 10 pairs
(``interval``):

- final test accuracy (higher is better);
- training seconds to the target (lower is better): the trainer's ``train_time_s`` at the
  first epoch whose test accuracy reaches the target, plus a cached RHO-LOSS reference model's
  recorded time, as ``assist.tables.run_cost`` counts it;
- sample passes to the target (lower is better): samples scored + trained up to that epoch,
  RHO-LOSS's auxiliary passes included (``run_cost`` again).

The target of a seed is the archetype twin's final test accuracy of that seed minus a margin
(0.5 points unless told). Accuracy is checked at epoch ends, so "to target" is epoch-granular.

Verdict: 'better' or 'worse' when the interval excludes zero, on the side the measure prefers,
else 'no measurable difference'; with fewer than 3 paired seeds 'cannot judge (N seeds; 3
needed)' (the interval is still shown). When every difference is the same number the interval
is that number.

Runs that never reach the target (docs/peers.md, "Random controls and paired verdicts"): a run
that does not reach it within its epochs has no time to it. Time and passes are compared on the
pairs where both runs reached the target, and the table says on how many seeds each side
reached it ("reached 2/3 vs 3/3") whenever that is not every pair; fewer than 3 such pairs
cannot be judged. A side that missed the target on a seed where the other side reached it is
never called better on time or passes (the pairs left would flatter it): such a verdict is
given as 'no measurable difference'. How far short it fell shows in the accuracy column.
"""

from __future__ import annotations

import inspect
import textwrap
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from assist.strategies.controls import budget_fraction
from assist.tables import run_cost

MARGIN = 0.005          # the target: the archetype twin's final accuracy − 0.5 points
MIN_SEEDS = 3           # fewer paired seeds cannot be judged
CONFIDENCE = 0.95
SMALL_SAMPLE = 10       # fewer pairs: the interval also holds the paired t-interval (see ``interval``)
BOOTSTRAP_SEED = 24     # the bootstrap's random stream: the same runs give the same intervals
BETTER, SAME, WORSE = "better", "no measurable difference", "worse"
# (name, what the table calls it, whether higher is better)
MEASURES = (("accuracy", "test accuracy", True), ("seconds", "s to target", False),
            ("passes", "passes to target", False))


@dataclass(frozen=True)
class Outcome:
    """What a verdict needs of one run: its final test accuracy and, per epoch, the test
    accuracy with the training seconds and sample passes spent up to that epoch's end."""

    final_accuracy: float
    curve: tuple[tuple[float, float, float], ...]   # (test accuracy, seconds, passes) per epoch

    def reach(self, target: float) -> Optional[tuple[float, float]]:
        """(seconds, passes) at the first epoch whose test accuracy reaches ``target``."""
        for accuracy, seconds, passes in self.curve:
            if accuracy >= target:
                return seconds, passes
        return None


def outcome(history: Sequence[Mapping[str, Any]]) -> Outcome:
    """A run's outcome from its metrics rows (``metrics.jsonl``, ``RunResult.history``)."""
    rows = [r for r in history if _number(r.get("test_accuracy")) is not None]
    if not rows:
        raise ValueError("outcome: the run has no epoch with a test accuracy")
    curve = []
    for end, row in enumerate(history, start=1):
        accuracy = _number(row.get("test_accuracy"))
        if accuracy is None:
            continue
        cost = run_cost(history[:end], float(_number(row.get("train_time_s")) or 0.0))
        curve.append((accuracy, cost["time_s"], float(cost["passes"])))
    return Outcome(float(rows[-1]["test_accuracy"]), tuple(curve))


def control_budget(strategy_history: Sequence[Mapping[str, Any]],
                   archetype_history: Sequence[Mapping[str, Any]]) -> float:
    """The control's ``fraction`` for a strategy's run: its samples trained over all its epochs
    as a share of its archetype twin's (the twin's samples trained per epoch × the epochs), as
    ``assist compare``, ``assist report`` and bench/budget_curve.py all take it."""
    per_epoch = run_cost(list(archetype_history), 0.0)["trained"] / max(1, len(archetype_history))
    return budget_fraction(run_cost(list(strategy_history), 0.0)["trained"], round(per_epoch),
                           len(strategy_history))


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class Difference:
    """One measure of a verdict: the mean difference (strategy − reference) and its interval."""

    measure: str
    pairs: int                 # pairs judged
    seeds: int                 # paired seeds
    mean: Optional[float]
    low: Optional[float]
    high: Optional[float]
    verdict: str
    reached: Optional[tuple[int, int]] = None   # seeds where the strategy, and the reference, reached the target


@dataclass(frozen=True)
class PairedVerdict:
    strategy: str
    against: str               # "archetype", or the control's kind ("rs2", "random_subset")
    seeds: list = field(default_factory=list)
    accuracy: Optional[Difference] = None
    seconds: Optional[Difference] = None
    passes: Optional[Difference] = None

    def of(self, measure: str) -> Difference:
        return getattr(self, measure)


def interval(strategy: Sequence[float], reference: Sequence[float]) -> tuple[float, float, float]:
    """Mean of the paired differences and its 95% paired-bootstrap interval (BCa, SciPy's
    default; the percentile interval where BCa cannot be computed). All differences equal:
    the interval is that value. With fewer than ``SMALL_SAMPLE`` pairs the interval is widened
    to hold the paired t-interval too: a bootstrap over a handful of values undercovers (over 3
    seeds it excludes zero whenever the three differences share a sign, which noise alone does
    one time in four), and the t-interval keeps the stated 95% for differences that are about
    normal (docs/peers.md, "Random controls and paired verdicts")."""
    from scipy import stats

    a, b = np.asarray(strategy, float), np.asarray(reference, float)
    diffs = a - b
    mean = float(diffs.mean())
    if np.ptp(diffs) <= 1e-12 * max(1.0, abs(mean)):
        return mean, mean, mean
    seed = {"rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state":
            np.random.default_rng(BOOTSTRAP_SEED)}
    statistic = lambda x, y, axis=-1: np.mean(x - y, axis=axis)
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # BCa's own warning when it cannot be computed
            result = stats.bootstrap((a, b), statistic, paired=True, vectorized=True, method=method,
                                     confidence_level=CONFIDENCE, **seed)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            break
    if len(diffs) < SMALL_SAMPLE:
        t = stats.ttest_rel(a, b).confidence_interval(confidence_level=CONFIDENCE)
        low, high = min(low, float(t.low)), max(high, float(t.high))
    return mean, low, high


def _word(low: float, high: float, higher_is_better: bool) -> str:
    if low > 0:
        return BETTER if higher_is_better else WORSE
    if high < 0:
        return WORSE if higher_is_better else BETTER
    return SAME


def cannot_judge(count: int, what: str = "seed") -> str:
    """``cannot judge (1 seed; 3 needed)``, ``cannot judge (2 pairs reached; 3 needed)`` (pairs
    where both runs reached the target)."""
    noun, _, rest = what.partition(" ")
    return f"cannot judge ({count} {noun}{'' if count == 1 else 's'}{' ' + rest if rest else ''}; {MIN_SEEDS} needed)"


def judge(strategy: Sequence[float], reference: Sequence[float], measure: str, seeds: int,
          missed: tuple[bool, bool] = (False, False), reached: Optional[tuple[int, int]] = None) -> Difference:
    """One measure over ``len(strategy)`` pairs (of ``seeds`` paired seeds). ``missed``: whether
    the strategy, and the reference, missed the target on a seed where the other reached it;
    ``reached``: on how many seeds each reached it (time and passes)."""
    higher = next(h for name, _, h in MEASURES if name == measure)
    pairs = len(strategy)
    if pairs == 0:
        word = cannot_judge(seeds) if seeds < MIN_SEEDS else cannot_judge(0, "pair reached")
        return Difference(measure, 0, seeds, None, None, None, word, reached)
    mean, low, high = interval(strategy, reference)
    if seeds < MIN_SEEDS:
        word = cannot_judge(seeds)
    elif pairs < MIN_SEEDS:
        word = cannot_judge(pairs, "pair reached")
    else:
        word = _word(low, high, higher)
        if word == BETTER and missed[0] or word == WORSE and missed[1]:
            word = SAME   # the side that missed somewhere is never called better on its survivors
    return Difference(measure, pairs, seeds, mean, low, high, word, reached)


def paired_verdict(strategy: str, against: str, runs: Mapping[Any, Outcome], references: Mapping[Any, Outcome],
                   archetypes: Mapping[Any, Outcome], margin: float = MARGIN) -> PairedVerdict:
    """The verdict of a strategy (``runs``: its outcome per seed) against a reference
    (``references``, per seed), the targets from the archetype twins (``archetypes``, per
    seed; the same mapping as ``references`` against the archetype). Seeds missing on any
    side are left out."""
    seeds = sorted((s for s in runs if s in references and s in archetypes), key=str)
    acc = judge([runs[s].final_accuracy for s in seeds], [references[s].final_accuracy for s in seeds],
                "accuracy", len(seeds))
    both, missed, reached = [], [False, False], [0, 0]
    for s in seeds:
        target = archetypes[s].final_accuracy - margin
        mine, theirs = runs[s].reach(target), references[s].reach(target)
        reached[0] += mine is not None
        reached[1] += theirs is not None
        if mine is not None and theirs is not None:
            both.append((mine, theirs))
        elif mine is None and theirs is not None:
            missed[0] = True
        elif theirs is None and mine is not None:
            missed[1] = True
    cost = {measure: judge([m[i] for m, _ in both], [t[i] for _, t in both], measure, len(seeds), tuple(missed),
                           tuple(reached))
            for i, measure in enumerate(("seconds", "passes"))}
    return PairedVerdict(strategy, against, seeds, acc, cost["seconds"], cost["passes"])


# --- how the verdicts read

def cell(diff: Difference) -> str:
    """``+0.42 pt [+0.10, +0.80]`` (accuracy in points), ``-3.1 s [...]``, ``-12,000 [...]``,
    with ``(reached 2/3 vs 3/3)`` (strategy vs reference) when not every pair reached the target."""
    note = ""
    if diff.reached is not None and diff.pairs < diff.seeds:
        note = f" (reached {diff.reached[0]}/{diff.seeds} vs {diff.reached[1]}/{diff.seeds})"
    if diff.mean is None:
        return ("–" + note).strip()
    if diff.measure == "accuracy":
        show, unit = (lambda v: f"{100 * v:+.2f}"), " pt"
    elif diff.measure == "seconds":
        show, unit = (lambda v: f"{v:+.1f}"), " s"
    else:
        show, unit = (lambda v: f"{v:+,.0f}"), ""
    return f"{show(diff.mean)}{unit} [{show(diff.low)}, {show(diff.high)}]{note}"


def table_rows(verdicts: Sequence[PairedVerdict]) -> list[list[str]]:
    """One row per verdict: strategy, against, seeds, then per measure its cell and verdict."""
    rows = []
    for v in verdicts:
        row = [v.strategy, v.against, str(len(v.seeds))]
        for name, _, _ in MEASURES:
            row += [cell(v.of(name)), v.of(name).verdict]
        rows.append(row)
    return rows


def legend(margin: float = MARGIN) -> str:
    return (f"Paired by seed: mean difference (strategy − reference) with its 95% paired-bootstrap interval; "
            f"target = the archetype twin's final test accuracy − {100 * margin:g} pt of the same seed; "
            "time and passes only over the pairs where both reached it (docs/peers.md).")


def verdict_text(verdicts: Sequence[PairedVerdict], margin: float = MARGIN) -> str:
    """The verdicts as plain text for a terminal: one line per strategy, reference and measure
    (the lines stay short where a wide table would not)."""
    if not verdicts:
        return ""
    width = max(len("strategy"), *(len(v.strategy) for v in verdicts))
    against = max(len("against"), *(len(v.against) for v in verdicts))
    cells = {(id(v), name): cell(v.of(name)) for v in verdicts for name, _, _ in MEASURES}
    span = max(len("mean diff [95% CI]"), *(len(c) for c in cells.values()))
    lines = [f"{'strategy':<{width}}  {'against':<{against}}  {'seeds':>5}  {'measure':<16}  "
             f"{'mean diff [95% CI]':<{span}}  verdict"]
    for v in verdicts:
        for k, (name, title, _) in enumerate(MEASURES):
            first = k == 0
            lines.append(f"{v.strategy if first else '':<{width}}  {v.against if first else '':<{against}}  "
                         f"{str(len(v.seeds)) if first else '':>5}  {title:<16}  {cells[(id(v), name)]:<{span}}  "
                         f"{v.of(name).verdict}")
    return "\n".join(textwrap.wrap(legend(margin), 100) + [""] + lines)
