"""Reports of a run: `write_report` (front plot PNG, Markdown summary, self-contained HTML page).

`plot_front` and `markdown_summary` stay for callers that want one piece only.
"""

from nat.report.front_report import markdown_summary, plot_front
from nat.report.run_report import write_report

__all__ = ["markdown_summary", "plot_front", "write_report"]
