"""What a run optimises: its objectives, its constraints, and the Pareto views of the archive they define.

``top1`` is maximised (the search minimises ``1 - top1``); ``madds``, ``params``, ``latency`` (ms)
and user objectives (``package.module:function``, called as ``function(subnet) -> float``) are
minimised. MAdds and params are exact and cheap (table lookups); latency is measured on each evaluated
subnet and predicted for candidates by a surrogate; user functions are called directly.

`ObjectiveSet` is the run's *problem* in pymoo's sense, kept apart from the strategies that search it:
every part of the run (the loop, the strategies, finalisation, the benchmarks) asks it for the
objective matrix, feasibility, the front and the hypervolume, so they all agree on what "better" means.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from nat.errors import ConfigError
from nat.objectives.complexity import ComplexityTable
from nat.search.front import hypervolume, non_dominated
from nat.space.definition import SearchSpace
from nat.space.genome import decode, encode
from nat.space.subnet import Subnet

if TYPE_CHECKING:
    from nat.search.archive import Record

UserObjective = Callable[[Subnet], float]
#: objectives a real evaluation measures (the others are computed from the genome)
MEASURED = ("top1", "latency")


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
    """Objective names and upper-bound constraints of a run, over one search space."""

    def __init__(
        self,
        names: Sequence[str],
        space: SearchSpace,
        num_classes: int,
        constraints: Mapping[str, float] | None = None,
    ) -> None:
        self.names = list(names)
        self.space = space
        self.constraints = dict(constraints or {})
        self.table = ComplexityTable(space, num_classes)
        self.user = {n: import_objective(n) for n in self.names if ":" in n}
        self.hv_scale = self._hv_scale()

    # ----------------------------------------------------------------- values
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

    def exact_values(self, subnet: Subnet) -> dict[str, float]:
        """The exact (not measured) objectives of one subnet, as recorded with each evaluation."""
        names = [n for n in self.names if n not in MEASURED]
        genome = encode(subnet, self.space)[None]
        return {k: float(v[0]) for k, v in self.exact(genome, names).items()}

    def minimised(self, values: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Objective matrix (n, k) in minimisation form, columns in ``names`` order."""
        cols = []
        for name in self.names:
            v = np.asarray(values[name], dtype=float)
            cols.append(1.0 - v if name == "top1" else v)
        return np.stack(cols, axis=-1)

    def matrix(self, records: Sequence[Record]) -> np.ndarray:
        """The minimisation matrix of evaluated records."""
        return self.minimised({n: [r.values[n] for r in records] for n in self.names})

    # ----------------------------------------------------------------- constraints
    def satisfies(self, subnet: Subnet) -> bool:
        """Whether a subnet meets every bound that can be computed without evaluating it."""
        if not self.constraints:
            return True
        exact = self.exact(encode(subnet, self.space)[None], list(self.constraints))
        return all(float(exact[n][0]) <= b for n, b in self.constraints.items() if n in exact)

    def feasible(self, records: Sequence[Record]) -> list[Record]:
        return [
            r for r in records if all(r.values.get(n, -math.inf) <= b for n, b in self.constraints.items())
        ]

    # ----------------------------------------------------------------- Pareto views
    def front(self, records: Sequence[Record]) -> list[Record]:
        """The feasible non-dominated records, in archive order."""
        feasible = self.feasible(records)
        if not feasible:
            return []
        return [feasible[i] for i in non_dominated(self.matrix(feasible))]

    def hypervolume(self, front: Sequence[Record]) -> float:
        """Hypervolume of an already computed front (error and complexity scaled to [0, 1])."""
        if not front:
            return 0.0
        F = self.matrix(front)
        return hypervolume(F / self.hv_divisor(F))

    def hv_divisor(self, F: np.ndarray) -> np.ndarray:
        """What each objective column is divided by for hypervolume (measured ones: their maximum)."""
        return np.where(np.isfinite(self.hv_scale), self.hv_scale, F.max(0).clip(1e-12))

    def _hv_scale(self) -> np.ndarray:
        """Per-objective scale for hypervolume: 1 for error, the largest subnet's value for complexity
        (NaN for measured objectives, which are scaled by their observed maximum instead)."""
        largest = encode(Subnet.largest(self.space), self.space)[None]
        exact = self.exact(largest)
        return np.array(
            [1.0 if n == "top1" else float(exact.get(n, [np.nan])[0]) for n in self.names], dtype=float
        )
