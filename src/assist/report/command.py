"""`assist report RUNS_DIR [--out DIR] [--format html|md|csv] [--group-by key,...]`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click
from assist.files import atomic_write

FORMATS = ("html", "md", "csv")


def _fail(message: str, code: int) -> int:
    print(f"assist report: error: {message}", file=sys.stderr)
    return code


def cli_report(runs_dir: str | os.PathLike, out: Optional[str | os.PathLike] = None,
               fmt: str = "html", group_by: Optional[str] = None,
               progress: Optional[bool] = None, thesis: Optional[str] = None) -> int:
    """Build the report of every run under ``runs_dir``; return the process exit code.

    Writes ``out`` (default ``RUNS_DIR/report``): report.html or report.md with figures/
    (PNG + SVG), and comparison.csv, runs.csv, epochs.csv in every format. Prints the
    comparison tables on stdout and problems on stderr. Exit codes: 0 done (possibly with
    warnings), 1 no readable runs or an output error, 2 a bad argument."""
    # Imported here, not at the top: the `assist` CLI loads this module for --help too.
    from assist.report.build import build_report
    from assist.report.grouping import parse_group_by
    from assist.report.html import render_html
    from assist.report.loading import ReportError, load_runs
    from assist.report.text import render_markdown, terminal_tables, write_csv

    if fmt not in FORMATS:
        return _fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})", 2)
    try:
        runset = load_runs(runs_dir, progress=progress)
        keys = parse_group_by(group_by, runset)
        target = Path(out) if out is not None else Path(runs_dir) / "report"
        if target.exists() and not target.is_dir():
            return _fail(f"--out {str(target)!r} exists and is not a directory", 2)
        target.mkdir(parents=True, exist_ok=True)
        report = build_report(runset, target, group_by=keys, figures=fmt != "csv", progress=progress)
        if thesis is not None:
            from assist.report.thesis import thesis_comparison

            report.thesis = thesis_comparison(runset, thesis)
        written = write_csv(report, target)
        if fmt == "html":
            written.insert(0, render_html(report, target / "report.html"))
        elif fmt == "md":
            written.insert(0, render_markdown(report, target / "report.md"))
        if report.thesis is not None and report.thesis.table is not None:
            from assist.report.text import thesis_markdown

            path = target / f"thesis-{thesis}.md"
            atomic_write(path, thesis_markdown(report.thesis), durable=False)
            written.append(path)
    except ReportError as error:
        return _fail(str(error), error.exit_code)
    except OSError as error:
        return _fail(f"cannot write the report: {error}", 1)
    except Exception as error:  # a bug, or data we did not foresee: still one line, no trace
        return _fail(f"unexpected {type(error).__name__} while building the report: {error}", 1)
    for warning in runset.warnings[:20]:
        print(f"assist report: warning: {warning}", file=sys.stderr)
    if len(runset.warnings) > 20:
        print(f"assist report: ... {len(runset.warnings) - 20} more warnings in the report", file=sys.stderr)
    for path, reason in runset.skipped:
        print(f"assist report: skipped {path}: {reason}", file=sys.stderr)
    print(terminal_tables(report))
    if report.thesis is not None and report.thesis.table is None:
        print(f"assist report: warning: --thesis {thesis}: {report.thesis.note}", file=sys.stderr)
    elif report.thesis is not None:
        from assist.report.text import thesis_markdown

        print("\n" + thesis_markdown(report.thesis, heading=""))
    counts = runset.runs["status"].value_counts().to_dict()
    status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"\n{len(runset)} runs ({status}), {len(runset.skipped)} skipped, "
          f"{len(report.groups)} group(s); wrote {written[0]}"
          + (f" and {len(written) - 1} more file(s) in {target}" if len(written) > 1 else ""))
    return 0


@click.command("report")
@click.argument("runs_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: RUNS_DIR/report).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True,
              help="Main document: one self-contained HTML file, Markdown with figure files, "
                   "or CSV tables only.")
@click.option("--group-by", default=None, metavar="KEY,...",
              help="Config keys that define a table (default: every key except strategy "
                   "keys, seed and paths); other varying keys become row columns.")
@click.option("--thesis", default=None, metavar="TABLE",
              help="Also compare with the thesis: a table (4.4-4.9) or 'appendix' (every Appendix II "
                   "run). Runs made with the thesis run's settings (any epochs) are set beside it, each "
                   "cell 'measured (thesis)', with the thesis's findings: holds / does not hold here.")
def report_command(runs_dir: Path, out: Optional[Path], fmt: str, group_by: Optional[str],
                   thesis: Optional[str]) -> None:
    """Tables, figures and an HTML report from the runs under RUNS_DIR."""
    code = cli_report(runs_dir, out, fmt, group_by, thesis=thesis)
    if code:
        raise SystemExit(code)
