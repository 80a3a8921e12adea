"""The NAT search: archive, surrogate-assisted NSGA-III, online adaptation, evaluation, resume."""

from nat.search.archive import Archive, Record
from nat.search.config import SearchConfig, list_presets, load_config
from nat.search.loop import NATSearch

__all__ = ["Archive", "NATSearch", "Record", "SearchConfig", "list_presets", "load_config"]
