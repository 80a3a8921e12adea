"""NAT's RBF ensemble: many cubic radial-basis-function interpolants, each with a linear tail and each on a
random subset of the variables and of the samples; the prediction is their median.

One member, on centres ``c_i`` (the member's rows, projected on its variables ``S``) solves the
augmented system of a cubic RBF with a linear polynomial tail::

    [ Phi + lambda I   P ] [w]   [y]        Phi_ij = ||c_i - c_j||^3
    [ P^T              0 ] [c] = [0]        P      = [1, c_i]

and predicts ``f(x) = sum_i w_i ||x_S - c_i||^3 + c_0 + c_1 . x_S``. The cubic kernel is conditionally
positive definite of order 2, so with distinct centres and a full-rank tail the system is uniquely
solvable; projected rows that coincide are merged (targets averaged) and a small ridge ``lambda``
(relative to the mean kernel value) smooths noisy accuracies instead of interpolating them exactly.

Why an ensemble and the median: one interpolant over all 22 variables of a few hundred points is spiky;
members on random sub-spaces see different coarse views of the data and their median is robust to the
few members that extrapolate wildly. Prediction is one GEMM per member (squared distances through
``|x|^2 + |c|^2 - 2 x.c``) so 10,000 genomes take a few tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, register_surrogate


@dataclass(frozen=True)
class _Member:
    features: np.ndarray  # indices of the variables this member sees
    centres: np.ndarray  # (m, k) float64
    centre_sq: np.ndarray  # (m,) squared norms of the centres
    weights: np.ndarray  # (m,) RBF weights
    tail: np.ndarray  # (k + 1,) constant then linear coefficients


def _cubic_rbf_fit(centres: np.ndarray, targets: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and linear-tail coefficients of one cubic RBF interpolant (with relative ridge)."""
    m, k = centres.shape
    sq = np.sum(centres**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * centres @ centres.T, 0.0)
    phi = d2 * np.sqrt(d2)
    lam = ridge * max(float(phi.mean()), 1e-12)
    poly = np.hstack([np.ones((m, 1)), centres])
    system = np.zeros((m + k + 1, m + k + 1))
    system[:m, :m] = phi + lam * np.eye(m)
    system[:m, m:] = poly
    system[m:, :m] = poly.T
    rhs = np.concatenate([targets, np.zeros(k + 1)])
    if m > k + 1 and np.linalg.matrix_rank(poly) == k + 1:
        try:
            sol = scipy.linalg.solve(system, rhs, assume_a="sym", check_finite=False)
            if np.all(np.isfinite(sol)):
                return sol[:m], sol[m:]
        except (np.linalg.LinAlgError, ValueError):
            pass
    # too few distinct centres for the tail: the minimum-norm least-squares solution is still sensible
    sol = np.linalg.lstsq(system, rhs, rcond=None)[0]
    return sol[:m], sol[m:]


@register_surrogate("rbf")
class RBFEnsemble(Surrogate):
    """Median of ``n_members`` cubic RBF interpolants with linear tails on random variable/sample subsets.

    ``feature_fraction`` bounds the share of (non-constant) variables a member sees (drawn uniformly),
    ``sample_fraction`` the share of training rows it is fitted on (without replacement), ``ridge`` the
    regularisation relative to the mean kernel value.
    """

    encoding = "genome"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        n_members: int = 40,
        feature_fraction: tuple[float, float] = (0.3, 1.0),
        sample_fraction: float = 0.8,
        ridge: float = 1.0,
    ) -> None:
        super().__init__(space, seed)
        if n_members < 1:
            raise ValueError("n_members must be >= 1")
        lo, hi = feature_fraction
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"feature_fraction must satisfy 0 < lo <= hi <= 1, got {feature_fraction}")
        if not 0.0 < sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.n_members = int(n_members)
        self.feature_fraction = (float(lo), float(hi))
        self.sample_fraction = float(sample_fraction)
        self.ridge = float(ridge)
        self._members: list[_Member] = []

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        x = features.astype(np.float64)
        n = len(x)
        varying = np.flatnonzero(np.ptp(x, axis=0) > 0)
        if varying.size == 0:  # every genome identical: a constant model is all the data supports
            varying = np.arange(x.shape[1])
        lo = max(1, math.ceil(self.feature_fraction[0] * varying.size))
        hi = max(lo, math.floor(self.feature_fraction[1] * varying.size))
        n_rows = max(min(n, 3), math.ceil(self.sample_fraction * n))
        members = []
        for _ in range(self.n_members):
            k = int(rng.integers(lo, hi + 1))
            feats = np.sort(rng.choice(varying, size=k, replace=False))
            rows = rng.choice(n, size=n_rows, replace=False)
            proj = x[np.ix_(rows, feats)]
            # merge coinciding projected points (their mean target is what an interpolant can honour)
            centres, inverse = np.unique(proj, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            targets = np.bincount(inverse, weights=z[rows]) / np.bincount(inverse)
            weights, tail = _cubic_rbf_fit(centres, targets, self.ridge)
            members.append(_Member(feats, centres, np.sum(centres**2, axis=1), weights, tail))
        self._members = members

    def _predict(self, features: np.ndarray) -> np.ndarray:
        x64 = features.astype(np.float64)
        x32 = features.astype(np.float32)
        out = np.empty((len(self._members), len(x64)))
        for i, mem in enumerate(self._members):
            out[i] = _member_predict(mem, x32, x64)
        return np.median(out, axis=0)


#: rows per block in prediction; a (block x centres) float32 buffer stays in cache, which is ~3x faster
_PREDICT_BLOCK = 1024


def _member_predict(mem: _Member, x32: np.ndarray, x64: np.ndarray) -> np.ndarray:
    """One member's predictions: the kernel sum in float32 (bandwidth-bound), the linear tail in float64."""
    xs = x32[:, mem.features]
    xs_sq = np.einsum("ij,ij->i", xs, xs)
    neg2_ct = (-2.0 * mem.centres.T).astype(np.float32)
    c_sq = mem.centre_sq.astype(np.float32)
    w = mem.weights.astype(np.float32)
    out = x64[:, mem.features] @ mem.tail[1:] + mem.tail[0]
    for start in range(0, len(xs), _PREDICT_BLOCK):
        stop = start + _PREDICT_BLOCK
        d2 = xs[start:stop] @ neg2_ct
        d2 += xs_sq[start:stop, None]
        d2 += c_sq[None, :]
        np.maximum(d2, 0.0, out=d2)
        d2 *= np.sqrt(d2)
        with np.errstate(over="ignore", invalid="ignore"):
            block = d2 @ w
        if not np.isfinite(block).all():  # float32 overflowed (large weights of a fit on few points)
            block = _block_in_float64(mem, x64[start:stop])
        out[start:stop] += block
    return out


def _block_in_float64(mem: _Member, x64: np.ndarray) -> np.ndarray:
    """The kernel sum of ``x64``'s rows in float64, where float32 cannot hold it."""
    xs = x64[:, mem.features]
    d2 = np.sum(xs**2, axis=1)[:, None] - 2.0 * xs @ mem.centres.T + mem.centre_sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    return (d2 * np.sqrt(d2)) @ mem.weights
