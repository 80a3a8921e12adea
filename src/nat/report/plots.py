"""The report's plots, drawn on a bare `matplotlib.figure.Figure` with its own Agg canvas.

Never pyplot and never ``matplotlib.use``: importing or using nat must not switch a user's matplotlib
backend (e.g. a notebook's) nor leave figures registered with pyplot. Every figure is drawn inside an
``rc_context`` that turns mathtext off (objective names and titles come from data: a ``$`` in them must
print, not fail to parse) and renders to PNG bytes without a ``Software`` stamp, so the same data gives
byte-identical files.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nat.report.fields import (
    TOP1,
    Row,
    accuracy_objectives,
    axis_label,
    complexity_objectives,
    is_accuracy,
    number,
    scaled,
    sort_key,
)

RC = {"text.parse_math": False, "svg.hashsalt": "nat-report", "path.simplify": False}
DPI = 120


@contextmanager
def figure(width: float, height: float) -> Iterator[Figure]:
    """A new figure attached to its own Agg canvas, with the report's rc settings while it is drawn."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(fig)  # attaches itself as fig.canvas
        yield fig


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes, deterministic (no Software/date metadata)."""
    fig.tight_layout()
    buf = io.BytesIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def points(rows: Sequence[Row], x_key: str, y_key: str = TOP1, y_scale: float = 100.0) -> tuple[list, list]:
    """(x, y) of the rows having both values, sorted by x; x in table units, y in percent."""
    xs, ys = [], []
    for row in sorted(rows, key=sort_key(x_key)):
        x, y = scaled(row, x_key), number(row.get(y_key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y_scale * y)
    return xs, ys


def front_png(
    archive: Sequence[Row],
    front: Sequence[Row],
    models: Sequence[Row],
    x_key: str,
    title: str,
) -> bytes:
    """Archive (grey), front (search-val top-1, a line) and the models' test top-1 where known."""
    with figure(6, 4) as fig:
        ax = fig.subplots()
        ax.scatter(*points(archive, x_key), s=10, c="0.7", label="archive (search-val top-1)")
        ax.plot(*points(front, x_key), "o-", c="tab:red", label="front (search-val top-1)")
        tested = points(models, x_key, "test_top1")
        if tested[0]:
            ax.plot(*tested, "s--", c="tab:blue", label="front models (test top-1)")
        ax.set_xlabel(axis_label(x_key))
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        return png_bytes(fig)


def series_png(
    history: Sequence[Row],
    series: Sequence[tuple[str, str, str]],
    ylabel: str,
) -> bytes:
    """Per-iteration line plot of ``(key, label, style)`` series; iterations without a value are left
    out (iteration 0 has no surrogate). No title: the report's section heading says what it is."""
    with figure(6, 3.2) as fig:
        ax = fig.subplots()
        for key, label, style in series:
            xs = [number(h.get("iteration")) for h in history]
            ys = [number(h.get(key)) for h in history]
            pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
            if pairs:
                ax.plot(*zip(*pairs, strict=True), style, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if len(ax.get_lines()) > 1:
            ax.legend(loc="best", fontsize=8)
        return png_bytes(fig)


def normalised_front(front: Sequence[Row], objectives: Sequence[str]) -> np.ndarray:
    """The front as a (members, objectives) matrix, "lower is better" on every axis (top-1 as error),
    each column scaled to [0, 1] over the front (a constant column sits at 0.5; a missing value is NaN)."""
    cols = []
    for name in objectives:
        flip: Callable[[float], float] = (lambda v: 1.0 - v) if is_accuracy(name) else (lambda v: v)
        raw = [number(r.get(name)) for r in front]
        col = np.array([np.nan if v is None else flip(v) for v in raw], dtype=float)
        finite = col[np.isfinite(col)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        cols.append((col - lo) / (hi - lo) if hi > lo else np.where(np.isfinite(col), 0.5, np.nan))
    return np.stack(cols, axis=1) if cols else np.zeros((len(front), 0))


def parallel_png(front: Sequence[Row], objectives: Sequence[str], title: str) -> bytes:
    """Parallel coordinates of the front over all objectives (one line per member, coloured by top-1; in
    a many-task run one axis per task's top-1, coloured by the tasks' mean, as in the paper's
    12-objective figure)."""
    names = (
        list(objectives) if accuracy_objectives(objectives) else [TOP1, *complexity_objectives(objectives)]
    )
    matrix = normalised_front(front, names)
    with figure(max(7.0, 0.8 * len(names)), 3.6) as fig:
        ax = fig.subplots()
        acc = [number(r.get(TOP1)) for r in front]
        known = [a for a in acc if a is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 1.0)
        cmap = matplotlib.colormaps["viridis"]
        for row, a in zip(matrix, acc, strict=True):
            shade = 0.5 if a is None or hi <= lo else (a - lo) / (hi - lo)
            ax.plot(range(len(names)), row, "o-", c=cmap(shade), alpha=0.8, lw=1.2, ms=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(
            [f"{n} (as error)" if is_accuracy(n) else n for n in names],
            rotation=30 if len(names) > 5 else 0,
            ha="right" if len(names) > 5 else "center",
            fontsize=8 if len(names) > 5 else None,
        )
        for i in range(len(names)):
            ax.axvline(i, c="0.5", lw=0.8)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("normalised over the front\n(0 = best)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        return png_bytes(fig)
