"""Search strategies behind one ask/tell interface: NAT itself and the two baselines it is measured by.

Adding a strategy means one module here with a `StrategyBase` subclass and one line in `STRATEGIES`
(plus the name in `SearchConfig.strategy`).
"""

from __future__ import annotations

from nat.search.config import SearchConfig
from nat.search.objectives import ObjectiveSet
from nat.search.strategies.base import Proposal, Strategy, StrategyBase
from nat.search.strategies.evolution import EvolutionStrategy
from nat.search.strategies.nat import NATStrategy
from nat.search.strategies.random_search import RandomStrategy

STRATEGIES: dict[str, type[StrategyBase]] = {
    NATStrategy.name: NATStrategy,
    RandomStrategy.name: RandomStrategy,
    EvolutionStrategy.name: EvolutionStrategy,
}


def make_strategy(problem: ObjectiveSet, config: SearchConfig) -> Strategy:
    """The strategy ``config.strategy`` names, over the run's problem."""
    return STRATEGIES[config.strategy](problem, config)


__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "NATStrategy",
    "Proposal",
    "RandomStrategy",
    "Strategy",
    "StrategyBase",
    "make_strategy",
]
