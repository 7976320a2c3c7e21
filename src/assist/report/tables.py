"""The thesis's tables as DataFrames: comparison per group (Table 4.4 layout) and Appendix II.

Comparison rows: per strategy variant (archetype first), the *completed* runs averaged over
seeds (mean ± sample std, n). Ratios are test÷train per run, then averaged, so a ratio's
spread is the spread of the seeds' ratios. Runs that did not complete get rows of their own,
marked with their status; they never enter an average.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from assist.report.grouping import Group, find_twins, seed_of
from assist.report.keys import KEY_PARAMETERS, RUN_LOCAL_KEYS, SEED_KEY, STRATEGY_KEYS, label_order
from assist.report.loading import RunSet

# (column title, metric suffix) in the thesis's order.
TABLE_METRICS = (("Accuracy", "accuracy"), ("Mean loss", "loss_mean"),
                 ("Q=0.9 loss", "loss_q90"), ("Worst loss", "loss_worst"))
PARTS = (("Train", "train"), ("Test", "test"), ("Ratio", "ratio"))


@dataclass
class Table:
    """A table ready to render: ``header`` holds (group title, column title) per column so
    HTML can span the group title over its columns; ``rows`` hold display strings and
    ``classes`` a CSS class per row (the status)."""

    title: str
    header: list[tuple[str, str]]
    rows: list[list[str]]
    classes: list[str]
    data: pd.DataFrame  # the numbers behind the rows, for CSV


def fmt(value: Any) -> str:
    """Three decimals like the thesis; tiny and huge values in scientific notation."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "✓" if value else "✗"
    if isinstance(value, (int, np.integer)):
        return str(value)
    if not isinstance(value, (float, np.floating)):
        return str(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.2e}"
    return f"{value:.3f}"


def fmt_mean_std(mean: float, std: float, n: int) -> str:
    if n > 1 and not (isinstance(std, float) and math.isnan(std)):
        return f"{fmt(mean)} ± {fmt(std)}"
    return fmt(mean)


def _numeric(runs: pd.DataFrame, column: str) -> pd.Series:
    if column not in runs:
        return pd.Series(np.nan, index=runs.index, dtype=float)
    return pd.to_numeric(runs[column], errors="coerce").astype(float)


def run_values(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: train, test and test÷train for each table metric."""
    out = pd.DataFrame(index=runs.index)
    for _, metric in TABLE_METRICS:
        train = _numeric(runs, f"final_train_{metric}")
        test = _numeric(runs, f"final_test_{metric}")
        out[f"{metric}_train"] = train
        out[f"{metric}_test"] = test
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = test / train.where(train != 0)
        out[f"{metric}_ratio"] = ratio.replace([np.inf, -np.inf], np.nan)
    return out


def _status_text(row: pd.Series) -> str:
    planned = row.get("epochs_planned")
    done = f"{row['epochs_completed']}/{int(planned)}" if planned is not None and not pd.isna(planned) else str(row["epochs_completed"])
    return f"{row['status']} at epoch {done}"


def comparison_table(runset: RunSet, group: Group, twins: Optional[dict] = None) -> Table:
    """One group's comparison table in the thesis layout."""
    twins = find_twins(runset) if twins is None else twins
    runs = runset.runs
    values = run_values(runs.loc[group.runs])
    records: list[dict[str, Any]] = []
    for sub in group.subgroups:
        members = runs.loc[sub.runs]
        for label in label_order(members["label"]):
            of_label = members[members["label"] == label]
            done = of_label[of_label["status"] == "completed"]
            if len(done):
                seeds = [seed_of(runset, r) for r in done.index]
                notes = []
                if label != "archetype":
                    lonely = [str(seed_of(runset, r)) for r in done.index
                              if twins.get(r) is None or runs.at[twins[r], "status"] != "completed"]
                    if lonely:
                        notes.append(f"no completed archetype twin (seed {', '.join(lonely)})")
                if len(set(map(str, seeds))) < len(seeds):
                    notes.append("several runs share a seed")
                record = {**sub.values, "strategy": label, "status": "completed",
                          "n": len(done), "seeds": ", ".join(map(str, sorted(seeds, key=str))),
                          "note": "; ".join(notes)}
                block = values.loc[done.index]
                for column in block.columns:
                    record[f"{column}_mean"] = block[column].mean()
                    record[f"{column}_std"] = block[column].std(ddof=1) if len(done) > 1 else np.nan
                records.append(record)
            for run, row in of_label[of_label["status"] != "completed"].iterrows():
                reason = row.get("reason")
                record = {**sub.values, "strategy": label, "status": _status_text(row), "n": 1,
                          "seeds": str(seed_of(runset, run)),
                          "note": reason if isinstance(reason, str) else ""}
                for column in values.columns:
                    record[f"{column}_mean"] = values.at[run, column]
                    record[f"{column}_std"] = np.nan
                records.append(record)
    data = pd.DataFrame.from_records(records)
    header = [("", k) for k in group.row_keys] + [("", "Strategy"), ("", "Status"), ("", "n")]
    header += [(title, part) for title, _ in TABLE_METRICS for part, _ in PARTS] + [("", "Note")]
    rows, classes = [], []
    for rec in records:
        cells = [fmt(rec.get(k)) for k in group.row_keys]
        cells += [rec["strategy"], rec["status"], str(rec["n"])]
        for _, metric in TABLE_METRICS:
            for _, part in PARTS:
                cells.append(fmt_mean_std(rec[f"{metric}_{part}_mean"], rec[f"{metric}_{part}_std"], rec["n"]))
        cells.append(rec["note"])
        rows.append(cells)
        classes.append("completed" if rec["status"] == "completed" else "not-completed")
    return Table(group.title, header, rows, classes, data)


def appendix_columns(runset: RunSet) -> list[str]:
    """The thesis's Appendix II parameters present in these runs, then other keys that vary."""
    keys = [k for k in KEY_PARAMETERS if k in runset.config_keys]
    skip = set(keys) | set(STRATEGY_KEYS) | RUN_LOCAL_KEYS | {SEED_KEY}
    for key in runset.config_keys:
        if key not in skip and key in runset.runs and runset.runs[key].astype(str).nunique() > 1:
            keys.append(key)
    return keys


def appendix_table(runset: RunSet, groups: list[Group], twins: Optional[dict] = None) -> Table:
    """Every run: its parameters, final metrics, wall-clock and whether it ran to completion."""
    twins = find_twins(runset) if twins is None else twins
    runs = runset.runs
    params = appendix_columns(runset)
    values = run_values(runs)
    header = [("", "Group"), ("", "Run"), ("", "Strategy"), ("", "Seed")]
    header += [("Parameters", k) for k in params]
    header += [("", "Ran to completion"), ("", "Status"), ("", "Epochs"), ("", "Wall-clock (s)")]
    header += [(title, part) for title, metric in TABLE_METRICS for part, _ in PARTS[:2]]
    header += [("", "Archetype twin")]
    rows, classes, records = [], [], []
    for group in groups:
        for run in group.runs:
            row = runs.loc[run]
            done = row["status"] == "completed"
            twin = twins.get(run, "—") if row["strategy"] != "archetype" else "(is archetype)"
            planned = row.get("epochs_planned")
            epochs = f"{row['epochs_completed']}/{'?' if planned is None or pd.isna(planned) else int(planned)}"
            cells = [group.gid, run, row["label"], fmt(seed_of(runset, run))]
            cells += [fmt(runset.configs[run].get(k)) for k in params]
            cells += [fmt(done), row["status"], epochs, fmt(row.get("wall_clock_s"))]
            cells += [fmt(values.at[run, f"{m}_{p}"]) for _, m in TABLE_METRICS for _, p in PARTS[:2]]
            cells.append(twin if twin is not None else "none")
            rows.append(cells)
            classes.append("completed" if done else "not-completed")
            records.append({"group": group.gid, "run": run, "strategy": row["label"],
                            SEED_KEY: seed_of(runset, run),
                            **{k: runset.configs[run].get(k) for k in params},
                            "completed": done, "status": row["status"],
                            "epochs_completed": row["epochs_completed"], "epochs_planned": planned,
                            "wall_clock_s": row.get("wall_clock_s"),
                            **values.loc[run].to_dict(), "twin": twin})
    return Table("Appendix II: all runs", header, rows, classes, pd.DataFrame.from_records(records))
