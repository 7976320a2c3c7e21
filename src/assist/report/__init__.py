"""Reports over a directory of runs: the thesis's comparison tables, Appendix II, figures,
and a self-contained HTML report (``assist report``).

The synthetic run generator lives in ``assist.report.synthetic`` (imports torch, so it is
not imported here)."""

from assist.report.build import Report, build_report
from assist.report.command import cli_report, report_command
from assist.report.grouping import Group, Subgroup, find_twins, group_runs, parse_group_by
from assist.report.html import render_html
from assist.report.keys import STRATEGY_KEYS, strategy_labels
from assist.report.loading import ReportError, RunSet, load_runs
from assist.report.tables import appendix_table, comparison_table
from assist.report.text import render_markdown, write_csv

__all__ = [
    "Group", "Report", "ReportError", "RunSet", "STRATEGY_KEYS", "Subgroup", "appendix_table",
    "build_report", "cli_report", "comparison_table", "find_twins", "group_runs", "load_runs",
    "parse_group_by", "render_html", "render_markdown", "report_command", "strategy_labels",
    "write_csv",
]
