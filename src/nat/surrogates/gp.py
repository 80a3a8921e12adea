"""Gaussian-process surrogate (scikit-learn), the Kriging model in NAT's comparison.

A GP is the natural choice for few points: its kernel hyper-parameters are fitted by marginal likelihood,
so it needs no hand tuning from 50 to a few hundred samples, and a white-noise term absorbs the noise of
accuracies measured with a shared-weight supernet. It works on the scaled genome with one length scale
per variable (ARD), which lets it learn that, say, resolution matters more than one block's kernel.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, register_surrogate


@register_surrogate("gp")
class GaussianProcess(Surrogate):
    """``Constant * Matern(nu=2.5, ARD) + White`` GP on the scaled genome (mean prediction)."""

    encoding = "genome"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        nu: float = 2.5,
        ard: bool = True,
        n_restarts: int = 0,
    ) -> None:
        super().__init__(space, seed)
        self.nu = float(nu)
        self.ard = bool(ard)
        self.n_restarts = int(n_restarts)
        self._model: GaussianProcessRegressor | None = None

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        d = features.shape[1]
        scale = np.ones(d) if self.ard else 1.0
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
            length_scale=scale, length_scale_bounds=(1e-2, 1e3), nu=self.nu
        ) + WhiteKernel(0.1, (1e-6, 1e1))
        model = GaussianProcessRegressor(
            kernel=kernel, normalize_y=False, n_restarts_optimizer=self.n_restarts, random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features.astype(np.float64), z)
        self._model = model

    def _predict(self, features: np.ndarray) -> np.ndarray:
        assert self._model is not None
        return self._model.predict(features.astype(np.float64))
