"""Reports of a run: front plot (PNG) and Markdown summary."""

from nat.report.front_report import markdown_summary, plot_front

__all__ = ["markdown_summary", "plot_front"]
