"""What a run optimises: its objectives, its constraints, and the Pareto views of the archive they define.

``top1`` is maximised (the search minimises ``1 - top1``); ``madds``, ``params``, ``latency`` (ms),
``latency:<name>`` (ms, from a named table) and user objectives (``package.module:function``, called as
``function(subnet) -> float``) are minimised. MAdds and params are exact and cheap (table lookups) and
recorded for every evaluated subnet, objectives or not. Latency from a latency lookup table is exact in
the same way (a sum of table entries, vectorised); ``latency`` without a table is measured on each
evaluated subnet and predicted for candidates by a surrogate; user functions are called directly.
Every value must be a finite number: a NaN, an infinity, a non-number or an exception from a user
function is a `ConfigError` naming the objective and the subnet.

`ObjectiveSet` is the run's *problem* in pymoo's sense, kept apart from the strategies that search it:
every part of the run (the loop, the strategies, finalisation, the benchmarks) asks it for the
objective matrix, feasibility, the front and the hypervolume, so they all agree on what "better" means.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING

import numpy as np

from nat.data.task import MAX_CLASSES
from nat.errors import ConfigError
from nat.objectives.complexity import ComplexityTable
from nat.objectives.latency_table import LatencyPredictor, LatencyTable
from nat.search.config import ACCURACY_PREFIX
from nat.search.front import hypervolume, non_dominated
from nat.space.definition import SearchSpace
from nat.space.genome import decode, encode
from nat.space.subnet import Subnet

if TYPE_CHECKING:
    from nat.search.archive import Record

UserObjective = Callable[[Subnet], float]
#: objectives a real evaluation measures (the others are computed from the genome), besides each
#: task's ``top1:<task>`` in a many-task run
MEASURED = ("top1", "latency")


def is_accuracy(name: str) -> bool:
    """Whether objective ``name`` is a top-1 accuracy (maximised): ``top1``, or ``top1:<task>`` of a
    many-task run."""
    return name == "top1" or name.startswith(ACCURACY_PREFIX)


def accuracy_label(name: str) -> str:
    """How an accuracy objective is named per task in reports: ``top1:<task>`` -> ``<task>``, ``top1``
    (a single-task run) as itself."""
    return name.removeprefix(ACCURACY_PREFIX)


#: exact measures every archive record carries, whether or not they are objectives
ALWAYS_RECORDED = ("madds", "params")
#: how each exact measure is named in messages
UNITS = {"madds": "MAdds", "params": "params"}


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


def check_finite(name: str, value: float, subnet: Subnet) -> float:
    """``value`` if it is finite, else a `ConfigError` naming the objective and the subnet."""
    if not math.isfinite(value):
        raise ConfigError(
            f"objective {name!r} is {value} for subnet {subnet.to_dict()}; every objective must be a finite "
            "number (fix the function or measurement that produced it)"
        )
    return value


def call_user_objective(name: str, fn: UserObjective, subnet: Subnet) -> float:
    """``fn(subnet)`` as a finite float; a `ConfigError` if it raises or returns anything else."""
    try:
        value = fn(subnet)
    except Exception as exc:  # noqa: BLE001 - any failure of user code is reported as one line
        raise ConfigError(
            f"objective {name!r} failed on subnet {subnet.to_dict()}: {type(exc).__name__}: {exc}"
        ) from None
    number = _as_number(value)
    if number is None:
        raise ConfigError(
            f"objective {name!r} returned {value!r} for subnet {subnet.to_dict()}, expected a number "
            "(a float: the value to minimise)"
        )
    return check_finite(name, number, subnet)


def _as_number(value: object) -> float | None:
    """A real number (Python, numpy, or a one-element array / tensor) as a float; else ``None``."""
    if hasattr(value, "item") and not isinstance(value, Real):  # numpy arrays, torch tensors
        try:
            value = value.item()  # type: ignore[union-attr]
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, bool | np.bool_) or not isinstance(value, Real):
        return None
    return float(value)


def minimisation_matrix(records: Sequence[Record], names: Sequence[str]) -> np.ndarray:
    """Objective matrix (n, k) of evaluated records in minimisation form (``1 - top1``, the rest as is)."""
    return np.array(
        [[1.0 - r.values[n] if is_accuracy(n) else r.values[n] for n in names] for r in records], float
    )


def feasible_records(records: Sequence[Record], constraints: Mapping[str, float]) -> list[Record]:
    """The records within every upper bound. Records carry madds and params always and every objective,
    and a run can bound only those (`SearchConfig`), so every bound applies to every record; only a
    record written by an older nat without a bounded value (params, when it was not an objective) is
    not excluded by that bound."""
    return [r for r in records if all(r.values.get(n, -math.inf) <= b for n, b in constraints.items())]


def pareto_front(
    records: Sequence[Record], names: Sequence[str], constraints: Mapping[str, float] | None = None
) -> list[Record]:
    """The feasible non-dominated records, in archive order: needs only the values records carry, so a
    finished run's front can be had from its folder alone."""
    feasible = feasible_records(records, constraints or {})
    if not feasible:
        return []
    return [feasible[i] for i in non_dominated(minimisation_matrix(feasible, names))]


class ObjectiveSet:
    """Objective names and upper-bound constraints of a run, over one search space."""

    def __init__(
        self,
        names: Sequence[str],
        space: SearchSpace,
        num_classes: int,
        constraints: Mapping[str, float] | None = None,
        latency_tables: Mapping[str, LatencyTable] | None = None,
    ) -> None:
        self.names = list(names)
        self.space = space
        self.constraints = dict(constraints or {})
        unmeasured = [n for n in self.constraints if n not in self.names and n not in ALWAYS_RECORDED]
        if unmeasured:
            raise ConfigError(
                f"constraint(s) on {unmeasured}: a run measures only its objectives {self.names} and "
                f"{list(ALWAYS_RECORDED)}; add them to the objectives or drop the bounds"
            )
        if not 1 <= num_classes <= MAX_CLASSES:
            raise ConfigError(f"num_classes must be from 1 to {MAX_CLASSES:,}, got {num_classes!r}")
        self.table = ComplexityTable(space, num_classes)
        tables = dict(latency_tables or {})
        unknown = [n for n in tables if n not in self.names]
        if unknown:
            raise ConfigError(f"latency tables for {unknown}, which are not objectives {self.names}")
        #: table-predicted latency objectives (each checked to cover the whole space)
        self.latency = {n: LatencyPredictor(t, space, num_classes) for n, t in tables.items()}
        self.user = {
            n: import_objective(n)
            for n in self.names
            if ":" in n and n not in self.latency and not is_accuracy(n)
        }
        self.hv_scale = self._hv_scale()

    @property
    def measured_latency(self) -> bool:
        """Whether ``latency`` is an objective measured on each evaluated subnet (no table for it)."""
        return "latency" in self.names and "latency" not in self.latency

    @property
    def measured(self) -> list[str]:
        """The objectives a real evaluation measures (the others come from the genome)."""
        return [n for n in self.names if is_accuracy(n) or (n in MEASURED and n not in self.latency)]

    @property
    def accuracies(self) -> list[str]:
        """The accuracy objectives: ``["top1"]``, or one ``top1:<task>`` per task of a many-task run."""
        return [n for n in self.names if is_accuracy(n)]

    # ----------------------------------------------------------------- values
    def exact(self, genomes: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Values of the exact objectives (madds, params, table latencies, user functions) for a batch of
        genomes; a user function that fails or returns anything but a finite number is a `ConfigError`."""
        names = self.names if names is None else names
        out: dict[str, np.ndarray] = {}
        if "madds" in names or "params" in names:
            madds, params = self.table(genomes)
            if "madds" in names:
                out["madds"] = madds.astype(float)
            if "params" in names:
                out["params"] = params.astype(float)
        for name in names:
            if name in self.latency:
                out[name] = self.latency[name](genomes)
        user = [n for n in names if n in self.user]
        if user:
            subnets = [decode(g, self.space) for g in genomes]
            for name in user:
                fn = self.user[name]
                out[name] = np.array([call_user_objective(name, fn, s) for s in subnets], dtype=float)
        return out

    def exact_values(self, subnet: Subnet) -> dict[str, float]:
        """The exact (not measured) values of one subnet, as recorded with each evaluation: its exact
        objectives, and madds and params always (so that bounds on them hold whatever the objectives)."""
        names = [n for n in self.names if n not in self.measured]
        names += [n for n in ALWAYS_RECORDED if n not in names]
        genome = encode(subnet, self.space)[None]
        return {k: float(v[0]) for k, v in self.exact(genome, names).items()}

    def minimised(self, values: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Objective matrix (n, k) in minimisation form, columns in ``names`` order."""
        cols = []
        for name in self.names:
            v = np.asarray(values[name], dtype=float)
            cols.append(1.0 - v if is_accuracy(name) else v)
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
        return feasible_records(records, self.constraints)

    def check_satisfiable(self, width: float) -> None:
        """A `ConfigError` if a bound on madds, params or a table latency excludes the whole space: the
        smallest subnet (smallest choices, resolution and ``width``) has the least MAdds and params, and
        a table gives the exact least latency (`LatencyPredictor.minimum`)."""
        for name, predictor in self.latency.items():
            if name in self.constraints and predictor.minimum() > self.constraints[name]:
                raise ConfigError(
                    f"constraint {name} <= {self.constraints[name]:g} ms cannot be met: the fastest subnet "
                    f"of the space takes {predictor.minimum():.4g} ms by its table; raise the bound or use "
                    "a smaller space"
                )
        smallest = Subnet.smallest(self.space, w=width)
        bounded = [n for n in ALWAYS_RECORDED if n in self.constraints]
        if not bounded:
            return
        exact = self.exact(encode(smallest, self.space)[None], bounded)
        for name in bounded:
            value, bound = float(exact[name][0]), self.constraints[name]
            if value > bound:
                raise ConfigError(
                    f"constraint {name} <= {bound:g} cannot be met: the smallest subnet of the space has "
                    f"{value:.3g} {UNITS[name]}; raise the bound to at least {value:.0f} or use a smaller "
                    "space (lower resolutions, narrower widths)"
                )

    # ----------------------------------------------------------------- Pareto views
    def front(self, records: Sequence[Record]) -> list[Record]:
        """The feasible non-dominated records, in archive order."""
        return pareto_front(records, self.names, self.constraints)

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
            [1.0 if is_accuracy(n) else float(exact.get(n, [np.nan])[0]) for n in self.names], dtype=float
        )


def task_columns(names: Sequence[str], objective: str) -> list[int]:
    """Columns of the objective matrix that make one task's own problem: its accuracy objective and every
    objective that is not an accuracy (a many-task run's other tasks' accuracies are left out)."""
    return [i for i, n in enumerate(names) if n == objective or not is_accuracy(n)]
