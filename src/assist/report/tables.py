"""The thesis's tables as DataFrames: comparison per group (Table 4.4 layout) and Appendix II.

Comparison rows: per strategy variant (archetype first), the *completed* runs averaged over
seeds (mean ± sample std, n, and the median from three seeds on). Ratios are test÷train per
run, then averaged, so a ratio's spread is the spread of the seeds' ratios. Runs that did not
complete get rows of their own, marked with their status, and so do *collapsed* runs (test
accuracy at chance for their last epochs, ``assist.metrics.collapse``); they never enter an
average.
"""

from __future__ import annotations

import math
import warnings
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
BALANCED, BALANCED_TITLE = "balanced_accuracy_test", "Balanced accuracy"   # shown where some run logged it


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
    """``mean ± std`` with the spread at the mean's precision (``<0.001`` when below it)."""
    if n < 2 or std is None or math.isnan(std):
        return fmt(mean)
    text = fmt(mean)
    if "e" in text or math.isinf(std):
        return f"{text} ± {fmt(std)}"
    spread = f"{std:.3f}"
    return f"{text} ± {'<0.001' if spread == '0.000' and std > 0 else spread}"


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
    out[BALANCED] = _numeric(runs, "final_test_balanced_accuracy")   # runs that log it (per-class test accuracy)
    return out


def _status_text(meta: dict) -> str:
    planned = meta.get("epochs_planned")
    known = planned is not None and not pd.isna(planned)
    return f"{meta['status']} at epoch {meta['epochs_completed']}" + (f"/{int(planned)}" if known else "")


class RunFacts:
    """Per-run facts as plain dicts and one numeric matrix: the tables of hundreds of runs
    are built from these instead of slicing the wide runs DataFrame per row."""

    def __init__(self, runset: RunSet) -> None:
        runs = runset.runs
        values = run_values(runs)
        self.columns = list(values.columns)
        self.values = values.to_numpy(float)
        self.row = {run: i for i, run in enumerate(runs.index)}
        keep = ["label", "status", "strategy", "reason", "epochs_completed", "epochs_planned", "wall_clock_s"]
        self.meta = runs[keep].to_dict("index")

    def block(self, runs: list[str]) -> np.ndarray:
        return self.values[[self.row[r] for r in runs]]


def comparison_table(runset: RunSet, group: Group, twins: Optional[dict] = None,
                     facts: Optional[RunFacts] = None) -> Table:
    """One group's comparison table in the thesis layout."""
    twins = find_twins(runset) if twins is None else twins
    facts = RunFacts(runset) if facts is None else facts
    meta = facts.meta
    records: list[dict[str, Any]] = []
    for sub in group.subgroups:
        for label in label_order(meta[r]["label"] for r in sub.runs):
            of_label = [r for r in sub.runs if meta[r]["label"] == label]
            done = [r for r in of_label if meta[r]["status"] == "completed"]
            if done:
                seeds = [seed_of(runset, r) for r in done]
                notes = []
                if label != "archetype":
                    lonely = [str(seed_of(runset, r)) for r in done
                              if twins.get(r) is None or meta[twins[r]]["status"] != "completed"]
                    if lonely:
                        notes.append(f"no completed archetype twin (seed {', '.join(lonely)})")
                if len(set(map(str, seeds))) < len(seeds):
                    notes.append("several runs share a seed")
                collapsed = [str(seed_of(runset, r)) for r in of_label if meta[r]["status"] == "collapsed"]
                if collapsed:
                    notes.append(f"collapsed seed {', '.join(collapsed)} shown apart, not averaged")
                record = {**sub.values, "strategy": label, "status": "completed",
                          "n": len(done), "seeds": ", ".join(map(str, sorted(seeds, key=str))),
                          "note": "; ".join(notes)}
                block = facts.block(done)
                with np.errstate(all="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a metric missing in all runs
                    means = np.nanmean(block, axis=0)
                    stds = np.nanstd(block, axis=0, ddof=1) if len(done) > 1 else np.full(len(means), np.nan)
                    medians = np.nanmedian(block, axis=0)
                for column, mean, std, median in zip(facts.columns, means, stds, medians):
                    record[f"{column}_mean"], record[f"{column}_std"] = float(mean), float(std)
                    record[f"{column}_median"] = float(median)
                records.append(record)
            for run in (r for r in of_label if meta[r]["status"] != "completed"):
                reason = meta[run]["reason"]
                record = {**sub.values, "strategy": label, "status": _status_text(meta[run]), "n": 1,
                          "seeds": str(seed_of(runset, run)),
                          "note": reason if isinstance(reason, str) else ""}
                for column, value in zip(facts.columns, facts.block([run])[0]):
                    record[f"{column}_mean"], record[f"{column}_std"] = float(value), np.nan
                    record[f"{column}_median"] = float(value)
                records.append(record)
    data = pd.DataFrame.from_records(records)
    header = [("", k) for k in group.row_keys] + [("", "Strategy"), ("", "Status"), ("", "n")]
    header += [(title, part) for title, _ in TABLE_METRICS for part, _ in PARTS]
    balanced = bool(records) and bool(data.get(f"{BALANCED}_mean", pd.Series(dtype=float)).notna().any())
    header += [(BALANCED_TITLE, "Test")] if balanced else []
    header += [("", "Note")]
    rows, classes = [], []
    for rec in records:
        cells = [fmt(rec.get(k)) for k in group.row_keys]
        cells += [rec["strategy"], rec["status"], str(rec["n"])]
        for _, metric in TABLE_METRICS:
            for _, part in PARTS:
                cell = fmt_mean_std(rec[f"{metric}_{part}_mean"], rec[f"{metric}_{part}_std"], rec["n"])
                if rec["n"] >= 3:  # a mean of few seeds hides an outlier; the median does not
                    cell += f" (med {fmt(rec[f'{metric}_{part}_median'])})"
                cells.append(cell)
        if balanced:
            cell = fmt_mean_std(rec[f"{BALANCED}_mean"], rec[f"{BALANCED}_std"], rec["n"])
            cells.append(cell + (f" (med {fmt(rec[f'{BALANCED}_median'])})" if rec["n"] >= 3 else ""))
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


def appendix_table(runset: RunSet, groups: list[Group], twins: Optional[dict] = None,
                   facts: Optional[RunFacts] = None) -> Table:
    """Every run: its parameters, final metrics, wall-clock and whether it ran to completion."""
    twins = find_twins(runset) if twins is None else twins
    facts = RunFacts(runset) if facts is None else facts
    params = appendix_columns(runset)
    shown = [facts.columns.index(f"{m}_{p}") for _, m in TABLE_METRICS for _, p in PARTS[:2]]
    header = [("", "Group"), ("", "Run"), ("", "Strategy"), ("", "Seed")]
    header += [("Parameters", k) for k in params]
    header += [("", "Ran to completion"), ("", "Status"), ("", "Epochs"), ("", "Wall-clock (s)")]
    header += [(title, part) for title, metric in TABLE_METRICS for part, _ in PARTS[:2]]
    header += [("", "Archetype twin")]
    rows, classes, records = [], [], []
    for group in groups:
        for run in group.runs:
            meta, config = facts.meta[run], runset.configs[run]
            values = facts.block([run])[0]
            done = meta["status"] == "completed"
            twin = twins.get(run, "—") if meta["strategy"] != "archetype" else "(is archetype)"
            planned = meta["epochs_planned"]
            epochs = f"{meta['epochs_completed']}/{'?' if planned is None or pd.isna(planned) else int(planned)}"
            cells = [group.gid, run, meta["label"], fmt(config.get(SEED_KEY))]
            cells += [fmt(config.get(k)) for k in params]
            cells += [fmt(done), meta["status"], epochs, fmt(meta["wall_clock_s"])]
            cells += [fmt(float(values[i])) for i in shown]
            cells.append(twin if twin is not None else "none")
            rows.append(cells)
            classes.append("completed" if done else "not-completed")
            records.append({"group": group.gid, "run": run, "strategy": meta["label"],
                            SEED_KEY: config.get(SEED_KEY), **{k: config.get(k) for k in params},
                            "completed": done, "status": meta["status"],
                            "epochs_completed": meta["epochs_completed"], "epochs_planned": planned,
                            "wall_clock_s": meta["wall_clock_s"],
                            **dict(zip(facts.columns, values.tolist())), "twin": twin})
    return Table("All runs: parameters and final values (the thesis's Appendix II)", header, rows, classes, pd.DataFrame.from_records(records))
