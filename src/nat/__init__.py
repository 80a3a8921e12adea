"""nat: Neural Architecture Transfer (Lu et al., TPAMI 2021) as a library and a command-line tool.

The public API is small: one call to search (`nat.search(config, out=...)`), one to retarget a
finished search (`nat.retarget(run, out=..., overrides=...)`), one to open a run (`nat.open_run`),
one to load a model (`nat.load_model`); below them the search space (`SearchSpace`,
`Subnet`, genomes), the elastic `Supernet`, exact complexity (`profile_subnet`), and model files
(`model_transform`; `load_natnet` for NAT's released networks). Heavier modules (torch) are imported on
first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nat.errors import CheckpointError, ConfigError, DataError, NATError
from nat.space import SearchSpace, Subnet, get_space

__version__ = "0.1.0"

_LAZY = {
    "open_run": "nat.api",
    "retarget": "nat.api",
    "SearchResult": "nat.runs",
    "RunView": "nat.api",
    "Supernet": "nat.supernet",
    "profile_subnet": "nat.objectives.complexity",
    "ComplexityTable": "nat.objectives.complexity",
    "load_model": "nat.export",
    "load_natnet": "nat.export",
    "model_transform": "nat.export",
}


def __getattr__(name: str) -> Any:
    if name == "search":  # the package nat.search, which is callable: nat.search(config, out=...)
        return import_module("nat.search")
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nat' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ComplexityTable",
    "ConfigError",
    "DataError",
    "NATError",
    "SearchSpace",
    "Subnet",
    "Supernet",
    "RunView",
    "SearchResult",
    "get_space",
    "load_model",
    "load_natnet",
    "model_transform",
    "open_run",
    "profile_subnet",
    "retarget",
    "search",
]
