"""One self-contained HTML file: tables, figures (PNG embedded as base64), configs, problems.

No scripts and no external resources, so it opens offline, in a mail attachment, anywhere.
"""

from __future__ import annotations

import base64
import datetime as _dt
from html import escape
from pathlib import Path

import yaml

from assist.report.build import GroupReport, Report
from assist.report.drawing import FIGURE_PX
from assist.report.figures import CAPTION
from assist.report.tables import Table
from assist.files import atomic_write
from assist.verdicts import legend

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1400px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin:1.4rem 0 .4rem}
.scroll{overflow-x:auto;margin:.5rem 0}
table{border-collapse:collapse;font-size:.82rem;background:#fff}
th,td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right;white-space:nowrap}
th{background:#f0f0f3;text-align:center}
td.text{text-align:left}
.med{display:block;font-size:.72rem;color:#666}
td.note{white-space:normal;min-width:10rem;max-width:16rem;font-size:.75rem}
tr.not-completed td{background:#fff4e5;font-style:italic}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.35em;vertical-align:baseline}
figure{margin:1rem 0;background:#fff;border:1px solid #e3e3e3;padding:.4rem}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.82rem;color:#555;margin-top:.3rem}
details{margin:.4rem 0}summary{cursor:pointer;color:#0b5cad}
pre{background:#f4f4f6;padding:.5rem;overflow-x:auto;font-size:.8rem}
.note{font-size:.85rem;color:#444}.warn{color:#8a4b00}
.findings li.holds::marker{content:"✓ ";color:#1a7f37}.findings li.fails::marker{content:"✗ ";color:#b42318}
ul.verdict{margin:.6rem 0;padding-left:1.2rem;font-weight:600}
td.verdict{white-space:normal;min-width:6rem;max-width:9rem}td.better{color:#1a7f37;font-weight:600}
td.worse{color:#b42318;font-weight:600}
nav ul{columns:2;font-size:.9rem}
"""

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_TEXT_COLUMNS = {"Strategy", "Status", "Note", "Run", "Group", "Archetype twin"}


def table_html(table: Table, colours: dict[str, str], css_class: str) -> str:
    """A table with the group titles (Accuracy, Mean loss, ...) spanning their columns."""
    tops: list[list] = []
    for top, _ in table.header:
        if tops and tops[-1][0] == top:
            tops[-1][1] += 1
        else:
            tops.append([top, 1])
    head = "<tr>" + "".join(f'<th colspan="{n}">{escape(t)}</th>' for t, n in tops) + "</tr>"
    head += "<tr>" + "".join(f"<th>{escape(sub)}</th>" for _, sub in table.header) + "</tr>"
    body = []
    for cells, cls in zip(table.rows, table.classes):
        tds = []
        for (_, name), cell in zip(table.header, cells):
            text = escape(cell)
            if " (med " in cell:  # the median on a line of its own keeps the columns narrow
                main, median = cell.split(" (med ", 1)
                text = f'{escape(main)}<span class="med">med {escape(median.rstrip(")"))}</span>'
            if name == "Strategy" and cell in colours:
                text = f'<span class="swatch" style="background:{colours[cell]}"></span>{text}'
            klass = ' class="text"' if name in _TEXT_COLUMNS or not _numeric(cell) else ""
            if name == "Note":  # notes wrap, so they do not widen the table past the screen
                klass = ' class="text note"'
            if name == "Verdict":  # paired verdicts: wrapped, and coloured by their word
                klass = f' class="text verdict {cell.split(" ")[0] if cell in ("better", "worse") else ""}"'
            tds.append(f"<td{klass}>{text}</td>")
        body.append(f'<tr class="{cls}">' + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table class="report-table {css_class}"><thead>{head}</thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "+-–∞" and len(cell) > 1)


# the comparison table in two parts, so that each fits a laptop screen
TABLE_PARTS = (("Accuracy", "Balanced accuracy", "Mean loss"), ("Q=0.9 loss", "Worst loss"))


def split_comparison(table: Table) -> list[Table]:
    """The comparison table as parts of two metrics each, the row columns in every part; the
    notes go below the parts (``table_notes``), not in a column that would widen them."""
    parts = []
    for metrics in TABLE_PARTS:
        keep = [i for i, (top, sub) in enumerate(table.header)
                if top in metrics or (top == "" and sub != "Note")]
        parts.append(Table(table.title, [table.header[i] for i in keep],
                           [[row[i] for i in keep] for row in table.rows], table.classes, table.data))
    return parts


def table_notes(table: Table) -> str:
    """The comparison table's notes as a list: strategy (status): note."""
    names = [sub for _, sub in table.header]
    if "Note" not in names:
        return ""
    at = {name: names.index(name) for name in ("Strategy", "Status", "Note")}
    items = [f"<li>{escape(row[at['Strategy']])} ({escape(row[at['Status']])}): {escape(row[at['Note']])}</li>"
             for row in table.rows if row[at["Note"]]]
    return f"<ul class='note'>{''.join(items)}</ul>" if items else ""


def _figure_html(path: Path, alt: str, caption: str = CAPTION) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure class="report-figure"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(alt)}" width="{FIGURE_PX}"><figcaption>{escape(alt)}. {escape(caption)}'
            f"</figcaption></figure>")


_KIND_TEXT = {"epoch": "per epoch", "time": "against wall-clock time",
              "cost": "against training cost (samples scored + trained)",
              "accumulation": "batch accumulation per epoch",
              "shares": "who gets trained per epoch (noisy labels, rarer classes) and balanced test accuracy"}


def _group_html(rep: GroupReport, colours: dict[str, str]) -> str:
    group = rep.group
    apart = any(cls != "completed" for cls in rep.table.classes)
    config = "".join(f"<tr><td class='text'>{escape(k)}</td><td class='text'>{escape(str(v))}</td></tr>"
                     for k, v in group.keys.items())
    verdicts = "".join(f"<li>{escape(line)}</li>" for line in rep.verdicts)
    parts = [f'<section class="group" id="{group.gid}"><h2>{escape(group.gid)}: {escape(group.title)}</h2>',
             f"<ul class='verdict'>{verdicts}</ul>" if verdicts else "",
             f"<details><summary>Configuration shared by the {len(group.runs)} runs of this group"
             f"</summary><table class='config'>{config}</table></details>",
             *(table_html(part, colours, "comparison") for part in split_comparison(rep.table)),
             table_notes(rep.table),
             "<p class='note'>Mean ± sample standard deviation over the completed runs (n) of "
             "each strategy, and the median from three runs on; Ratio = test ÷ train, computed per "
             "run, then averaged."
             + (" Rows in italics are runs that did not complete or collapsed; they are shown alone, "
                "never averaged." if apart else "") + "</p>"]
    if rep.cost is not None and rep.cost.rows:
        parts += ["<h3>Cost</h3>", table_html(rep.cost, colours, "cost"),
                  "<p class='note'>Sample passes = samples scored (selection forwards) + samples trained, "
                  "an auxiliary model's included; both ratios are run by run against the archetype twin, "
                  "then averaged.</p>"]
    if rep.paired is not None:
        parts += ["<h3>Paired verdicts</h3>", table_html(rep.paired, colours, "paired"),
                  f"<p class='note'>{escape(legend())}</p>"]
    caption = CAPTION if apart else CAPTION.split("; dotted:")[0] + "."
    for sub in rep.figures:
        if len(rep.figures) > 1:
            parts.append(f"<h3>{escape(sub.title)}</h3>")
        for fig in sub.figures:
            if "png" in fig.files:
                parts.append(_figure_html(fig.files["png"], f"{sub.title}: {_KIND_TEXT[fig.kind]}", caption))
    parts.append("</section>")
    return "\n".join(parts)


def _problems_html(report: Report) -> str:
    runset, items = report.runset, []
    if runset.skipped:
        rows = "".join(f"<li><code>{escape(p)}</code>: {escape(r)}</li>" for p, r in runset.skipped)
        items.append(f"<h3>Skipped ({len(runset.skipped)}): not readable as runs</h3><ul>{rows}</ul>")
    bad = report.not_completed
    if len(bad):
        rows = "".join(f"<li><code>{escape(r)}</code>: {escape(row['status'])} after "
                       f"{row['epochs_completed']} epoch(s)"
                       + (f" ({escape(str(row['reason']))})" if isinstance(row["reason"], str) else "")
                       + "</li>" for r, row in bad.iterrows())
        items.append(f"<h3>Not completed or collapsed ({len(bad)}): shown separately, never averaged</h3>"
                     f"<ul>{rows}</ul>" + ("<p>collapsed: completed, but the test accuracy stayed at chance "
                                           "for the last epochs</p>" if (bad["status"] == "collapsed").any() else ""))
    if report.twinless:
        rows = "".join(f"<li><code>{escape(r)}</code></li>" for r in report.twinless)
        items.append(f"<h3>Without an archetype twin ({len(report.twinless)})</h3><ul>{rows}</ul>")
    if runset.warnings:
        rows = "".join(f"<li><code>{escape(w)}</code></li>" for w in runset.warnings)
        items.append(f"<h3 class='warn'>Warnings ({len(runset.warnings)})</h3><ul>{rows}</ul>")
    if not items:
        return "<section id='problems'><h2>Problems</h2><p>None: every run was read and completed.</p></section>"
    return "<section id='problems'><h2>Problems</h2>" + "".join(items) + "</section>"


def _thesis_html(report: Report) -> str:
    """The --thesis comparison: the table, then each finding marked holds / does not hold."""
    comparison = report.thesis
    if comparison is None:
        return ""
    if comparison.table is None:
        return (f"<section id='thesis'><h2>{escape(comparison.title)}</h2>"
                f"<p class='warn'>{escape(comparison.note)}</p></section>")
    items = "".join(
        f"<li class='{'holds' if line.endswith(': holds') else 'fails' if line.endswith('does not hold') else ''}'>"
        f"{escape(line)}</li>" for line in comparison.findings)
    findings = (f"<h3>The thesis's findings, here</h3><ul class='findings'>{items}</ul>" if items else
                "<p>No finding to check: no strategic row has its archetype beside it.</p>")
    return (f"<section id='thesis'><h2>{escape(comparison.title)}</h2>"
            "<p>Each cell: measured (thesis). Measured: the mean over the matched completed runs, made with "
            "the thesis run's settings; Scale: epochs here / in the thesis, and any training subset.</p>"
            f"{table_html(comparison.table, report.colours, 'thesis-table')}{findings}</section>")


def render_html(report: Report, path: Path) -> Path:
    """Write the report to ``path`` (one file, figures embedded)."""
    runset = report.runset
    counts = runset.runs["status"].value_counts().to_dict()
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    toc = "".join(f"<li><a href='#{g.group.gid}'>{escape(g.group.gid)}: {escape(g.group.title)}</a></li>"
                  for g in report.groups)
    configs = "".join(
        f"<details><summary>{escape(run)}</summary><pre>"
        f"{escape(yaml.dump(runset.configs[run], Dumper=_DUMPER, sort_keys=True))}</pre></details>"
        for run in runset.runs.index)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    thesis_toc = ("" if report.thesis is None else
                  f"<li><a href='#thesis'>{escape(report.thesis.title.split(' — ')[0])}</a></li>")
    body = [
        f"<header><h1>ASSIST report</h1><p>Runs directory <code>{escape(str(runset.root))}</code>: "
        f"{len(runset)} runs ({escape(summary)}) in {len(report.groups)} group(s); "
        f"generated {stamp}.</p></header>",
        f"<nav><h2>Contents</h2><ul>{thesis_toc}{toc}<li><a href='#appendix'>All runs: parameters and final values</a></li>"
        "<li><a href='#configs'>Run configurations</a></li><li><a href='#problems'>Problems</a></li></ul></nav>",
        _problems_html(report),
        _thesis_html(report),
        *(_group_html(g, report.colours) for g in report.groups),
        "<section id='appendix'><h2>All runs: parameters and final values (the thesis's Appendix II)</h2>",
        table_html(report.appendix, report.colours, "appendix"), "</section>",
        f"<section id='configs'><h2>Run configurations</h2>{configs}</section>",
    ]
    html = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>ASSIST report: {escape(runset.root.name)}</title><style>{CSS}</style></head>"
            "<body><main>" + "\n".join(body) + "</main></body></html>\n")
    atomic_write(path, html, durable=False)
    return path
