"""What each strategy cost, per group: the report's cost table (ASSIST's point beside accuracy).

Per strategy variant, over its completed runs: optimizer steps, samples scored (no-grad
selection forwards) and trained (forward + backward), and, run by run against its archetype
twin, the sample passes (scored + trained, RHO-LOSS's reference model included) and the
training time as ratios, then averaged. Runs without a completed twin have no ratio.
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

AUX = ("rho_il_samples_trained", "rho_il_samples_scored")


def run_costs(runset: RunSet) -> pd.DataFrame:
    """Per run: steps, scored, trained, passes (auxiliary models included) and training seconds."""
    runs, epochs = runset.runs, runset.epochs
    number = lambda column: pd.to_numeric(runs.get(column), errors="coerce") if column in runs else \
        pd.Series(np.nan, index=runs.index)
    aux = pd.Series(0.0, index=runs.index)
    for column in AUX:
        if column in epochs:
            aux = aux.add(pd.to_numeric(epochs[column], errors="coerce").groupby(epochs["run"]).sum(), fill_value=0.0)
    scored, trained = number("final_cum_samples_scored").fillna(0), number("final_cum_samples_trained")
    return pd.DataFrame({"steps": number("final_total_steps"), "scored": scored, "trained": trained,
                         "passes": scored + trained + aux.reindex(runs.index).fillna(0.0),
                         "time_s": number("final_train_time_s")}, index=runs.index)


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
            ratios: dict[str, list[float]] = {"passes": [], "time_s": []}
            for run in done:
                twin = run if label == "archetype" else twins.get(run)
                if twin is None or status.get(twin) != "completed":
                    continue
                for key in ratios:
                    base = costs.at[twin, key]
                    if base and not math.isnan(base):
                        ratios[key].append(costs.at[run, key] / base)
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
