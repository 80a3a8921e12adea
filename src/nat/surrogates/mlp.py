"""Multi-layer-perceptron surrogate (scikit-learn) on the one-hot encoding.

A small, weight-decayed MLP trained to convergence with L-BFGS: full-batch and deterministic (no
mini-batch shuffling), which suits archives of tens to hundreds of points better than SGD/Adam.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor

from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, register_surrogate


@register_surrogate("mlp")
class MLP(Surrogate):
    """``hidden`` ReLU layers, L2 penalty ``alpha``, L-BFGS, on the one-hot encoding."""

    encoding = "onehot"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        hidden: tuple[int, ...] = (64, 64),
        alpha: float = 1.0,
        max_iter: int = 500,
    ) -> None:
        super().__init__(space, seed)
        self.hidden = tuple(int(h) for h in hidden)
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self._model: MLPRegressor | None = None

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        model = MLPRegressor(
            hidden_layer_sizes=self.hidden,
            alpha=self.alpha,
            solver="lbfgs",
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features, z)
        self._model = model

    def _predict(self, features: np.ndarray) -> np.ndarray:
        assert self._model is not None
        return self._model.predict(features)
