"""Measured results beside the thesis's published ones (``assist report RUNS --thesis ID``).

``ID`` is a table (4.4-4.9) or ``appendix``. A completed run is set beside a published run
only when it was made with that run's settings (``thesis_settings``): the same data set,
model, strategy, optimizer, batch size, learning rate, schedule, momentum, weight decay and
augmentation; the epochs and the training-set size may differ, and each row shows that scale.
Each cell reads ``measured (thesis)``, the measured value a mean over the matched seeds.

The *findings* are the thesis's directional claims, checked for every strategic row that has
its archetype beside it, in the thesis and here: the test accuracy above or below the
archetype's, and the loss ratios (test ÷ train, mean and q=0.9 loss) nearer 1 than the
archetype's. Each says *holds* when the measured direction is the thesis's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from assist.report.loading import ReportError, RunSet
from assist.report.tables import PARTS, TABLE_METRICS, Table, fmt, run_values
from assist.report.thesis_settings import (SETTING_KEYS, appendix_records, dataset_family, record_matches,
                                           scale_note, settings_differ, strategy_of, thesis_tables)

APPENDIX = "appendix"
Triples = dict[str, list[Optional[float]]]   # metric -> [train, test, test/train]


@dataclass
class ThesisComparison:
    """What ``--thesis`` adds to a report: the table, and its findings one line each; with
    no matched run, ``table`` is None and ``note`` says which runs would match."""

    table_id: str
    title: str
    table: Optional[Table]
    findings: list[str] = field(default_factory=list)
    note: str = ""


def _measured(runset: RunSet, runs: list[str]) -> dict[str, float]:
    block = run_values(runset.runs.loc[runs])
    return {c: float(np.nanmean(block[c])) if block[c].notna().any() else math.nan for c in block.columns}


def _published(final: dict[str, Optional[float]]) -> Triples:
    """An appendix record's eight values as triples, with the ratio computed from them."""
    out: Triples = {}
    for _, metric in TABLE_METRICS:
        train, test = final.get(f"{metric}_train"), final.get(f"{metric}_test")
        ratio = test / train if train and test is not None else None
        out[metric] = [train, test, None if ratio is None else round(ratio, 3)]
    return out


def _cells(ours: dict[str, float], theirs: Triples) -> list[str]:
    return [f"{fmt(ours[f'{metric}_{part}'])} ({fmt(theirs[metric][i])})"
            for _, metric in TABLE_METRICS for i, (_, part) in enumerate(PARTS)]


def _direction(strategic: Optional[float], archetype: Optional[float]) -> Optional[str]:
    if strategic is None or archetype is None or any(map(math.isnan, (strategic, archetype))):
        return None
    return "above" if strategic > archetype else "below" if strategic < archetype else "equal to"


def _nearer_one(strategic: Optional[float], archetype: Optional[float]) -> Optional[bool]:
    if strategic is None or archetype is None or any(map(math.isnan, (strategic, archetype))):
        return None
    return abs(strategic - 1) < abs(archetype - 1)


def findings(label: str, published: tuple[Triples, Triples], measured: tuple[dict, dict]) -> list[str]:
    """The directional findings of one strategic row against its archetype: ``published`` and
    ``measured`` are (strategic, archetype) pairs. A finding the thesis's cells cannot show
    is left out; one they show but the runs cannot (a missing value) says so."""
    (pub_s, pub_a), (ours_s, ours_a) = published, measured
    lines = []
    thesis = _direction(pub_s["accuracy"][1], pub_a["accuracy"][1])
    if thesis is not None:
        here = _direction(ours_s["accuracy_test"], ours_a["accuracy_test"])
        verdict = "cannot tell" if here is None else "holds" if here == thesis else "does not hold"
        lines.append(f"{label}: test accuracy {thesis} the archetype's (thesis {fmt(pub_s['accuracy'][1])} vs "
                     f"{fmt(pub_a['accuracy'][1])}; here {fmt(ours_s['accuracy_test'])} vs "
                     f"{fmt(ours_a['accuracy_test'])}): {verdict}")
    for name, metric in (("mean", "loss_mean"), ("q=0.9", "loss_q90")):
        thesis_near = _nearer_one(pub_s[metric][2], pub_a[metric][2])
        if thesis_near is None:
            continue
        here_near = _nearer_one(ours_s[f"{metric}_ratio"], ours_a[f"{metric}_ratio"])
        verdict = "cannot tell" if here_near is None else "holds" if here_near == thesis_near else "does not hold"
        lines.append(f"{label}: {name} loss ratio (test ÷ train) {'nearer to' if thesis_near else 'further from'} 1 "
                     f"than the archetype's (thesis {fmt(pub_s[metric][2])} vs {fmt(pub_a[metric][2])}; here "
                     f"{fmt(ours_s[f'{metric}_ratio'])} vs {fmt(ours_a[f'{metric}_ratio'])}): {verdict}")
    return lines


def _metric_header() -> list[tuple[str, str]]:
    return [(title, part) for title, _ in TABLE_METRICS for part, _ in PARTS]


def table_comparison(runset: RunSet, table_id: str) -> ThesisComparison:
    """The runs made with Table ``table_id``'s settings, row by row beside the table."""
    spec = thesis_tables()["tables"][table_id]
    key, settings = spec["match"], spec["settings"]
    compared = {k: v for k, v in settings.items() if k in SETTING_KEYS and k != key}
    title = f"Thesis Table {table_id}: {spec['title']} — measured (thesis)"
    matched: dict[tuple[str, str], list[str]] = {}
    for run in runset.runs.index[runset.runs["status"] == "completed"]:
        config = runset.configs[run]
        family, strategy = dataset_family(config.get("dataset")), strategy_of(config)
        if family != spec["dataset"] or strategy is None or settings_differ(config, compared, family):
            continue
        if key != "model" and config.get("model") not in _as_list(settings.get("model")):
            continue
        value = str(config.get(key))
        if value in spec["rows"] and strategy in spec["rows"][value]:
            matched.setdefault((value, strategy), []).append(run)
    if not matched:
        return ThesisComparison(table_id, title, None, note=_would_match(spec))
    means = {k: _measured(runset, runs) for k, runs in matched.items()}
    rows, records, lines = [], [], []
    for value, strategies in spec["rows"].items():
        for strategy, published in strategies.items():
            runs = matched.get((value, strategy))
            if runs is None:
                continue
            scale = "; ".join(sorted({scale_note(runset.configs[r], settings.get("epochs")) for r in runs}))
            rows.append([value, strategy, str(len(runs)), scale, *_cells(means[(value, strategy)], published)])
            records.append({key: value, "strategy": strategy, "n": len(runs), "scale": scale,
                            **{f"{m}_{p}": means[(value, strategy)][f"{m}_{p}"] for _, m in TABLE_METRICS
                               for _, p in PARTS}})
            if strategy != "archetype" and (value, "archetype") in means and "archetype" in strategies:
                lines += findings(f"{key}={value}, {strategy}", (published, strategies["archetype"]),
                                  (means[(value, strategy)], means[(value, "archetype")]))
    header = [("", key), ("", "Strategy"), ("", "n"), ("", "Scale (here/thesis)"), *_metric_header()]
    table = Table(title, header, rows, ["completed"] * len(rows), pd.DataFrame.from_records(records))
    return ThesisComparison(table_id, title, table, lines)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _would_match(spec: dict[str, Any]) -> str:
    settings = spec["settings"]
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "epochs")
    return (f"no completed run matches; runs with {shown} (any epochs, any training subset) and the "
            f"thesis's strategies ({spec['match']} in {', '.join(spec['rows'])}) would")


def _setting_summary(record: dict[str, Any]) -> str:
    scheduler = record.get("lr_scheduler")
    schedule = {"exponential": f"exp γ {record.get('gamma')}",
                "multistep": f"multistep γ {record.get('gamma')} every {record.get('milestone_every')}"}.get(
        scheduler, str(scheduler))
    parts = [f"bs {record.get('batch_size')}", f"{record.get('optimizer')} lr {record.get('learning_rate')}",
             schedule, f"mom {record.get('momentum')}", f"wd {record.get('weight_decay')}"]
    if record.get("dataset") != "mnist":
        parts.append(f"aug {fmt(record.get('data_augmentation'))}")
    return ", ".join(parts)


def appendix_comparison(runset: RunSet) -> ThesisComparison:
    """Every completed run beside the Appendix II row(s) of its settings: the row of the same
    epochs when there is one, else every row that differs from the run only in epochs."""
    title = "Thesis Appendix II: each run beside the thesis run of its settings — measured (thesis)"
    records = appendix_records()
    matched: dict[str, list[str]] = {}
    for run in runset.runs.index[runset.runs["status"] == "completed"]:
        config = runset.configs[run]
        candidates = [r for r in records if record_matches(config, r)]
        same_epochs = [r for r in candidates if r.get("epochs") == config.get("epochs")]
        for record in same_epochs or candidates:
            matched.setdefault(record["id"], []).append(run)
    if not matched:
        return ThesisComparison(APPENDIX, title, None, note=(
            "no completed run was made with the settings of an Appendix II row; `assist examples` lists "
            "the thesis's experiments as sweeps"))
    by_id = {r["id"]: r for r in records}
    means = {rid: _measured(runset, runs) for rid, runs in matched.items()}
    rows, lines = [], []
    for rid, runs in matched.items():
        record = by_id[rid]
        scale = "; ".join(sorted({scale_note(runset.configs[r], record.get("epochs")) for r in runs}))
        rows.append([rid, str(record.get("group")), f"{record['dataset']} / {record['model']}",
                     str(strategy_of(record)), _setting_summary(record), str(len(runs)), scale,
                     *_cells(means[rid], _published(record["final"]))])
        if strategy_of(record) != "archetype":
            twin = next((r for r in records if r["id"] in matched and strategy_of(r) == "archetype"
                         and r["dataset"] == record["dataset"] and r["model"] == record["model"]
                         and r.get("epochs") == record.get("epochs")
                         and all(r.get(k) == record.get(k) for k in SETTING_KEYS)), None)
            if twin is not None:
                lines += findings(f"{rid} ({record['model']}, {strategy_of(record)})",
                                  (_published(record["final"]), _published(twin["final"])),
                                  (means[rid], means[twin["id"]]))
    header = [("", "Row"), ("", "Group"), ("", "Data / model"), ("", "Strategy"), ("", "Settings"), ("", "n"),
              ("", "Scale (here/thesis)"), *_metric_header()]
    table = Table(title, header, rows, ["completed"] * len(rows), pd.DataFrame({"row": list(matched)}))
    return ThesisComparison(APPENDIX, title, table, lines)


def thesis_comparison(runset: RunSet, table_id: str) -> ThesisComparison:
    """``--thesis ID``: a table (4.4-4.9) or ``appendix``; an unknown ID is a bad argument."""
    if table_id == APPENDIX:
        return appendix_comparison(runset)
    tables = thesis_tables()["tables"]
    if table_id not in tables:
        raise ReportError(f"--thesis {table_id}: no such table in the package; available: "
                          f"{', '.join(sorted(tables))}, {APPENDIX}", exit_code=2)
    return table_comparison(runset, table_id)
