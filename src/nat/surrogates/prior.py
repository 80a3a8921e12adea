"""A surrogate with prior knowledge: the new task's accuracy as a linear map of a prior's prediction
plus a residual model.

A warm-started search (`nat.search.warm_start`) knows how every subnet ranked on earlier tasks. Related
tasks rank subnets alike, so early in a new search, with a handful of measurements, the earlier tasks'
predictions may rank the new subnets better than any model fitted on the handful alone. This model fits
``y ~ a * prior(x) + b`` by least squares and a residual model (``base``, RBF by default) on what the
line leaves; adaptive switching offers it beside the plain models, so a useless prior is simply not
chosen and cannot make the surrogate worse than a cold run's.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nat.errors import ConfigError
from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, check_targets, make_surrogate, register_surrogate
from nat.surrogates.encoding import check_genomes

#: a prior: genomes ``(n, L)`` -> a score per genome (higher: more accurate), any scale
Prior = Callable[[np.ndarray], np.ndarray]


@register_surrogate("prior")
class PriorResidual(Surrogate):
    """``a * prior(x) + b + residual(x)`` (see the module docstring); built by warm-started runs only."""

    encoding = "genome"

    def __init__(
        self, space: SearchSpace | str, seed: int = 0, *, prior: Prior | None = None, base: str = "rbf"
    ):
        super().__init__(space, seed)
        if prior is None:
            raise ConfigError(
                "surrogate 'prior' needs the accuracies of earlier runs: it is offered by warm-started "
                "runs (warm_start.surrogate: true), not listed in surrogate.models"
            )
        self.prior, self.base_name = prior, base
        self.coef = np.zeros(2)
        self.residual: Surrogate | None = None

    def fit(self, genomes: np.ndarray | list, y: np.ndarray | list) -> PriorResidual:
        x = check_genomes(genomes, self.space)
        t = check_targets(y, len(x))
        p = np.asarray(self.prior(x), dtype=np.float64)
        design = np.stack([p, np.ones_like(p)], axis=1)
        self.coef = np.linalg.lstsq(design, t, rcond=None)[0]
        self.residual = make_surrogate(self.base_name, self.space, seed=self.seed).fit(
            x, t - design @ self.coef
        )
        self._fitted = True
        return self

    def predict(self, genomes: np.ndarray | list) -> np.ndarray:
        if self.residual is None:
            raise RuntimeError("surrogate 'prior' must be fitted before predict()")
        x = check_genomes(genomes, self.space)
        p = np.asarray(self.prior(x), dtype=np.float64)
        return self.coef[0] * p + self.coef[1] + self.residual.predict(x)

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _predict(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - predict() is overridden
        raise NotImplementedError
