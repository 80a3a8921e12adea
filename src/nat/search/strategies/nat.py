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
from nat.search.front import EXACT_HV_MAX_OBJECTIVES
from nat.search.objective_set import accuracy_label
from nat.search.problem import Evaluate, run_nsga3
from nat.search.selection import select_by_hypervolume, select_by_task_hypervolume, select_diverse
from nat.search.strategies.base import Proposal, StrategyBase, register_strategy
from nat.search.strategies.surrogate import surrogate_info, surrogate_problem_reports
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
    report: SwitchReport  # the (first) accuracy surrogate's
    reports: dict[str, SwitchReport]  # every accuracy objective's (one per task of a many-task run)


@register_strategy
class NATStrategy(StrategyBase):
    name = "nat"

    def ask(self, archive: Sequence[Record], iteration: int) -> Proposal:
        result = self.surrogate_search(archive, iteration)
        pool = result.fresh
        picks = self.select(result.F[pool], archive, result.evaluate, self.seed(iteration)) if pool else []
        order = [pool[i] for i in picks]
        info = surrogate_info(self.name, result.reports if len(result.reports) > 1 else result.report)
        return Proposal([result.subnets[i] for i in order], info, predicted=result.F[order])

    def surrogate_search(self, archive: Sequence[Record], iteration: int) -> SurrogateSearch:
        """Fit the surrogates on the archive and run NSGA-III on them, seeded with the archive."""
        evaluate, reports = surrogate_problem_reports(
            archive, self.problem, self.surrogate, self.run_seed, iteration, self.prior
        )
        X, F = run_nsga3(
            self.space,
            evaluate,
            len(self.problem.names),
            len(self.problem.constraints),
            np.array([r.genome for r in archive]),
            self.nsga3.pop_size,
            self.nsga3.generations,
            self.seed(iteration),
            self.nsga3.crossover_prob,
            self.nsga3.mutation_eta,
            self.nsga3.n_partitions,
        )
        subnets = [decode(x, self.space) for x in X]
        fresh = self.fresh(subnets, {r.subnet for r in archive})
        return SurrogateSearch(subnets, F, fresh, evaluate, reports[self.problem.accuracies[0]], reports)

    def select(self, F: np.ndarray, archive: Sequence[Record], evaluate: Evaluate, seed: int) -> list[int]:
        """Rows of ``F`` (predicted objectives of the new feasible subnets) to evaluate for real."""
        k, rule = self.candidates, self.candidate_selection
        if rule == "reference_directions" or (rule == "hypervolume" and F.shape[1] > EXACT_HV_MAX_OBJECTIVES):
            # beyond EXACT_HV_MAX_OBJECTIVES (a many-task run) exact hypervolume is too slow to run once
            # per candidate and pick, and an estimate too coarse to rank gains: the paper's rule
            return select_diverse(F, k, seed)
        feasible = self.problem.feasible(archive)
        F_archive = (
            evaluate(np.array([r.genome for r in feasible]))[0] if feasible else np.zeros((0, F.shape[1]))
        )
        divisor = self.problem.hv_divisor(np.vstack([F_archive, F]))
        if rule == "task_hypervolume":
            accuracy_columns = [self.problem.names.index(n) for n in self.problem.accuracies]
            return select_by_task_hypervolume(F / divisor, F_archive / divisor, accuracy_columns, k, seed)
        return select_by_hypervolume(F / divisor, F_archive / divisor, k, seed)

    def tell(self, proposal: Proposal, measured: Sequence[Record]) -> dict[str, Any]:
        """Out-of-sample ranking quality of the accuracy surrogate(s) on this iteration's candidates
        (a many-task run: the mean over tasks, and each task's in ``candidate_taus``)."""
        if proposal.predicted is None or len(measured) < 3:
            return {}
        taus = {}
        for name in self.problem.accuracies:
            column = self.problem.names.index(name)
            predicted = {
                s: 1.0 - float(row[column])
                for s, row in zip(proposal.subnets, proposal.predicted, strict=True)
            }
            pairs = [(predicted[r.subnet], _accuracy(r, name)) for r in measured if r.subnet in predicted]
            if len(pairs) < 3:
                return {}
            p, m = np.array(pairs).T
            taus[accuracy_label(name)] = kendall_tau(m, p)
        if len(taus) == 1:
            return {"candidate_tau": next(iter(taus.values()))}
        return {"candidate_tau": float(np.mean(list(taus.values()))), "candidate_taus": taus}


def _accuracy(record: Record, name: str) -> float:
    """A record's value of accuracy objective ``name`` (``top1`` is also the record's own field)."""
    return record.top1 if name == "top1" else record.values[name]
