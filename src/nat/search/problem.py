"""The search on surrogates: a pymoo problem over NAT genomes, NSGA-III and the single-objective GA.

pymoo does the evolutionary work (NSGA-III with reference directions for any number of objectives,
two-point crossover and polynomial mutation on integers); nat supplies the problem (surrogate
accuracy, exact complexity, constraints), a repair that keeps genomes canonical, and the initial
population seeded from the archive.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.callback import Callback
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.pm import PM
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.optimize import minimize
from pymoo.util.ref_dirs import get_reference_directions
from pymoo.util.ref_dirs.energy import RieszEnergyReferenceDirectionFactory

from nat.progress import progress_bar
from nat.space.definition import SearchSpace
from nat.space.genome import canonical_batch, genome_bounds

#: (genomes (n, L)) -> objective matrix (n, k) to minimise, and constraint matrix (n, c) (<= 0 feasible)
Evaluate = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class _ProgressBar(Callback):
    """One tqdm tick per generation, so long surrogate searches show progress."""

    def __init__(self, total: int, desc: str) -> None:
        super().__init__()
        self.bar = progress_bar(total=total, desc=desc, leave=False)

    def notify(self, algorithm) -> None:  # pymoo's signature
        self.bar.update(1)


def _minimize(problem: Problem, algorithm, generations: int, seed: int, desc: str):
    progress = _ProgressBar(generations, desc)
    try:
        return minimize(
            problem, algorithm, ("n_gen", generations), seed=seed, verbose=False, callback=progress
        )
    finally:
        progress.bar.close()


class CanonicalRepair(Repair):
    """Round to integers, clip to bounds, and move skips to the end of each stage."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.lower, self.upper = genome_bounds(space)

    def _do(self, problem, X, **kwargs):  # pymoo's signature
        x = np.clip(np.rint(X), self.lower, self.upper).astype(np.int64)
        return canonical_batch(x, self.space)


class SurrogateProblem(Problem):
    def __init__(self, space: SearchSpace, n_obj: int, n_constr: int, evaluate: Evaluate) -> None:
        lower, upper = genome_bounds(space)
        super().__init__(n_var=len(lower), n_obj=n_obj, n_ieq_constr=n_constr, xl=lower, xu=upper, vtype=int)
        self._evaluate_batch = evaluate

    def _evaluate(self, x, out, *args, **kwargs):  # pymoo's signature
        F, G = self._evaluate_batch(np.asarray(x, dtype=np.int64))
        out["F"] = F
        if self.n_ieq_constr:
            out["G"] = G


def _partitions_3d(n_points: int, most: int = 12) -> int:
    """Das-Dennis partitions ``p`` for 3 objectives (``(p+1)(p+2)/2`` directions): 12 (91 directions)
    when the population holds them, else the most that fit, since NSGA-III wants at least one member
    per direction (pymoo prints a warning otherwise)."""
    p = most
    while p > 1 and (p + 1) * (p + 2) // 2 > n_points:
        p -= 1
    return p


def reference_directions(n_obj: int, n_points: int, seed: int, n_partitions: int | None = None) -> np.ndarray:
    """Das-Dennis directions for 2-3 objectives (or when partitions are given), Riesz energy beyond."""
    if n_partitions is not None or n_obj <= 3:
        if n_partitions is None:
            n_partitions = max(1, n_points - 1) if n_obj == 2 else _partitions_3d(n_points)
        return get_reference_directions("das-dennis", n_obj, n_partitions=n_partitions)
    factory = RieszEnergyReferenceDirectionFactory(n_obj, max(n_points, n_obj), seed=seed)
    return factory.do(random_state=np.random.default_rng(seed))


def initial_population(
    archive_genomes: np.ndarray, pop_size: int, space: SearchSpace, rng: np.random.Generator
) -> np.ndarray:
    """The archive's genomes (up to ``pop_size``) topped up with random canonical genomes."""
    x = np.unique(canonical_batch(archive_genomes, space), axis=0)
    if len(x) > pop_size:
        x = x[rng.choice(len(x), pop_size, replace=False)]
    lower, upper = genome_bounds(space)
    extra = rng.integers(lower, upper + 1, size=(max(0, pop_size - len(x)), len(lower)))
    return np.concatenate([x, canonical_batch(extra, space)]) if len(extra) else x


def run_nsga3(
    space: SearchSpace,
    evaluate: Evaluate,
    n_obj: int,
    n_constr: int,
    archive_genomes: np.ndarray,
    pop_size: int,
    generations: int,
    seed: int,
    crossover_prob: float = 0.9,
    mutation_eta: float = 1.0,
    n_partitions: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """NSGA-III on the surrogate problem; returns the final population's genomes and objectives."""
    rng = np.random.default_rng(seed)
    ref_dirs = reference_directions(n_obj, pop_size, seed, n_partitions)
    problem = SurrogateProblem(space, n_obj, n_constr, evaluate)
    start = initial_population(archive_genomes, pop_size, space, rng)
    algorithm = NSGA3(
        ref_dirs=ref_dirs,
        pop_size=max(pop_size, len(ref_dirs)),  # at least one member per direction
        sampling=Population.new("X", start) if len(start) else IntegerRandomSampling(),
        crossover=TwoPointCrossover(prob=crossover_prob),
        mutation=PM(eta=mutation_eta, vtype=float),
        repair=CanonicalRepair(space),
        eliminate_duplicates=True,
    )
    result = _minimize(problem, algorithm, generations, seed, "NSGA-III on surrogate")
    pop = result.pop
    return np.asarray(pop.get("X"), dtype=np.int64), np.asarray(pop.get("F"), dtype=float)


def run_single_objective_ga(
    space: SearchSpace,
    evaluate: Evaluate,
    n_constr: int,
    archive_genomes: np.ndarray,
    pop_size: int,
    generations: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """OFA-style baseline: maximise predicted accuracy (objective column 0) under the constraints."""
    rng = np.random.default_rng(seed)

    def first_column(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        F, G = evaluate(x)
        return F[:, :1], G

    problem = SurrogateProblem(space, 1, n_constr, first_column)
    start = initial_population(archive_genomes, pop_size, space, rng)
    algorithm = GA(
        pop_size=pop_size,
        sampling=Population.new("X", start),
        crossover=TwoPointCrossover(),
        mutation=PM(eta=1.0, vtype=float),
        repair=CanonicalRepair(space),
        eliminate_duplicates=True,
    )
    result = _minimize(problem, algorithm, generations, seed, "GA on surrogate")
    pop = result.pop
    return np.asarray(pop.get("X"), dtype=np.int64), np.asarray(pop.get("F"), dtype=float)
