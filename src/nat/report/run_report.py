"""`write_report`: the one entry point the search calls to write a run's report.

It takes plain JSON-like data only (no nat objects), so the report can be rebuilt from a run folder's
JSON files, tested on synthetic data, and never imports the search. Every file is replaced atomically
(a crash leaves the previous complete report), and the same data always gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nat.files import write_bytes_atomic, write_text_atomic
from nat.report.fields import x_objective
from nat.report.front_report import markdown_summary
from nat.report.html_report import render_html
from nat.report.plots import front_png


def write_report(
    folder: Path,
    *,
    title: str,
    facts: dict[str, str | int | float],
    objectives: list[str],
    archive: list[dict[str, Any]],
    front: list[dict[str, Any]],
    models: list[dict[str, Any]],
    history: list[dict[str, Any]],
) -> dict[str, Path]:
    """Write ``front.png``, ``summary.md`` and a self-contained ``report.html`` into ``folder``.

    ``objectives`` is the run's list in order (``top1`` maximised, the rest minimised); the front plot
    shows top-1 against the first complexity objective. ``archive`` and ``front`` are archive-entry
    dicts, ``models`` the trained front models (may be empty: the tables then list the front),
    ``history`` one dict per iteration. Returns the paths as ``{"png", "markdown", "html"}``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a many-task run's models are each tested on their own task: not one curve against the front's
    # mean top-1, so the plot leaves them out (the tables list them with their task)
    plotted = [m for m in models if "task" not in m]
    png = front_png(archive, front, plotted, x_objective(objectives), title)
    text = markdown_summary(title, facts, models or front, "front.png", objectives)
    page = render_html(
        title=title,
        facts=facts,
        objectives=objectives,
        front=front,
        models=models,
        history=history,
        front_png=png,
    )
    return {
        "png": write_bytes_atomic(folder / "front.png", png),
        "markdown": write_text_atomic(folder / "summary.md", text),
        "html": write_text_atomic(folder / "report.html", page),
    }
