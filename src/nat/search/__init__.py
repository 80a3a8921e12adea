"""The NAT search: run folder, archive, strategies (ask/tell), the loop's phases, finalisation."""

from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig, list_presets, load_config
from nat.search.loop import NATSearch
from nat.search.objectives import ObjectiveSet
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
