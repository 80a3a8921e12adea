"""NAT's strategy (the paper's section 3.2-3.3): surrogates, many-objective NSGA-III, candidate selection.

Each iteration: fit the accuracy surrogate (adaptive switching) on the archive, run NSGA-III on the
surrogate problem starting from the archive's genomes, and pick ``k`` new, feasible subnets of its
final population, by predicted hypervolume gain (nat's default) or spread along the predicted front
by reference directions (the paper's rule); see `nat.search.selection`. ``tell`` reports how well the
surrogate ranked the candidates it chose, measured out of sample (Kendall tau of predicted against
measured top-1), which cross-validation on the archive cannot show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nat.search.archive import Record
from nat.search.problem import Evaluate, run_nsga3
from nat.search.selection import select_by_hypervolume, select_diverse
from nat.search.strategies.base import Proposal, StrategyBase
from nat.search.strategies.surrogate import surrogate_info, surrogate_problem
from nat.space.genome import decode
from nat.space.subnet import Subnet
from nat.surrogates.adaptive import SwitchReport, kendall_tau


@dataclass
class SurrogateSearch:
    """NSGA-III's result on the surrogate problem: its final population and what made it."""

    subnets: list[Subnet]
    F: np.ndarray  # predicted objectives (minimisation form), one row per subnet
    fresh: list[int]  # indices of the new, distinct, feasible subnets (the pool candidates come from)
    evaluate: Evaluate
    report: SwitchReport


class NATStrategy(StrategyBase):
    name = "nat"

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal:
        result = self.surrogate_search(archive, iteration)
        pool = result.fresh
        picks = self.select(result.F[pool], archive, result.evaluate, self.seed(iteration)) if pool else []
        order = [pool[i] for i in picks]
        report = result.report
        info = surrogate_info(self.name, report)
        return Proposal([result.subnets[i] for i in order], info, predicted=result.F[order])

    def surrogate_search(self, archive: Sequence[Record], iteration: int) -> SurrogateSearch:
        """Fit the surrogates on the archive and run NSGA-III on them, seeded with the archive."""
        cfg = self.config
        evaluate, report = surrogate_problem(archive, self.problem, cfg.surrogate, cfg.seed, iteration)
        X, F = run_nsga3(
            self.space,
            evaluate,
            len(self.problem.names),
            len(self.problem.constraints),
            np.array([r.genome for r in archive]),
            cfg.nsga3.pop_size,
            cfg.nsga3.generations,
            self.seed(iteration),
            cfg.nsga3.crossover_prob,
            cfg.nsga3.mutation_eta,
            cfg.nsga3.n_partitions,
        )
        subnets = [decode(x, self.space) for x in X]
        return SurrogateSearch(subnets, F, self.fresh(subnets, {r.subnet for r in archive}), evaluate, report)

    def select(self, F: np.ndarray, archive: Sequence[Record], evaluate: Evaluate, seed: int) -> list[int]:
        """Rows of ``F`` (predicted objectives of the new feasible subnets) to evaluate for real."""
        k = self.config.candidates_per_iteration
        if self.config.candidate_selection != "hypervolume":
            return select_diverse(F, k, seed)
        feasible = self.problem.feasible(archive)
        F_archive = (
            evaluate(np.array([r.genome for r in feasible]))[0] if feasible else np.zeros((0, F.shape[1]))
        )
        divisor = self.problem.hv_divisor(np.vstack([F_archive, F]))
        return select_by_hypervolume(F / divisor, F_archive / divisor, k, seed)

    def tell(self, proposal: Proposal, measured: Sequence[Record]) -> dict[str, Any]:
        """Out-of-sample ranking quality of the accuracy surrogate on this iteration's candidates."""
        if proposal.predicted is None or len(measured) < 3:
            return {}
        column = self.problem.names.index("top1")
        predicted = {
            s: 1.0 - float(row[column]) for s, row in zip(proposal.subnets, proposal.predicted, strict=True)
        }
        pairs = [(predicted[r.subnet], r.top1) for r in measured if r.subnet in predicted]
        if len(pairs) < 3:
            return {}
        p, m = np.array(pairs).T
        return {"candidate_tau": kendall_tau(m, p)}
