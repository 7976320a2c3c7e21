"""Assemble a report: groups, their tables and figures, the appendix, and what was skipped."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import pandas as pd
from tqdm import tqdm

from assist.report.drawing import render_panels
from assist.report.figures import (ACCUMULATION_PANELS, SHARE_PANELS, X_AXES, FigureFiles, Line, add_derived,
                                   colour_map, has_accumulation, has_shares, subgroup_lines)
from assist.report.grouping import Group, Subgroup, find_twins, group_runs
from assist.report.loading import RunSet
from assist.report.cost import cost_table, run_costs, run_histories
from assist.report.paired import group_paired, paired_table
from assist.report.tables import RunFacts, Table, appendix_table, comparison_table
from assist.report.verdict import group_verdicts
from assist.verdicts import verdict_text

if TYPE_CHECKING:
    from assist.report.thesis import ThesisComparison


PARALLEL_MIN_JOBS = 8  # fewer figure sets than this are drawn faster than processes start


@dataclass
class SubgroupFigures:
    subgroup: Subgroup
    title: str
    figures: list[FigureFiles] = field(default_factory=list)


@dataclass
class GroupReport:
    group: Group
    table: Table
    figures: list[SubgroupFigures] = field(default_factory=list)
    cost: Optional[Table] = None   # steps, samples, and passes and time against the twin
    verdicts: list[str] = field(default_factory=list)  # per strategy: accuracy and cost against the twin
    paired: Optional[Table] = None   # paired verdicts against the twin and the random control
    paired_text: str = ""            # the same for a terminal (assist.verdicts.verdict_text)


@dataclass
class Report:
    runset: RunSet
    groups: list[GroupReport]
    appendix: Table
    colours: dict[str, str]
    twins: dict[str, Optional[str]]
    thesis: Optional["ThesisComparison"] = None   # --thesis: the published values beside these runs

    @property
    def not_completed(self) -> pd.DataFrame:
        runs = self.runset.runs
        return runs[runs["status"] != "completed"]

    @property
    def twinless(self) -> list[str]:
        return [r for r, t in self.twins.items() if t is None]


@dataclass
class _FigureJob:
    lines: list[Line]
    colours: dict[str, str]
    title: str
    stem: Path
    formats: tuple[str, ...]


def _render_job(job: _FigureJob) -> list[FigureFiles]:
    made = []
    for kind in X_AXES:
        result = render_panels(job.lines, job.colours, kind, job.title, stem=job.stem, formats=job.formats)
        if result is not None:
            made.append(result)
    acc_lines = [l for l in job.lines if has_accumulation([l])]
    if acc_lines:
        result = render_panels(acc_lines, job.colours, "accumulation", job.title,
                               panels=ACCUMULATION_PANELS, stem=job.stem, formats=job.formats)
        if result is not None:
            made.append(result)
    if has_shares(job.lines):
        result = render_panels(job.lines, job.colours, "shares", job.title, panels=SHARE_PANELS, stem=job.stem,
                               formats=job.formats)
        if result is not None:
            made.append(result)
    return made


def _subgroup_title(group: Group, sub: Subgroup) -> str:
    extra = ", ".join(f"{k}={v}" for k, v in sub.values.items())
    return f"{group.gid}: {group.title}" + (f" — {extra}" if extra else "")


def build_report(runset: RunSet, out: Optional[str | os.PathLike] = None, *,
                 group_by: Optional[Sequence[str]] = None, figures: bool = True,
                 formats: Sequence[str] = ("png", "svg"), progress: Optional[bool] = None,
                 workers: Optional[int] = None) -> Report:
    """Tables for every group and, when ``figures``, figure files under ``out/figures``.

    ``workers``: processes for drawing figures (None: one per CPU, at most 4, when there are
    enough figures to pay for starting them)."""
    twins = find_twins(runset)
    groups = group_runs(runset, group_by)
    colours = colour_map(runset.runs["label"])
    facts = RunFacts(runset)
    histories = run_histories(runset)
    costs = run_costs(runset, histories)
    reports = []
    for g in groups:
        paired = group_paired(runset, g, twins, histories)
        reports.append(GroupReport(g, comparison_table(runset, g, twins, facts), cost=cost_table(runset, g, twins, costs),
                                   verdicts=group_verdicts(runset, g, twins, costs),
                                   paired=paired_table(g, paired) if paired else None,
                                   paired_text=verdict_text(paired)))
    appendix = appendix_table(runset, groups, twins, facts)
    report = Report(runset, reports, appendix, colours, twins)
    if not figures:
        return report
    if out is None:
        raise ValueError("build_report: figures need an output directory (out=...)")
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    epochs = add_derived(runset.epochs)
    by_run = {run: frame.sort_values("epoch") for run, frame in epochs.groupby("run", sort=False)}
    jobs, slots = [], []
    for rep in reports:
        for k, sub in enumerate(rep.group.subgroups):
            title = _subgroup_title(rep.group, sub)
            stem = fig_dir / (rep.group.gid + (f"-{k + 1}" if len(rep.group.subgroups) > 1 else ""))
            lines = subgroup_lines(by_run, runset.runs.loc[sub.runs])
            slot = SubgroupFigures(sub, title)
            rep.figures.append(slot)
            if lines:
                jobs.append(_FigureJob(lines, colours, title, stem, tuple(formats)))
                slots.append(slot)
    count = min(4, os.cpu_count() or 1) if workers is None else workers
    disable = (len(jobs) < 10) if progress is None else not progress
    bar = tqdm(total=len(jobs), desc="drawing figures", unit="group", disable=disable, leave=False)
    done = 0
    if count > 1 and len(jobs) >= PARALLEL_MIN_JOBS:
        try:
            with ProcessPoolExecutor(max_workers=count) as pool:
                for made in pool.map(_render_job, jobs, chunksize=2):
                    slots[done].figures = made
                    done += 1
                    bar.update()
        except (OSError, BrokenProcessPool):  # no process pool here (sandbox, no /dev/shm)
            pass  # the rest is drawn below, in this process
    for slot, job in zip(slots[done:], jobs[done:]):
        slot.figures = _render_job(job)
        bar.update()
    bar.close()
    return report
