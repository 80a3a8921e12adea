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

from nat.registry import Registry
from nat.search.archive import Record
from nat.search.config import NSGA3Config, SearchConfig, SurrogateConfig
from nat.search.objective_set import ObjectiveSet
from nat.search.seeds import SeedTag, iteration_seed
from nat.space.subnet import Subnet
from nat.surrogates.prior import Prior


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


#: every strategy, by the name ``strategy:`` gives in a config (`register_strategy`)
STRATEGIES: Registry[type[StrategyBase]] = Registry("strategy")


def register_strategy(cls: type[StrategyBase]) -> type[StrategyBase]:
    """Class decorator: make a `StrategyBase` subclass selectable as ``strategy: <cls.name>``."""
    return STRATEGIES.add(cls.name, cls)


class StrategyBase:
    """What the three strategies share: the problem, their settings, the proposal seed, novelty.

    As pymoo's algorithms, a strategy takes its settings as explicit parameters (`from_config` reads
    them from a run config), so it can be built and tested without a whole `SearchConfig`."""

    name = "base"

    def __init__(
        self,
        problem: ObjectiveSet,
        *,
        seed: int = 0,
        candidates: int = 8,
        surrogate: SurrogateConfig | None = None,
        nsga3: NSGA3Config | None = None,
        candidate_selection: str = "hypervolume",
        prior: Prior | None = None,
    ) -> None:
        self.problem = problem
        self.prior = prior  # a warm-started run's surrogate prior (`nat.search.warm_start`)
        self.space = problem.space
        self.run_seed, self.candidates = seed, candidates
        self.surrogate = surrogate or SurrogateConfig()
        self.nsga3 = nsga3 or NSGA3Config()
        self.candidate_selection = candidate_selection

    @classmethod
    def from_config(
        cls, problem: ObjectiveSet, config: SearchConfig, prior: Prior | None = None
    ) -> StrategyBase:
        """The strategy with a run config's settings (and a warm-started run's surrogate prior)."""
        return cls(
            problem,
            prior=prior,
            seed=config.seed,
            candidates=config.candidates_per_iteration,
            surrogate=config.surrogate,
            nsga3=config.nsga3,
            candidate_selection=config.candidate_selection,
        )

    def seed(self, iteration: int) -> int:
        return iteration_seed(self.run_seed, iteration, SeedTag.CANDIDATES)

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
