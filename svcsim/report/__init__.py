"""The shareable report of a run: one self-contained HTML page (summary, windows, figures).

Reads only a loaded :class:`svcsim.results.Run` and the figures of :mod:`svcsim.plots`.
"""

from svcsim.report.html import REPORT_NAME, render_report, scenario_name, write_report
from svcsim.report.tables import Table, summary_tables

__all__ = [
    "REPORT_NAME",
    "Table",
    "render_report",
    "scenario_name",
    "summary_tables",
    "write_report",
]
