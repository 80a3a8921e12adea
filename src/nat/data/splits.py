"""Deterministic stratified hold-out: how search-validation (and, where needed, test) splits are made.

Written by hand rather than with scikit-learn's ``train_test_split`` because that refuses classes with
a single member and its per-class rounding is not documented; here every class keeps at least one
training image, the hold-out size is exact, and the result depends only on (labels, size, seed).
"""

from __future__ import annotations

import numpy as np

from nat.errors import DataError


def holdout_count(size: float | int, n: int) -> int:
    """Turn ``size`` (a fraction in (0, 1) or an absolute count >= 1) into a number of samples."""
    bad = DataError(f"validation size must be a fraction in (0, 1) or a count >= 1, got {size!r}")
    if isinstance(size, bool) or not isinstance(size, int | float):
        raise bad
    if isinstance(size, float):
        if 0 < size < 1:
            return max(1, round(size * n))
        if not size.is_integer():
            raise bad
    count = int(size)
    if count < 1:
        raise bad
    return count


def stratified_holdout(labels: np.ndarray, size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices ``0..N-1`` into (keep, holdout), stratified by label.

    Each class contributes in proportion to its size (largest-remainder rounding, so the total is exactly
    the requested count); every class keeps at least one sample. Both index arrays are sorted.
    """
    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    k = holdout_count(size, n)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    capacity = counts - 1  # every class keeps one sample
    if k > capacity.sum():
        raise DataError(
            f"cannot hold out {k} of {n} samples for validation while keeping at least one training sample "
            f"for each of the {len(classes)} classes; use a smaller validation size"
        )
    quota = counts * (k / n)
    take = np.minimum(np.floor(quota).astype(np.int64), capacity)
    while take.sum() < k:  # hand out the remainder by largest unmet quota, among classes with room
        room = take < capacity
        score = np.where(room, quota - take, -np.inf)
        order = np.argsort(-score, kind="stable")
        need = int(k - take.sum())
        take[order[: min(need, int(room.sum()))]] += 1
    rng = np.random.default_rng(seed)
    by_class = np.argsort(inverse, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    held: list[np.ndarray] = []
    for c in range(len(classes)):
        if take[c]:
            members = by_class[bounds[c] : bounds[c + 1]]
            held.append(rng.choice(members, size=int(take[c]), replace=False))
    holdout = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(n, dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask), holdout
