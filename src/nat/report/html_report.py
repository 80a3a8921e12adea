"""``report.html``: one self-contained page for a run (plots as base64 PNGs, inline CSS, no scripts).

Self-contained so it can be mailed, archived with the run folder or opened offline: nothing is
fetched (no external CSS, JS, fonts or images). Every string that comes from the run's data (titles,
fact keys and values, model and surrogate names, user objective names such as ``pkg.mod:fn``) goes
through `html.escape`, so a name can never inject markup into the page.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from nat.report.fields import (
    Column,
    Row,
    axis_label,
    fmt_fact,
    format_columns,
    format_rows,
    has,
    history_columns,
    sort_key,
    table_columns,
    x_objective,
)
from nat.report.front_report import plot_caption
from nat.report.plots import parallel_png, series_png

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       background: #fff; margin: 0; }
main { max-width: 1000px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #c33; padding-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text, table.facts th, table.facts td { text-align: left; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: .5rem 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, p.note { color: #555; font-size: .9rem; max-width: 60rem; }
"""


def png_img(data: bytes, alt: str) -> str:
    """An ``<img>`` whose source is the PNG itself, base64-encoded (nothing to fetch)."""
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{encoded}">'


def figure_html(data: bytes, alt: str, caption: str = "") -> str:
    """A plot with its caption: the caption says what the reader is looking at, in words."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f"<figure>{png_img(data, alt)}{cap}</figure>"


def table_html(rows: Sequence[Row], cols: Sequence[Column], css: str = "") -> str:
    """A table of ``rows``; every header and cell is escaped (they print data)."""

    def cls(c: Column) -> str:
        return ' class="text"' if c.text else ""

    head = "".join(f"<th{cls(c)}>{escape(c.header)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{cls(c)}>{escape(c.cell(r, i))}</td>" for c in cols) + "</tr>"
        for i, r in enumerate(rows)
    )
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts_html(facts: dict[str, str | int | float]) -> str:
    """The key facts in the caller's order (a dict keeps it), as a two-column table."""
    rows = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(fmt_fact(v))}</td></tr>" for k, v in facts.items()
    )
    return f'<table class="facts"><tbody>{rows}</tbody></table>'


def section(ident: str, heading: str, *parts: str) -> str:
    """A titled section with a stable ``id``, so tests and links can find each part of the page."""
    return f'<section id="{ident}"><h2>{escape(heading)}</h2>{"".join(parts)}</section>'


def front_section(front_png: bytes, objectives: Sequence[str]) -> str:
    """The front plot; with 3+ objectives also a caption and the parallel-coordinates plot."""
    x = axis_label(x_objective(objectives))
    caption = plot_caption(objectives) or (
        f"Grey: every evaluated subnet of the archive; red: the front (search-val top-1) against {x}; "
        "blue: the front models' test top-1, where they were trained."
    )
    return section("front", "The front over the whole archive", figure_html(front_png, "front", caption))


def parallel_section(front: Sequence[Row], objectives: Sequence[str]) -> str:
    """Parallel coordinates of the front over every objective (runs with 3+ objectives only)."""
    if len(objectives) < 3:
        return ""
    if not front:
        return section("parallel", "The front over all objectives", '<p class="note">The front is empty.</p>')
    png = parallel_png(front, objectives, "front over all objectives")
    caption = (
        "One line per front member, coloured by top-1 (yellow = most accurate; several tasks: their "
        "mean). Each axis is one "
        "objective normalised to [0, 1] over the front, lower is better on all of them (top-1 as error)."
    )
    return section(
        "parallel", "The front over all objectives", figure_html(png, "parallel coordinates", caption)
    )


def history_sections(history: Sequence[Row]) -> str:
    """Hypervolume per iteration, then the surrogate's Kendall tau per iteration (plot and table)."""
    if not history:
        note = '<p class="note">No iterations were recorded.</p>'
        return section("hypervolume", "Hypervolume per iteration", note) + section(
            "surrogate", "Surrogate per iteration", note
        )
    hv = series_png(history, [("hypervolume", "hypervolume", "o-")], "hypervolume")
    hv_part = figure_html(hv, "hypervolume per iteration", "Hypervolume of the front after each iteration.")
    if has(history, "tau") or has(history, "candidate_tau"):
        series = [("tau", "cross-validated", "o-"), ("candidate_tau", "on the new candidates", "s--")]
        tau = series_png(history, series, "Kendall tau")
        tau_part = figure_html(
            tau,
            "Kendall tau per iteration",
            "Kendall tau of the chosen surrogate: cross-validated on the archive, and on the candidates "
            "it picked once they were evaluated (where recorded).",
        )
    else:
        tau_part = '<p class="note">No surrogate Kendall tau was recorded in this run.</p>'
    table = table_html(history, history_columns(history))
    return section("hypervolume", "Hypervolume per iteration", hv_part) + section(
        "surrogate", "Surrogate per iteration", tau_part, table
    )


def rows_section(front: Sequence[Row], models: Sequence[Row], objectives: Sequence[str]) -> str:
    """The models' table, or the front's table where no models were trained."""
    rows = sorted(models or front, key=sort_key(x_objective(objectives)))
    if models:
        deployed = format_rows(rows)
        files = ""
        if deployed:
            note = (
                '<p class="note">Each file measured in its own runtime on the test split; latency is the '
                "median of timed single-image calls on this machine.</p>"
            )
            files = section("deployed", "Deployed files", note, table_html(deployed, format_columns()))
        return section("models", "Front models", table_html(rows, table_columns(rows, objectives))) + files
    if not rows:
        return section("front-table", "The front", '<p class="note">The front is empty.</p>')
    note = '<p class="note">No front models were trained; these are the front subnets as searched.</p>'
    return section("front-table", "The front", note, table_html(rows, table_columns(rows, objectives)))


def render_html(
    *,
    title: str,
    facts: dict[str, str | int | float],
    objectives: Sequence[str],
    front: Sequence[Row],
    models: Sequence[Row],
    history: Sequence[Row],
    front_png: bytes,
) -> str:
    """The whole page; ``front_png`` is the front plot already drawn for ``front.png``."""
    body = "".join(
        [
            f"<h1>{escape(title)}</h1>",
            section("facts", "Key facts", facts_html(facts)),
            front_section(front_png, objectives),
            parallel_section(front, objectives),
            history_sections(history),
            rows_section(front, models, objectives),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
