"""Measured results beside the thesis's published ones (``assist report RUNS --thesis 4.4``).

The thesis's final values (Tables 4.4-4.9, single runs) live in ``data/thesis_tables.json``
with a note on how each table was read from its text (docs/thesis.md). Each measured cell is
shown as ``measured (thesis)``. The *finding* column checks the thesis's directional claim
about the loss ratios, test ÷ train: a filtering strategy's ratio is nearer 1 than the
archetype's. It says per run set whether that holds in the thesis and here.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np

from assist.report.loading import ReportError, RunSet
from assist.report.tables import PARTS, TABLE_METRICS, Table, fmt, run_values

DATA = Path(__file__).resolve().parent / "data" / "thesis_tables.json"
FINDING_METRICS = (("mean loss", "loss_mean"), ("q=0.9 loss", "loss_q90"))


@lru_cache(maxsize=1)
def thesis_tables() -> dict[str, Any]:
    return json.loads(DATA.read_text())


def _nearer_one(strategic: Optional[float], archetype: Optional[float]) -> Optional[bool]:
    if strategic is None or archetype is None or any(map(math.isnan, (strategic, archetype))):
        return None
    return abs(strategic - 1) < abs(archetype - 1)


def _mark(value: Optional[bool]) -> str:
    return "?" if value is None else ("✓" if value else "✗")


def thesis_comparison(runset: RunSet, table_id: str) -> Table:
    """One row per (matched key, strategy) found both in the runs and in thesis table
    ``table_id``: the completed runs' mean beside the thesis's value, and the finding."""
    tables = thesis_tables()["tables"]
    if table_id not in tables:
        notes = thesis_tables()["notes"]
        why = f" ({notes[table_id]})" if table_id in notes else ""
        raise ReportError(f"--thesis {table_id}: no such table in the package{why}; available: "
                          f"{', '.join(sorted(tables))}", exit_code=2)
    spec = tables[table_id]
    runs = runset.runs[runset.runs["status"] == "completed"]
    values = run_values(runs)
    key = spec["match"]
    measured: dict[tuple[str, str], dict[str, float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for (match, strategy), members in runs.groupby([runs[key].astype(str), runs["strategy"]]).groups.items():
        block = values.loc[members]
        measured[(match, strategy)] = {c: float(np.nanmean(block[c])) if block[c].notna().any() else math.nan
                                       for c in block.columns}
        counts[(match, strategy)] = len(members)
    header = [("", key), ("", "Strategy"), ("", "n")]
    header += [(title, part) for title, _ in TABLE_METRICS for part, _ in PARTS]
    header += [("", "Finding: loss ratio nearer 1 than the archetype's (thesis / here)")]
    rows, classes, records = [], [], []
    for match, strategies in spec["rows"].items():
        for strategy, published in strategies.items():
            ours = measured.get((match, strategy))
            if ours is None:
                continue
            cells = [match, strategy, str(counts[(match, strategy)])]
            record: dict[str, Any] = {key: match, "strategy": strategy, "n": counts[(match, strategy)]}
            for _, metric in TABLE_METRICS:
                for index, (_, part) in enumerate(PARTS):
                    theirs = published[metric][index]
                    mine = ours[f"{metric}_{part}"]
                    cells.append(f"{fmt(mine)} ({fmt(theirs)})")
                    record[f"{metric}_{part}"], record[f"{metric}_{part}_thesis"] = mine, theirs
            findings = []
            if strategy != "archetype" and (match, "archetype") in measured and "archetype" in strategies:
                for name, metric in FINDING_METRICS:
                    thesis = _nearer_one(strategies[strategy][metric][2], strategies["archetype"][metric][2])
                    here = _nearer_one(ours[f"{metric}_ratio"], measured[(match, "archetype")][f"{metric}_ratio"])
                    verdict = "holds" if thesis is not None and thesis == here else (
                        "differs" if thesis is not None and here is not None else "unknown")
                    findings.append(f"{name}: {_mark(thesis)} / {_mark(here)} {verdict}")
                    record[f"finding_{metric}"] = verdict
            cells.append("; ".join(findings))
            rows.append(cells)
            classes.append("completed")
            records.append(record)
    if not rows:
        raise ReportError(f"--thesis {table_id}: no completed run matches the table's rows "
                          f"({spec['title']}: {key} in {', '.join(spec['rows'])})", exit_code=2)
    import pandas as pd

    title = f"Thesis Table {table_id}: {spec['title']} — measured (thesis)"
    return Table(title, header, rows, classes, pd.DataFrame.from_records(records))
