"""A group's paired verdicts (``assist.verdicts``): each strategy against its archetype twin
and against its random control at the same budget, seed by seed.

A control run of a strategic run is a completed run of the same subgroup (same identity keys)
and seed whose strategy is a control (``assist.strategies.controls.CONTROLS``) and whose
``strategy_options.fraction`` is the strategic run's budget: its samples trained as a share of
its archetype twin's (``assist.verdicts.control_budget``), within ``TOLERANCE`` (fractions are
stored rounded to 4 places). Runs of a control strategy are judged against the archetype only,
and only when they are no strategic run's control (those are judged beside their strategy).
docs/peers.md, "Random controls and paired verdicts".
"""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from assist.report.grouping import Group, seed_of
from assist.report.keys import ARCHETYPE, label_order, strategy_name
from assist.report.loading import RunSet
from assist.report.tables import Table, fmt
from assist.strategies.controls import CONTROLS
from assist.verdicts import MEASURES, Outcome, PairedVerdict, control_budget, outcome, paired_verdict, table_rows

TOLERANCE = 5e-4   # a control's fraction and the budget it stands for, both rounded to 4 places


def _fraction(config: dict[str, Any]) -> Optional[float]:
    value = (config.get("strategy_options") or {}).get("fraction")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def find_controls(runset: RunSet, runs: list[str], twins: dict, histories: dict) -> dict[str, dict[str, str]]:
    """For each completed strategic run of ``runs`` with a completed twin: its control runs
    among ``runs``, by control kind (the first by name where several match)."""
    status, configs = runset.runs["status"], runset.configs
    done = [r for r in runs if status[r] == "completed" and r in histories]
    controls = [r for r in done if strategy_name(configs[r]) in CONTROLS and _fraction(configs[r]) is not None]
    found: dict[str, dict[str, str]] = {}
    for run in done:
        name, twin = strategy_name(configs[run]), twins.get(run)
        if name == ARCHETYPE or name in CONTROLS or twin is None or status.get(twin) != "completed":
            continue
        budget = control_budget(histories[run], histories[twin])
        for control in sorted(controls):
            kind = strategy_name(configs[control])
            if (str(seed_of(runset, control)) == str(seed_of(runset, run))
                    and abs(_fraction(configs[control]) - budget) <= TOLERANCE):
                found.setdefault(run, {}).setdefault(kind, control)
    return found


def group_paired(runset: RunSet, group: Group, twins: dict, histories: dict) -> list[PairedVerdict]:
    """Per subgroup and strategy label: the verdict against the archetype, then one against
    each kind of control found; labels prefixed by the subgroup's row-key values."""
    status, labels = runset.runs["status"], runset.runs["label"]
    outcomes: dict[str, Outcome] = {}

    def of(run: str) -> Outcome:
        if run not in outcomes:
            outcomes[run] = outcome(histories[run])
        return outcomes[run]

    verdicts = []
    for sub in group.subgroups:
        prefix = "".join(f"{k}={fmt(v)}, " for k, v in sub.values.items())
        controls = find_controls(runset, sub.runs, twins, histories)
        serving = {run for found in controls.values() for run in found.values()}   # judged beside their strategy
        for label in label_order(labels[r] for r in sub.runs):
            if label == ARCHETYPE:
                continue
            paired = [r for r in sub.runs if labels[r] == label and status[r] == "completed" and r in histories
                      and twins.get(r) is not None and status.get(twins[r]) == "completed" and r not in serving]
            if not paired:
                continue
            seed = lambda run: seed_of(runset, run)
            runs = {seed(r): of(r) for r in paired}
            archetypes = {seed(r): of(twins[r]) for r in paired}
            verdicts.append(paired_verdict(prefix + label, ARCHETYPE, runs, archetypes, archetypes))
            for kind in CONTROLS:
                references = {seed(r): of(controls[r][kind]) for r in paired if kind in controls.get(r, {})}
                if references:
                    verdicts.append(paired_verdict(prefix + label, kind, runs, references, archetypes))
    return verdicts


def paired_table(group: Group, verdicts: list[PairedVerdict]) -> Table:
    """The verdicts as a report table; its data holds the numbers."""
    header = [("", "Strategy"), ("", "Against"), ("", "Seeds")]
    header += [(title, part) for title in ("Test accuracy", "Seconds to target", "Sample passes to target")
               for part in ("Mean diff [95% CI]", "Verdict")]
    records = []
    for v in verdicts:
        record: dict[str, Any] = {"strategy": v.strategy, "against": v.against, "seeds": len(v.seeds)}
        for name, _, _ in MEASURES:
            d = v.of(name)
            record.update({f"{name}_diff": d.mean, f"{name}_low": d.low, f"{name}_high": d.high,
                           f"{name}_pairs": d.pairs, f"{name}_verdict": d.verdict})
        records.append(record)
    rows = table_rows(verdicts)
    return Table(f"{group.title}: paired verdicts", header, rows, ["completed"] * len(rows),
                 pd.DataFrame.from_records(records))
