"""NAT's archive distribution: where online adaptation spends its training.

Instead of training uniformly sampled subnets (as OFA's supernet training does), NAT adapts the
supernet on the part of the space the search has found promising: each genome variable gets a
categorical distribution from its values among the archive's elite (the best non-dominated fronts),
and every training batch draws a subnet from the product of these distributions.
"""

from __future__ import annotations

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nat.space.definition import SearchSpace
from nat.space.genome import canonical_batch, genome_bounds


def elite(genomes: np.ndarray, F: np.ndarray, fraction: float) -> np.ndarray:
    """Genomes of the best fronts, whole fronts, until at least ``fraction`` of the archive is taken."""
    if len(genomes) == 0:
        return genomes
    need = max(1, int(np.ceil(fraction * len(genomes))))
    taken: list[int] = []
    for front in NonDominatedSorting().do(F):
        taken.extend(int(i) for i in front)
        if len(taken) >= need:
            break
    return genomes[np.sort(np.array(taken))]


class GenomeDistribution:
    """Independent categorical distributions, one per genome variable."""

    def __init__(self, probabilities: list[np.ndarray], lower: np.ndarray, space: SearchSpace) -> None:
        self.probabilities, self.lower, self.space = probabilities, lower, space

    @classmethod
    def from_genomes(cls, genomes: np.ndarray, space: SearchSpace) -> GenomeDistribution:
        lower, upper = genome_bounds(space)
        probs = []
        for j in range(len(lower)):
            counts = np.bincount(genomes[:, j] - lower[j], minlength=upper[j] - lower[j] + 1).astype(float)
            probs.append(counts / counts.sum())
        return cls(probs, lower, space)

    @classmethod
    def uniform(cls, space: SearchSpace) -> GenomeDistribution:
        lower, upper = genome_bounds(space)
        return cls(
            [np.full(u - lo + 1, 1.0 / (u - lo + 1)) for lo, u in zip(lower, upper, strict=True)],
            lower,
            space,
        )

    def mixed_with_uniform(self, weight: float) -> GenomeDistribution:
        """Each variable's distribution as ``(1 - weight) * own + weight * uniform``.

        A departure from the paper, off by default: without it, a choice absent from the archive's elite
        (say a resolution) is never trained again, so early noisy rankings can lock the search out of it
        for good (docs/results/transfer.md).
        """
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"uniform mixing weight must be in [0, 1], got {weight}")
        uniform = GenomeDistribution.uniform(self.space)
        probs = [
            (1.0 - weight) * p + weight * q
            for p, q in zip(self.probabilities, uniform.probabilities, strict=True)
        ]
        return GenomeDistribution(probs, self.lower, self.space)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cols = [
            lo + rng.choice(len(p), size=n, p=p) for lo, p in zip(self.lower, self.probabilities, strict=True)
        ]
        return canonical_batch(np.stack(cols, axis=1), self.space)
