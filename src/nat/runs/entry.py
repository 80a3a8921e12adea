"""`run_search`: a search started or continued in a run folder, under torchrun or not (`nat.runs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nat.runtime import process_settings
from nat.runtime.distributed import distributed_session
from nat.search.archive import Record
from nat.search.config import SearchConfig
from nat.search.finalize import MODELS_DIR
from nat.search.loop import NATSearch
from nat.search.rundir import ARCHIVE, RunDir, holds_run


@dataclass(frozen=True)
class SearchResult:
    """What a search returns: the final front, the front models' index entries, the run folder.

    Under torchrun only rank 0's result holds the front and models (``main`` is False elsewhere)."""

    run_dir: Path
    front: list[Record]
    models: list[dict[str, Any]] = field(default_factory=list)
    main: bool = True

    @property
    def models_dir(self) -> Path:
        return self.run_dir / MODELS_DIR


def run_search(
    config: SearchConfig, out: str | Path, *, resume: bool | None = None, repair: bool = False
) -> SearchResult:
    """Run NAT in ``out`` (start, or continue: see `nat.runs` for ``resume``) and deliver its front
    models and report. ``repair``: first cut a damaged archive back to its intact records (rank 0).

    Under torchrun every process calls this; they share the work and rank 0 writes ``out``."""
    out = Path(out)
    resume = holds_run(out) if resume is None else resume
    with (
        process_settings(config),
        distributed_session(config.device, config.distributed_timeout_minutes) as collective,
    ):
        if repair:
            report = collective.on_main(lambda: RunDir.repair(out))
            if collective.is_main:
                print(report or f"{out / ARCHIVE} is intact; nothing to repair")
        with NATSearch(config, out, resume=resume, collective=collective) as search:
            front = search.run()
            return SearchResult(search.out, front, list(search.models), collective.is_main)
