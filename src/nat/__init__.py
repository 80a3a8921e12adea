"""nat: Neural Architecture Transfer (Lu et al., TPAMI 2021) as a library and a command-line tool.

The public API is small: the search space (`SearchSpace`, `Subnet`, genomes), the elastic `Supernet`,
and exact complexity (`profile_subnet`). Heavier modules (torch) are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from nat.errors import CheckpointError, ConfigError, DataError, NATError
from nat.space import SearchSpace, Subnet, get_space

__version__ = "0.1.0"

_LAZY = {
    "Supernet": "nat.supernet",
    "profile_subnet": "nat.objectives.complexity",
    "ComplexityTable": "nat.objectives.complexity",
}


def __getattr__(name: str) -> Any:
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
    "get_space",
    "profile_subnet",
]
