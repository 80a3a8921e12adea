"""The strategy interface: how a search proposes the subnets to evaluate next (pymoo-style ask/tell).

A strategy sees the archive as it stood before iteration ``i`` and proposes ``k`` new subnets
(`Strategy.ask`); after the loop has evaluated them it is told the measurements (`Strategy.tell`)
and may report what it learned. A strategy must be a pure function of the archive and the iteration's
seed: the loop recomputes a proposal after a resume and relies on getting the same one. So strategies
keep no state between iterations; ``tell`` only reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nat.search.archive import Record
from nat.search.config import SearchConfig
from nat.search.objectives import ObjectiveSet
from nat.search.seeds import SeedTag, iteration_seed
from nat.space.subnet import Subnet


@dataclass
class Proposal:
    """The subnets a strategy wants evaluated in one iteration, and what it knows about them.

    ``predicted`` holds the strategy's own prediction of each subnet's objectives (minimisation form,
    columns as `ObjectiveSet.names`) where it has one; ``info`` goes into the iteration's history.
    """

    subnets: list[Subnet]
    info: dict[str, Any] = field(default_factory=dict)
    predicted: np.ndarray | None = None


class Strategy(Protocol):
    """Proposes subnets from the archive; see the module docstring for the contract."""

    name: str

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal: ...

    def tell(self, proposal: Proposal, measured: Sequence[Record]) -> dict[str, Any]: ...


class StrategyBase:
    """What the three strategies share: the run's problem and settings, the proposal seed, novelty."""

    name = "base"

    def __init__(self, problem: ObjectiveSet, config: SearchConfig) -> None:
        self.problem = problem
        self.config = config
        self.space = problem.space

    def seed(self, iteration: int) -> int:
        return iteration_seed(self.config.seed, iteration, SeedTag.CANDIDATES)

    def fresh(self, subnets: Sequence[Subnet], known: set[Subnet]) -> list[int]:
        """Indices of the subnets that are new (not in ``known``, not repeated) and feasible."""
        out: list[int] = []
        seen: set[Subnet] = set()
        for i, s in enumerate(subnets):
            if s not in known and s not in seen and self.problem.satisfies(s):
                seen.add(s)
                out.append(i)
        return out

    def tell(self, proposal: Proposal, measured: Sequence[Record]) -> dict[str, Any]:
        """Nothing to report by default (strategies keep no state between iterations)."""
        return {}
