"""The run report's front plot (PNG) and Markdown summary.

Kept as functions of their own for existing callers; `nat.report.write_report` builds the whole report
(these two plus ``report.html``) on the same code. Plots are drawn on a `matplotlib.figure.Figure` with
its own Agg canvas, never through pyplot (see `nat.report.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nat.files import write_atomic
from nat.report.fields import (
    BUILTIN_COSTS,
    TOP1,
    Column,
    Row,
    axis_label,
    complexity_objectives,
    fmt_fact,
    fmt_percent,
    format_columns,
    format_rows,
    has,
    name_column,
    objective_column,
    resolution,
    sort_key,
    x_objective,
)
from nat.report.plots import front_png


def plot_front(
    archive: list[dict[str, Any]],
    front: list[dict[str, Any]],
    path: Path,
    x_key: str = "madds",
    title: str = "NAT trade-off front",
) -> Path:
    """Archive (grey) and front (red, plus test accuracy where every member has it) in accuracy vs
    ``x_key``, written atomically to ``path``."""
    tested = front if front and all("test_top1" in r for r in front) else []
    data = front_png(archive, front, tested, x_key, title)
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def markdown_columns(rows: Sequence[Row], objectives: Sequence[str] | None) -> list[Column]:
    """Summary columns: model, the run's complexity objectives other than MAdds/params/latency (where
    present), MAdds and params (always, ``-`` where missing), latency if it is an objective, resolution,
    search-val and test top-1. Without ``objectives`` these are exactly the historical six columns."""
    costs = complexity_objectives(objectives or [])
    extra = [o for o in costs if o not in BUILTIN_COSTS and has(rows, o)]
    cols = [name_column(), *[objective_column(o) for o in extra]]
    cols += [objective_column("madds"), objective_column("params")]
    if "latency" in costs:
        cols.append(objective_column("latency"))
    return cols + [
        Column("resolution", lambda r, i: resolution(r)),
        Column("search-val top-1", lambda r, i: fmt_percent(r.get(TOP1))),
        Column("test top-1", lambda r, i: fmt_percent(r.get("test_top1"))),
    ]


def plot_caption(objectives: Sequence[str]) -> str:
    """Why the front plot shows two objectives of a run that has more (empty for a 2-objective run)."""
    costs = complexity_objectives(objectives)
    if len(costs) < 2:
        return ""
    return (
        f"The plot shows top-1 against {axis_label(costs[0])}, the first of the run's {len(costs)} "
        f"complexity objectives ({', '.join(costs)}); the front is non-dominated over all of them, so "
        "it need not look monotone in this projection."
    )


def markdown_summary(
    title: str,
    facts: dict[str, Any],
    front: list[dict[str, Any]],
    plot_name: str,
    objectives: Sequence[str] | None = None,
) -> str:
    """Title, key facts, the front plot and a table of ``front`` (models or front members), sorted by
    the first complexity objective (MAdds when ``objectives`` is not given). Missing values print "-"."""
    lines = [f"# {title}", ""]
    lines += [f"- **{k}**: {fmt_fact(v)}" for k, v in facts.items()]
    lines += ["", f"![front]({plot_name})", ""]
    caption = plot_caption(objectives or [])
    if caption:
        lines += [f"*{caption}*", ""]
    cols = markdown_columns(front, objectives)
    rows = sorted(front, key=sort_key(x_objective(objectives) if objectives else "madds"))
    lines += _markdown_table(rows, cols)
    deployed = format_rows(rows)
    if deployed:  # the models' runtime files, each measured in its runtime
        lines += ["", "## Deployed files", "", *_markdown_table(deployed, format_columns())]
    return "\n".join(lines) + "\n"


def _markdown_table(rows: Sequence[Row], cols: Sequence[Column]) -> list[str]:
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "|" + "---|" * len(cols)]
    for i, row in enumerate(rows):
        lines.append("| " + " | ".join(c.cell(row, i).replace("|", "\\|") for c in cols) + " |")
    return lines
