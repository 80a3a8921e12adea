"""Pareto fronts and hypervolume (pymoo's non-dominated sorting and HV indicator)."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def non_dominated(F: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``F`` (minimisation), in row order."""
    if len(F) == 0:
        return []
    return sorted(int(i) for i in NonDominatedSorting().do(F, only_non_dominated_front=True))


def hypervolume(F_normalised: np.ndarray, reference: float = 1.1) -> float:
    """Hypervolume of points scaled so that 0 is ideal and 1 is the worst in each objective."""
    if len(F_normalised) == 0:
        return 0.0
    return float(HV(ref_point=np.full(F_normalised.shape[1], reference))(F_normalised))
