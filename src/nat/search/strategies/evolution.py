"""OFA-style evolution: the single-objective baseline. Maximise predicted accuracy under the constraints.

This is how OFA specialises a supernet for a deployment limit: a genetic algorithm on an accuracy
predictor, subject to the complexity bound. Each iteration proposes the ``k`` best new subnets of the
final population by predicted accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nat.search.archive import Record
from nat.search.problem import run_single_objective_ga
from nat.search.strategies.base import Proposal, StrategyBase, register_strategy
from nat.search.strategies.surrogate import surrogate_info, surrogate_problem
from nat.space.genome import decode


@register_strategy
class EvolutionStrategy(StrategyBase):
    name = "evolution"

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal:
        seed = self.seed(iteration)
        evaluate, report = surrogate_problem(
            archive, self.problem, self.surrogate, self.run_seed, iteration, self.prior
        )
        genomes = np.array([r.genome for r in archive])
        X, F = run_single_objective_ga(
            self.space,
            evaluate,
            len(self.problem.constraints),
            genomes,
            self.nsga3.pop_size,
            self.nsga3.generations,
            seed,
        )
        subnets = [decode(x, self.space) for x in X]
        fresh = self.fresh(subnets, {r.subnet for r in archive})
        order = sorted(fresh, key=lambda i: F[i, 0])[: self.candidates]
        info = surrogate_info(self.name, report)
        return Proposal([subnets[i] for i in order], info)
