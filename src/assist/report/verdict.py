"""The line read first about each strategy of a group, as ``assist compare`` prints it: test
accuracy against the archetype twin's, and sample passes and training time as multiples of the
twin's (``assist.tables.verdict`` words it for both).

Over seeds, every number is taken run by run against the run's own completed twin and then
averaged, as the cost table does (``report.cost.twin_ratios``), so the line agrees with the
tables below it; runs that did not complete, and runs without a completed twin, are left out.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from assist.report.cost import twin_ratios
from assist.report.grouping import Group
from assist.report.keys import ARCHETYPE, label_order
from assist.report.loading import RunSet
from assist.report.tables import fmt
from assist.tables import verdict


def _accuracy(runset: RunSet, run: str) -> Optional[float]:
    value = runset.runs.at[run, "final_test_accuracy"] if "final_test_accuracy" in runset.runs else None
    return None if value is None or pd.isna(value) else float(value)


def group_verdicts(runset: RunSet, group: Group, twins: dict, costs: pd.DataFrame) -> list[str]:
    """One line per strategy of each subgroup (prefixed by its row keys' values)."""
    status, labels = runset.runs["status"], runset.runs["label"]
    lines = []
    for sub in group.subgroups:
        prefix = "".join(f"{k}={fmt(v)}, " for k, v in sub.values.items())
        for label in label_order(labels[r] for r in sub.runs):
            if label == ARCHETYPE:
                continue
            done = [r for r in sub.runs if labels[r] == label and status[r] == "completed"]
            paired = [r for r in done if twins.get(r) is not None and status.get(twins[r]) == "completed"]
            if not paired:
                what = "no completed run" if not done else "no completed archetype twin to compare with"
                lines.append(f"{prefix}{label}: {what}")
                continue
            accuracy = [(_accuracy(runset, r), _accuracy(runset, twins[r])) for r in paired]
            accuracy = [(a, b) for a, b in accuracy if a is not None and b is not None]
            ratios = twin_ratios(paired, label, twins, status, costs)
            mean = lambda values: float(np.mean(values)) if values else math.nan
            line = verdict(label, mean([a for a, _ in accuracy]) if accuracy else None,
                           mean([b for _, b in accuracy]) if accuracy else None,
                           mean(ratios["passes"]), mean(ratios["time_s"]))
            seeds = f" (mean over {len(paired)} seeds)" if len(paired) > 1 else ""
            lines.append(f"{prefix}{line}{seeds}")
    return lines
