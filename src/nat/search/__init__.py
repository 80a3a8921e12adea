"""The NAT search: run folder, archive, strategies (ask/tell), the loop's phases, finalisation.

The package itself is callable, so that the library's one call to search reads as the paper's verb:
``nat.search(config, out="runs/x")`` is `nat.api.search` (a package and a function cannot share the
name ``nat.search`` otherwise, since importing the package binds it on ``nat``).
"""

import sys
import types
from pathlib import Path
from typing import Any

from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig, list_presets, load_config
from nat.search.loop import NATSearch
from nat.search.objective_set import ObjectiveSet
from nat.search.rundir import RunDir
from nat.search.strategies import Proposal, Strategy, make_strategy

__all__ = [
    "Archive",
    "NATSearch",
    "ObjectiveSet",
    "Phase",
    "Proposal",
    "Record",
    "RunDir",
    "SearchConfig",
    "Strategy",
    "list_presets",
    "load_config",
    "make_strategy",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, config: Any, out: str | Path, overrides: dict[str, Any] | None = None) -> Any:
        """`nat.api.search`: run NAT (or continue the run in ``out``); returns a `SearchResult`."""
        from nat.api import search

        return search(config, out, overrides)


sys.modules[__name__].__class__ = _CallablePackage
