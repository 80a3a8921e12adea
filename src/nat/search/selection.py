"""Which of the surrogate search's solutions to evaluate for real: candidate selection.

After NSGA-III has run on the surrogate, its final population holds far more subnets than the budget of
real evaluations allows; NAT evaluates ``k`` of them per iteration. Two rules are offered, and a third
for many-task runs (`select_by_task_hypervolume`: the tasks take turns, each on its own objectives):

``reference_directions`` (the paper)
    Spread the ``k`` picks along the surrogate's front: normalise the front by its own ideal and nadir
    points and, for each of ``k`` reference directions, take the closest point (NSGA-III's niching).
    Every part of the trade-off gets a candidate, the extremes included.

``hypervolume`` (nat's default)
    Greedily pick the candidate whose *predicted* objectives add the most hypervolume to the archive's
    front, ``k`` times, each pick joining the front before the next. The archive's front here is made of
    the surrogate's predictions for the archive's subnets, not their measurements: a regression model
    predicts closer to the mean than the noisy measured maxima it was fitted on, so against the measured
    front almost no candidate would seem to improve anything. When no remaining candidate adds predicted
    hypervolume, the rest of the picks fall back to the reference-direction rule.

Why the second is the default: the search is judged, and used, by how good its front is for a given
number of real evaluations. Spreading evenly spends as many evaluations on the flat, high-cost end of
the front (where a better subnet adds a thin sliver of hypervolume) as on the steep, low-cost end
(where it adds a wide one). On a Fashion-MNIST supernet (bench/search_efficiency.py, three seeds)
hypervolume-driven selection ended 64 evaluations with a higher hypervolume than the paper's rule on
every seed, by a small margin; both needed about as many evaluations to pass random search's
200-evaluation front (figures in the README). Set ``candidate_selection: reference_directions`` for
the paper's behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nat.search.front import hypervolume, non_dominated
from nat.search.problem import reference_directions


def select_diverse(F: np.ndarray, k: int, seed: int) -> list[int]:
    """Pick ``k`` rows of ``F`` spread along its non-dominated front (reference-direction niching).

    The front is normalised by its ideal and nadir points; for each of ``k`` reference directions the
    closest unpicked point (perpendicular distance) is chosen, as NSGA-III's niching does. When the
    front has fewer than ``k`` points, later fronts fill up.
    """
    if len(F) <= k:
        return list(range(len(F)))
    fronts = NonDominatedSorting().do(F)
    pool: list[int] = []
    for front in fronts:
        pool.extend(int(i) for i in front)
        if len(pool) >= k:
            break
    pool_arr = np.array(pool)
    G = F[pool_arr]
    ideal, nadir = G.min(0), G.max(0)
    N = (G - ideal) / np.where(nadir - ideal > 1e-12, nadir - ideal, 1.0)
    dirs = (
        reference_directions(F.shape[1], k, seed, n_partitions=12 if F.shape[1] == 3 else None)
        if F.shape[1] > 2
        else np.stack([np.linspace(0, 1, k), 1 - np.linspace(0, 1, k)], axis=1)
    )
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True).clip(1e-12)
    proj = N @ dirs.T  # (n, d)
    dist = np.sqrt(np.maximum((N**2).sum(1, keepdims=True) - proj**2, 0.0))
    chosen: list[int] = []
    available = np.ones(len(G), dtype=bool)
    for d in range(len(dirs)):
        if len(chosen) == k:
            break
        cand = np.where(available, dist[:, d], np.inf)
        i = int(np.argmin(cand))
        if np.isfinite(cand[i]):
            chosen.append(i)
            available[i] = False
    for i in np.flatnonzero(available):  # fewer directions than k, or duplicates
        if len(chosen) == k:
            break
        chosen.append(int(i))
    return [int(pool_arr[i]) for i in chosen]


def select_by_hypervolume(
    F: np.ndarray, F_archive: np.ndarray, k: int, seed: int, reference: float = 1.1
) -> list[int]:
    """Greedily pick ``k`` rows of ``F`` that add the most hypervolume to the front of ``F_archive``.

    Both matrices are minimisation objectives already scaled the way the run's hypervolume scales them
    (0 ideal, 1 the largest subnet's cost; error as is), so that ``reference`` (1.1 per objective)
    bounds the region that counts. Ties and candidates that add nothing are resolved by the
    reference-direction rule on what is left.
    """
    if len(F) <= k:
        return list(range(len(F)))
    front = F_archive[non_dominated(F_archive)] if len(F_archive) else np.zeros((0, F.shape[1]))
    chosen: list[int] = []
    remaining = set(range(len(F)))
    while len(chosen) < k:
        order = sorted(remaining)
        best = _most_gain(front, F[order], reference)
        if best is None:
            break
        pick = order[best]
        chosen.append(pick)
        remaining.discard(pick)
        front = np.vstack([front, F[pick]])
        front = front[non_dominated(front)]
    if len(chosen) < k:
        taken = set(chosen)
        rest = np.array([i for i in range(len(F)) if i not in taken])
        chosen += [int(rest[i]) for i in select_diverse(F[rest], k - len(chosen), seed)]
    return chosen


def select_by_task_hypervolume(
    F: np.ndarray,
    F_archive: np.ndarray,
    accuracy_columns: Sequence[int],
    k: int,
    seed: int,
    reference: float = 1.1,
) -> list[int]:
    """A many-task run's picks: ``k`` rows of ``F`` chosen for each task in turn.

    ``accuracy_columns`` holds each task's accuracy (error) column; every other column (MAdds, params,
    latency) belongs to every task's own problem. Turn by turn, the task whose turn it is gets the
    remaining candidate that adds the most hypervolume to *its* projected front (the archive's and the
    picks so far, on its error and the shared columns); a pick joins every task's front. A turn that
    finds no gain takes the candidate with the task's lowest predicted error.

    Why: hypervolume over all objectives at once values a subnet by what it adds to the joint front,
    where a subnet a little worse on every task but new in MAdds adds as much as one that is the best for
    some task, so a task's own best trade-offs (often small subnets for an easy task) can go without
    candidates; at 12 objectives it cannot even be computed exactly. One task's projection is small (its
    error plus the shared objectives: exact hypervolume), and taking turns gives every task candidates
    aimed at its own trade-off. With one task this is `select_by_hypervolume`.
    """
    shared = [c for c in range(F.shape[1]) if c not in set(accuracy_columns)]
    columns = [[a, *shared] for a in accuracy_columns]
    if len(F) <= k:
        return list(range(len(F)))
    if len(columns) == 1:  # every column is the one task's
        return select_by_hypervolume(F, F_archive, k, seed, reference)
    known = F_archive if len(F_archive) else np.zeros((0, F.shape[1]))
    chosen: list[int] = []
    for turn in range(k):
        cols = columns[turn % len(columns)]
        taken = set(chosen)
        rest = np.array([i for i in range(len(F)) if i not in taken])
        G = F[np.ix_(rest, cols)]
        projected = known[:, cols]
        front = projected[non_dominated(projected)] if len(projected) else np.zeros((0, len(cols)))
        best = _most_gain(front, G, reference)
        if best is None:
            best = int(np.lexsort(G.T[::-1])[0])  # lowest error first, then the shared columns
        pick = int(rest[best])
        chosen.append(pick)
        known = np.vstack([known, F[pick]])
    return chosen


def _most_gain(front: np.ndarray, candidates: np.ndarray, reference: float) -> int | None:
    """The row of ``candidates`` that adds the most hypervolume to ``front`` (non-dominated; the first
    such row on ties), or None when none adds any. Only rows inside the reference box can add anything."""
    inside = np.flatnonzero(np.all(reference > candidates, axis=1))
    if not len(inside):
        return None
    base = hypervolume(front, reference) if len(front) else 0.0
    gains = np.array([hypervolume(np.vstack([front, candidates[i]]), reference) - base for i in inside])
    best = int(np.argmax(gains))
    return int(inside[best]) if gains[best] > 1e-12 else None
