"""The objectives of a run: what is measured per evaluation and what the search optimises.

``top1`` is maximised (the search minimises ``1 - top1``); ``madds``, ``params``, ``latency`` (ms)
and user objectives (``package.module:function``, called as ``function(subnet) -> float``) are
minimised. MAdds and params are exact and cheap (table lookups); latency is measured on each evaluated
subnet and predicted for candidates by a surrogate; user functions are called directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np

from nat.errors import ConfigError
from nat.objectives.complexity import ComplexityTable
from nat.space.definition import SearchSpace
from nat.space.genome import decode
from nat.space.subnet import Subnet

UserObjective = Callable[[Subnet], float]


def import_objective(path: str) -> UserObjective:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"objective {path!r}: cannot import module {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"objective {path!r}: {module_name} has no callable {attr!r}")
    return fn


class ObjectiveSet:
    """Objective names of a run, with the exact ones computable from genomes alone."""

    def __init__(self, names: Sequence[str], space: SearchSpace, num_classes: int) -> None:
        self.names = list(names)
        self.space = space
        self.table = ComplexityTable(space, num_classes)
        self.user = {n: import_objective(n) for n in self.names if ":" in n}

    @property
    def measured(self) -> list[str]:
        """Objectives that need a real evaluation (and a surrogate during the search)."""
        return [n for n in self.names if n in ("top1", "latency")]

    def exact(self, genomes: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Values of the exact objectives (madds, params, user functions) for a batch of genomes."""
        names = self.names if names is None else names
        out: dict[str, np.ndarray] = {}
        if "madds" in names or "params" in names:
            madds, params = self.table(genomes)
            if "madds" in names:
                out["madds"] = madds.astype(float)
            if "params" in names:
                out["params"] = params.astype(float)
        for name in names:
            if name in self.user:
                fn = self.user[name]
                out[name] = np.array([float(fn(decode(g, self.space))) for g in genomes])
        return out

    def minimised(self, values: dict[str, np.ndarray | float]) -> np.ndarray:
        """Objective matrix (n, k) in minimisation form, columns in ``names`` order."""
        cols = []
        for name in self.names:
            v = np.asarray(values[name], dtype=float)
            cols.append(1.0 - v if name == "top1" else v)
        return np.stack(cols, axis=-1)
