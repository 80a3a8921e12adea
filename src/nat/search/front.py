"""Pareto fronts and hypervolume (pymoo's non-dominated sorting and HV indicator).

Exact hypervolume costs grow exponentially with the number of objectives: pymoo's exact indicator takes
milliseconds for 60 points in 6 objectives but about 40 s in 12 (measured on this project's CPU), and
a many-task run (docs/many_task.md) has one accuracy objective per task. Above
`EXACT_HV_MAX_OBJECTIVES` objectives the hypervolume is therefore a Monte Carlo estimate: the share of
a fixed set of `MC_SAMPLES` uniform points of the reference box that the front dominates, drawn from a
fixed seed, so the figure is deterministic and comparable between iterations and runs (standard error
about ``sqrt(p (1 - p) / MC_SAMPLES)`` of the box's volume, below 0.2% of it).
"""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

#: the most objectives for which hypervolume is computed exactly (above: Monte Carlo)
EXACT_HV_MAX_OBJECTIVES = 6
#: uniform points of the Monte Carlo estimate (fixed seed; memory is bounded by chunking)
MC_SAMPLES = 1 << 17
MC_SEED = 0
_MC_CHUNK = 8192


def non_dominated(F: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``F`` (minimisation), in row order."""
    if len(F) == 0:
        return []
    return sorted(int(i) for i in NonDominatedSorting().do(F, only_non_dominated_front=True))


def hypervolume(F_normalised: np.ndarray, reference: float = 1.1) -> float:
    """Hypervolume of points scaled so that 0 is ideal and 1 is the worst in each objective (exact up to
    `EXACT_HV_MAX_OBJECTIVES` objectives, a deterministic Monte Carlo estimate above)."""
    if len(F_normalised) == 0:
        return 0.0
    if F_normalised.shape[1] > EXACT_HV_MAX_OBJECTIVES:
        return monte_carlo_hypervolume(F_normalised, reference)
    return float(HV(ref_point=np.full(F_normalised.shape[1], reference))(F_normalised))


def monte_carlo_hypervolume(
    F: np.ndarray, reference: float = 1.1, samples: int = MC_SAMPLES, seed: int = MC_SEED
) -> float:
    """Estimated hypervolume of ``F`` up to ``reference`` in every objective: the volume of the box
    from the points' ideal to the reference, times the share of uniform samples of that box that some
    point of ``F`` weakly dominates. The samples depend only on ``seed``, the dimension and the box."""
    F = np.asarray(F, dtype=float)
    F = F[np.all(reference > F, axis=1)]
    if len(F) == 0:
        return 0.0
    lower = F.min(axis=0)
    extent = reference - lower
    rng = np.random.default_rng(seed)
    dominated = 0
    for start in range(0, samples, _MC_CHUNK):
        n = min(_MC_CHUNK, samples - start)
        points = lower + rng.random((n, F.shape[1])) * extent
        covered = np.zeros(n, dtype=bool)
        for row in F:  # a point is covered when some front member is <= it in every objective
            covered |= np.all(row <= points, axis=1)
        dominated += int(covered.sum())
    return float(np.prod(extent) * dominated / samples)
