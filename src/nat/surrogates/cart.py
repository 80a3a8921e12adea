"""Decision-tree (CART) ensemble surrogate (scikit-learn), NAT's tree-based predictor.

Trees split on single variables, so they capture "resolution index >= 3" or "stage 4 has 4 blocks"
directly and are invariant to how the integer codes are scaled; averaging many randomised trees
(random forest: bootstrap rows, a random share of variables per split) turns their step functions into
a usable ranking. Trees cannot extrapolate beyond the archive's best accuracy, which is why NAT only
uses them when cross-validation says they rank best.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, register_surrogate


@register_surrogate("cart")
class CARTEnsemble(Surrogate):
    """Random forest of CART regression trees on the raw (scaled) genome."""

    encoding = "genome"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        n_trees: int = 150,
        max_features: float = 0.5,
        min_samples_leaf: int = 1,
    ) -> None:
        super().__init__(space, seed)
        self.n_trees = int(n_trees)
        self.max_features = float(max_features)
        self.min_samples_leaf = int(min_samples_leaf)
        self._model: RandomForestRegressor | None = None

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        self._model = RandomForestRegressor(
            n_estimators=self.n_trees,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.seed,
            n_jobs=1,
        ).fit(features, z)

    def _predict(self, features: np.ndarray) -> np.ndarray:
        assert self._model is not None
        return self._model.predict(features)
