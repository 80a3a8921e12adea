"""How a report reads and prints the values of a run's plain data (archive, front, models, history).

One place decides what an objective is called, how it is scaled and how a value prints, so the plot,
the Markdown summary and the HTML page agree. Nothing here assumes ``madds`` is an objective: the run's
``objectives`` list says which complexity objective comes first, and any value that is missing, not a
number or not finite prints as ``"-"`` (a report must never crash on, nor show, ``nan``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

TOP1 = "top1"
MISSING = "-"
#: Complexity objectives counted in millions (exact table lookups with large raw values).
MILLIONS = {"madds": "MAdds", "params": "params"}
#: Fixed model-table columns, in this order, after the run's other complexity objectives.
BUILTIN_COSTS = ("madds", "params", "latency")

Row = dict[str, Any]


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, None, a bool, a string or a non-finite float).
    Any real number counts (numpy scalars too), so a caller's numbers need no conversion first."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_accuracy(name: str) -> bool:
    """``top1``, or a many-task run's per-task ``top1:<task>`` (maximised, printed as percentages)."""
    return name == TOP1 or name.startswith(TOP1 + ":")


def accuracy_objectives(objectives: Sequence[str]) -> list[str]:
    """The run's accuracy objectives: ``top1``, or one ``top1:<task>`` per task of a many-task run."""
    return [o for o in objectives if is_accuracy(o)]


def complexity_objectives(objectives: Sequence[str]) -> list[str]:
    """The run's minimised objectives, in the run's order (everything but the accuracies)."""
    return [o for o in objectives if not is_accuracy(o)]


def is_latency(name: str) -> bool:
    """``latency`` (measured or from a table) and the named table latencies ``latency:<name>`` (ms)."""
    return name == "latency" or name.startswith("latency:")


def x_objective(objectives: Sequence[str]) -> str:
    """The front plot's x axis: the first complexity objective (``iteration`` if a run had none)."""
    costs = complexity_objectives(objectives)
    return costs[0] if costs else "iteration"


def scale(name: str) -> float:
    """What a value of objective ``name`` is divided by for plots and tables (1e6 for MAdds/params)."""
    return 1e6 if name in MILLIONS else 1.0


def axis_label(name: str) -> str:
    """A unit-aware label: ``MAdds (M)``, ``params (M)``, ``latency (ms)`` (``latency:<name> (ms)``), else
    the raw name."""
    if name in MILLIONS:
        return f"{MILLIONS[name]} (M)"
    if is_latency(name):
        return f"{name} (ms)"
    return name


def scaled(row: Row, name: str) -> float | None:
    """``row[name]`` in plot/table units, or None where it is missing or not a finite number."""
    value = number(row.get(name))
    return None if value is None else value / scale(name)


def fmt_value(row: Row, name: str) -> str:
    """One objective's value as a table prints it (``-`` where missing)."""
    value = scaled(row, name)
    if value is None:
        return MISSING
    if is_accuracy(name):
        return f"{100 * value:.2f}%"
    if name == "madds":
        return f"{value:.2f}"
    if name == "params":
        return f"{value:.3f}"
    if is_latency(name):
        return f"{value:.2f}"
    return f"{value:.4g}"


def fmt_percent(value: Any) -> str:
    """An accuracy in [0, 1] as ``12.34%`` (``-`` where missing)."""
    value = number(value)
    return MISSING if value is None else f"{100 * value:.2f}%"


def fmt_float(value: Any, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals (``-`` where missing)."""
    value = number(value)
    return MISSING if value is None else f"{value:.{digits}f}"


def fmt_fact(value: Any) -> str:
    """A key fact as written (a non-finite float or None prints as ``-``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return str(value)


def fmt_text(value: Any) -> str:
    """A name-like field (surrogate, strategy): ``-`` where missing or empty."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    text = str(value)
    return text if text else MISSING


def resolution(row: Row) -> str:
    """The subnet's input resolution (``-`` where the row has no subnet)."""
    subnet = row.get("subnet")
    r = subnet.get("r") if isinstance(subnet, dict) else None
    return MISSING if r is None else str(r)


def sort_key(name: str) -> Callable[[Row], tuple[bool, float]]:
    """Sort rows by objective ``name`` ascending, rows without a value last (stable otherwise)."""

    def key(row: Row) -> tuple[bool, float]:
        value = number(row.get(name))
        return (value is None, 0.0 if value is None else value)

    return key


def has(rows: Sequence[Row], name: str) -> bool:
    """Whether any row has a finite value for ``name`` (decides optional table columns)."""
    return any(number(r.get(name)) is not None for r in rows)


@dataclass(frozen=True)
class Column:
    """One table column: its header, how a row's cell prints (from the row and its position) and
    whether it holds text (left-aligned in HTML) rather than numbers."""

    header: str
    cell: Callable[[Row, int], str]
    text: bool = False


def name_column(header: str = "model") -> Column:
    """The row's ``name``, or its position in the table where it has none."""
    return Column(header, lambda r, i: fmt_text(r.get("name", i)), text=True)


def objective_column(name: str) -> Column:
    """An objective's column, headed by its unit-aware label."""
    return Column(axis_label(name), lambda r, i: fmt_value(r, name))


def table_columns(rows: Sequence[Row], objectives: Sequence[str]) -> list[Column]:
    """The HTML models/front table: name, the run's other complexity objectives present in the rows,
    MAdds, params, latency (each where present), resolution, search-val top-1, test top-1/top-5."""
    extra = [o for o in complexity_objectives(objectives) if o not in BUILTIN_COSTS and has(rows, o)]
    tasks = [o for o in accuracy_objectives(objectives) if o != TOP1 and has(rows, o)]
    cols = [name_column()]
    if has(rows, "task"):  # a many-task run's models: each is made for one task
        cols.append(Column("task", lambda r, i: fmt_text(r.get("task")), text=True))
    cols += [objective_column(o) for o in extra]
    cols += [objective_column(o) for o in BUILTIN_COSTS if has(rows, o)]
    cols += [
        Column("resolution", lambda r, i: resolution(r)),
        Column(
            "search-val top-1" + (" (mean of tasks)" if tasks and not has(rows, "task") else ""),
            lambda r, i: fmt_percent(r.get(TOP1)),
        ),
    ]
    if not has(rows, "task"):  # the front of a many-task run: every task's search-val top-1
        cols += [
            Column(f"{o.partition(':')[2]} top-1", lambda r, i, o=o: fmt_percent(r.get(o))) for o in tasks
        ]
    if has(rows, "test_top1"):
        cols.append(Column("test top-1", lambda r, i: fmt_percent(r.get("test_top1"))))
    if has(rows, "test_top5"):
        cols.append(Column("test top-5", lambda r, i: fmt_percent(r.get("test_top5"))))
    return cols


#: how reports name a deployed format (`nat.export.deploy.FORMATS`); an unknown key prints as it is
FORMAT_LABELS = {
    "pytorch": "PyTorch fp32",
    "onnx": "ONNX Runtime fp32",
    "onnx_int8": "ONNX Runtime int8",
    "executorch": "ExecuTorch fp32",
    "executorch_int8": "ExecuTorch int8",
}


def format_rows(models: Sequence[Row]) -> list[Row]:
    """One row per model and deployed format (``models.json``'s ``formats``), in the models' order."""
    return [
        {**facts, "name": m.get("name"), "format": FORMAT_LABELS.get(key, key)}
        for m in models
        for key, facts in (m.get("formats") or {}).items()
        if isinstance(facts, dict)
    ]


def format_columns() -> list[Column]:
    """The deployed-files table: model, runtime and precision, file, size, test top-1/top-5 measured in
    that runtime, batch-1 latency (median) and the threads it was measured with."""
    return [
        name_column(),
        Column("format", lambda r, i: fmt_text(r.get("format")), text=True),
        Column("file", lambda r, i: fmt_text(r.get("file")), text=True),
        Column("size (MB)", lambda r, i: fmt_float(_megabytes(r.get("size_bytes")), 2)),
        Column("test top-1", lambda r, i: fmt_percent(r.get("test_top1"))),
        Column("test top-5", lambda r, i: fmt_percent(r.get("test_top5"))),
        Column("latency (ms, batch 1)", lambda r, i: fmt_float(r.get("latency_ms"), 3)),
        Column("threads", lambda r, i: fmt_text(r.get("threads"))),
    ]


def _megabytes(value: Any) -> float | None:
    n = number(value)
    return None if n is None else n / 1e6


def history_columns(history: Sequence[Row]) -> list[Column]:
    """The per-iteration table: strategy, chosen surrogate, its Kendall tau(s), sizes, hypervolume."""
    cols = [
        Column("iteration", lambda r, i: fmt_text(r.get("iteration"))),
        Column("strategy", lambda r, i: fmt_text(r.get("strategy")), text=True),
        Column("surrogate", lambda r, i: fmt_text(r.get("surrogate")), text=True),
        Column("Kendall tau (CV)", lambda r, i: fmt_float(r.get("tau"))),
    ]
    if has(history, "candidate_tau"):
        cols.append(Column("Kendall tau (candidates)", lambda r, i: fmt_float(r.get("candidate_tau"))))
    cols += [
        Column("archive size", lambda r, i: fmt_text(r.get("archive_size"))),
        Column("front size", lambda r, i: fmt_text(r.get("front_size"))),
        Column("hypervolume", lambda r, i: fmt_float(r.get("hypervolume"), 4)),
    ]
    if any(isinstance(r.get("seconds"), dict) for r in history):  # where the iteration's time went
        for key, header in PHASE_COLUMNS:
            cols.append(Column(header, lambda r, i, k=key: fmt_float(_phase_seconds(r, k), 1)))
    return cols


#: the phases of an iteration (`nat.search.phases.PhaseClock`) and their column headers
PHASE_COLUMNS = (
    ("proposal", "s proposal"),
    ("adaptation", "s adaptation"),
    ("evaluation", "s evaluation"),
    ("reevaluation", "s re-evaluation"),
)


def _phase_seconds(row: Row, phase: str) -> Any:
    seconds = row.get("seconds")
    return seconds.get(phase) if isinstance(seconds, dict) else None
