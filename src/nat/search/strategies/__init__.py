"""Search strategies behind one ask/tell interface: NAT itself and the two baselines it is measured by.

Adding a strategy means one module here with a `StrategyBase` subclass decorated with
`register_strategy` (imported below, so that it registers); configs accept every registered name.
"""

from __future__ import annotations

from nat.search.config import SearchConfig
from nat.search.objective_set import ObjectiveSet
from nat.search.strategies.base import STRATEGIES, Proposal, Strategy, StrategyBase, register_strategy
from nat.search.strategies.evolution import EvolutionStrategy
from nat.search.strategies.nat import NATStrategy
from nat.search.strategies.random_search import RandomStrategy
from nat.surrogates.prior import Prior


def make_strategy(problem: ObjectiveSet, config: SearchConfig, prior: Prior | None = None) -> Strategy:
    """The strategy ``config.strategy`` names, over the run's problem (``prior``: a warm-started run's
    surrogate prior, offered to adaptive switching)."""
    return STRATEGIES.get(config.strategy).from_config(problem, config, prior)


__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "NATStrategy",
    "Proposal",
    "RandomStrategy",
    "Strategy",
    "StrategyBase",
    "make_strategy",
    "register_strategy",
]
