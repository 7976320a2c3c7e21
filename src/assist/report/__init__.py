"""Reports over a directory of runs: the thesis's comparison tables, Appendix II, figures,
and a self-contained HTML report (``assist report``).

Names are imported on first use (PEP 562), so that ``assist --help`` does not pay for
pandas and matplotlib. The synthetic run generator is ``assist.report.synthetic``.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "Report": "build", "build_report": "build",
    "cli_report": "command", "report_command": "command",
    "Group": "grouping", "Subgroup": "grouping", "find_twins": "grouping",
    "group_runs": "grouping", "parse_group_by": "grouping",
    "render_html": "html",
    "STRATEGY_KEYS": "keys", "strategy_labels": "keys",
    "ReportError": "loading", "RunSet": "loading", "load_runs": "loading",
    "appendix_table": "tables", "comparison_table": "tables",
    "render_markdown": "text", "write_csv": "text",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'assist.report' has no attribute {name!r}")
    value = getattr(import_module(f"assist.report.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
