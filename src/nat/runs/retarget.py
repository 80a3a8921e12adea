"""`run_retarget`: a finished search aimed at new objectives or constraints (`nat.search.retarget`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nat.runs.entry import SearchResult, run_search
from nat.search.retarget import plan_retarget


def run_retarget(
    source: str | Path,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    iterations: int | None = None,
    adapt_epochs: float | None = None,
    resume: bool | None = False,
) -> SearchResult:
    """Retarget the finished run ``source`` into the new run folder ``out`` and deliver its front's
    models and report, exactly as a search does. The source is only read. ``overrides`` change the
    source's config (objectives, constraints, latency tables, search and finalize settings);
    ``iterations`` of the short search that follows (default `nat.search.retarget.DEFAULT_ITERATIONS`);
    ``adapt_epochs`` > 0 adapts the supernet in each of them. ``resume`` as for `run_search` (the
    library's None: a folder that holds this retarget already is continued)."""
    config = plan_retarget(source, out, overrides, iterations=iterations, adapt_epochs=adapt_epochs)
    return run_search(config, out, resume=resume)
