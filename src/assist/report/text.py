"""Markdown and CSV outputs (and the plain tables printed on the terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from assist.report.build import Report
from assist.report.figures import CAPTION
from assist.report.tables import BALANCED_TITLE, TABLE_METRICS, Table
from assist.files import atomic_write
from assist.verdicts import legend

if TYPE_CHECKING:
    from assist.report.thesis import ThesisComparison


def table_markdown(table: Table) -> str:
    """A pipe table; the two header levels joined as ``Accuracy Train``."""
    names = [f"{top} {sub}".strip() for top, sub in table.header]
    clean = lambda cell: cell.replace("|", "\\|")
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def thesis_markdown(comparison: "ThesisComparison", heading: str = "# ") -> str:
    """The ``--thesis`` table and its findings, as Markdown (or plain text without a heading)."""
    if comparison.table is None:
        return f"{heading}{comparison.title}\n\n{comparison.note}\n"
    out = [f"{heading}{comparison.title}\n", table_markdown(comparison.table) + "\n"]
    if comparison.findings:
        out.append("Findings of the thesis (holds: the measured direction is the thesis's):\n")
        out += [f"- {line}" for line in comparison.findings]
    return "\n".join(out) + "\n"


def render_markdown(report: Report, path: Path) -> Path:
    runset = report.runset
    out = [f"# ASSIST report\n\nRuns directory `{runset.root}`: {len(runset)} runs in "
           f"{len(report.groups)} group(s).\n"]
    problems = []
    problems += [f"- skipped `{p}`: {r}" for p, r in runset.skipped]
    problems += [f"- collapsed `{r}`: test accuracy at chance for its last epochs ({row['epochs_completed']} run)"
                 if row["status"] == "collapsed" else
                 f"- not completed `{r}`: {row['status']} after {row['epochs_completed']} epoch(s)"
                 for r, row in report.not_completed.iterrows()]
    problems += [f"- no archetype twin: `{r}`" for r in report.twinless]
    problems += [f"- warning: `{w}`" for w in runset.warnings]
    out.append("## Problems\n\n" + ("\n".join(problems) if problems else "None.") + "\n")
    for rep in report.groups:
        group = rep.group
        shared = ", ".join(f"{k}={v}" for k, v in group.keys.items())
        verdicts = "".join(f"- {line}\n" for line in rep.verdicts)
        out.append(f"## {group.gid}: {group.title}\n\n{verdicts}{chr(10) if verdicts else ''}<details><summary>Shared configuration"
                   f"</summary>\n\n{shared}\n\n</details>\n\n{table_markdown(rep.table)}\n\n"
                   "Mean ± sample std over completed runs (n); Ratio = test ÷ train per run. "
                   "Runs that did not complete are listed on rows of their own.\n")
        if rep.cost is not None and rep.cost.rows:
            out.append(f"Cost:\n\n{table_markdown(rep.cost)}\n\nSample passes = samples scored + trained; "
                       "ratios run by run against the archetype twin.\n")
        if rep.paired is not None:
            out.append(f"Paired verdicts:\n\n{table_markdown(rep.paired)}\n\n{legend()}\n")
        for sub in rep.figures:
            for fig in sub.figures:
                if "png" in fig.files:
                    rel = fig.files["png"].relative_to(path.parent).as_posix()
                    out.append(f"![{sub.title}: {fig.kind}]({rel})\n")
        out.append(f"_{CAPTION}_\n")
    if report.thesis is not None:
        out.append(thesis_markdown(report.thesis, heading="## "))
    out.append(f"## All runs: parameters and final values (the thesis's Appendix II)\n\n{table_markdown(report.appendix)}\n")
    atomic_write(path, "\n".join(out), durable=False)
    return path


def write_csv(report: Report, out: Path) -> list[Path]:
    """comparison.csv (numbers behind every comparison table), runs.csv (every run, config
    and final metrics), epochs.csv (every logged epoch of every run), cost.csv (the cost tables)."""
    frames = [rep.table.data.assign(group=rep.group.gid, group_title=rep.group.title)
              for rep in report.groups if not rep.table.data.empty]
    comparison = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not comparison.empty:
        first = ["group", "group_title"]
        comparison = comparison[first + [c for c in comparison.columns if c not in first]]
    paths = [out / "comparison.csv", out / "runs.csv", out / "epochs.csv", out / "cost.csv"]
    atomic_write(paths[0], comparison.to_csv(index=False), durable=False)
    costs = [rep.cost.data.assign(group=rep.group.gid) for rep in report.groups
             if rep.cost is not None and not rep.cost.data.empty]
    atomic_write(paths[3], (pd.concat(costs, ignore_index=True) if costs else pd.DataFrame()).to_csv(index=False), durable=False)
    runs = report.runset.runs.assign(twin=[report.twins.get(r) for r in report.runset.runs.index])
    atomic_write(paths[1], runs.to_csv(index=False), durable=False)
    atomic_write(paths[2], report.runset.epochs.to_csv(index=False), durable=False)
    return paths


def terminal_tables(report: Report, limit: int = 10, width: int = 120) -> str:
    """The comparison tables as the terminal shows them: per group one small table per metric
    (train, test, ratio; no medians), so that a line stays within ``width`` columns; the full
    tables are in the report's files. The first ``limit`` groups."""
    chunks = []
    for rep in report.groups[:limit]:
        parts = [f"## {rep.group.gid}: {rep.group.title}"]
        if rep.verdicts:
            parts.append("\n".join(rep.verdicts))
        names = [sub for _, sub in rep.table.header]
        ids = [i for i, (top, sub) in enumerate(rep.table.header) if top == "" and sub != "Note"]
        for title, _ in TABLE_METRICS:
            tops = (title, BALANCED_TITLE) if title == "Accuracy" else (title,)
            columns = ids + [i for i, (top, _) in enumerate(rep.table.header) if top in tops]
            header = [(rep.table.header[i][0], rep.table.header[i][1]) for i in columns]
            rows = [[_short(row[i], width // 4) if names[i] == "Strategy" else row[i].split(" (med ")[0]
                     for i in columns] for row in rep.table.rows]
            parts.append(f"{title}\n" + table_markdown(Table(title, header, rows, rep.table.classes, rep.table.data)))
        if "Note" in names:
            at = {name: names.index(name) for name in ("Strategy", "Status", "Note")}
            notes = [f"- {row[at['Strategy']]} ({row[at['Status']]}): {row[at['Note']]}"
                     for row in rep.table.rows if row[at["Note"]]]
            if notes:
                parts.append("Notes\n" + "\n".join(notes))
        if rep.paired_text:
            parts.append("Paired verdicts\n" + rep.paired_text)
        chunks.append("\n\n".join(parts))
    if len(report.groups) > limit:
        chunks.append(f"... and {len(report.groups) - limit} more group(s) in the report")
    return "\n\n".join(chunks)


def _short(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"
