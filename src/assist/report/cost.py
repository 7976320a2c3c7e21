"""What each strategy cost, per group: the report's cost table (ASSIST's point beside accuracy).

Per strategy variant, over its completed runs: optimizer steps, samples scored (no-grad
selection forwards) and trained (forward + backward), and, run by run against its archetype
twin, the sample passes (scored + trained, RHO-LOSS's reference model included) and the
training time as ratios, then averaged (``assist compare``'s cost rule: a cached reference
model's recorded time is added). Runs without a completed twin have no ratio.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from assist.report.grouping import Group, find_twins
from assist.report.keys import label_order
from assist.report.loading import RunSet
from assist.report.tables import Table, fmt, fmt_mean_std
from assist.tables import run_cost

def run_histories(runset: RunSet) -> dict[str, list[dict[str, Any]]]:
    """Per run, its epochs as the metrics rows it logged (missing values as None)."""
    epochs = runset.epochs.astype(object).where(runset.epochs.notna(), None)
    return {run: frame.sort_values("epoch").to_dict("records") for run, frame in epochs.groupby("run", sort=False)}


def run_costs(runset: RunSet, histories: Optional[dict[str, list[dict[str, Any]]]] = None) -> pd.DataFrame:
    """Per run: steps, samples scored and trained, sample passes and training seconds, counted
    from its epochs as ``assist compare`` counts them (``assist.tables.run_cost``)."""
    records = {}
    for run, rows in (run_histories(runset) if histories is None else histories).items():
        records[run] = run_cost(rows, float(rows[-1].get("train_time_s") or 0.0))
    columns = ["steps", "scored", "trained", "aux_passes", "passes", "time_s"]
    return pd.DataFrame.from_dict(records, orient="index", columns=columns).reindex(runset.runs.index).astype(float)


def twin_ratios(done: list[str], label: str, twins: dict, status: pd.Series,
                costs: pd.DataFrame) -> dict[str, list[float]]:
    """Run by run, sample passes and training time as multiples of the run's completed
    archetype twin (an archetype run is its own twin); runs without one give none."""
    ratios: dict[str, list[float]] = {"passes": [], "time_s": []}
    for run in done:
        twin = run if label == "archetype" else twins.get(run)
        if twin is None or status.get(twin) != "completed":
            continue
        for key in ratios:
            base = costs.at[twin, key]
            if base and not math.isnan(base):
                ratios[key].append(costs.at[run, key] / base)
    return ratios


def cost_table(runset: RunSet, group: Group, twins: Optional[dict] = None,
               costs: Optional[pd.DataFrame] = None) -> Table:
    twins = find_twins(runset) if twins is None else twins
    costs = run_costs(runset) if costs is None else costs
    status, labels = runset.runs["status"], runset.runs["label"]
    header = [("", k) for k in group.row_keys] + [("", "Strategy"), ("", "n")]
    header += [("Work", "Steps"), ("Work", "Samples scored"), ("Work", "Samples trained"),
               ("× archetype twin", "Sample passes"), ("× archetype twin", "Training time")]
    rows, classes, records = [], [], []
    for sub in group.subgroups:
        for label in label_order(labels[r] for r in sub.runs):
            done = [r for r in sub.runs if labels[r] == label and status[r] == "completed"]
            if not done:
                continue
            block = costs.loc[done]
            ratios = twin_ratios(done, label, twins, status, costs)
            record: dict[str, Any] = {**sub.values, "strategy": label, "n": len(done)}
            cells = [fmt(sub.values.get(k)) for k in group.row_keys] + [label, str(len(done))]
            for key in ("steps", "scored", "trained"):
                record[key] = float(block[key].mean())
                cells.append(f"{record[key]:,.0f}" if not math.isnan(record[key]) else "–")
            for key in ("passes", "time_s"):
                values = ratios[key]
                mean = float(np.mean(values)) if values else math.nan
                std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
                record[f"{key}_ratio"], record[f"{key}_ratio_std"] = mean, std
                cells.append(fmt_mean_std(mean, std, len(values)) if values else "no twin")
            rows.append(cells)
            classes.append("completed")
            records.append(record)
    return Table(f"{group.title}: cost", header, rows, classes, pd.DataFrame.from_records(records))
