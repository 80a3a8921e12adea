"""The mean of several surrogates: a candidate for adaptive switching that is often better than any one.

NAT's adaptive switching picks *one* model per iteration. On real supernet measurements the candidate
models (RBF ensemble, GP, CART ensemble, MLP) make partly independent errors: each captures the
dominant effects (resolution, depth) but they disagree on the noise. Averaging their predictions cancels
part of that disagreement. On 350 measured Fashion-MNIST subnets (bench/surrogates.py) the plain mean
of the four ranked held-out subnets better than the best single model at every training size (Kendall
tau +0.02 to +0.045), while which single model was best changed with the split.

So ``ensemble`` is offered as one more candidate in adaptive switching (``surrogate.models``), and
cross-validation decides, as for every other model, whether it is used. Its cross-validation costs no
extra fits: its held-out predictions are the mean of the members' held-out predictions
(`nat.surrogates.adaptive`).

The mean is taken in the units of the targets (every member maps its predictions back), unweighted:
weights fitted on a few dozen points would overfit the very noise the average is meant to cancel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nat.errors import ConfigError
from nat.space import SearchSpace
from nat.surrogates.base import Surrogate, make_surrogate, register_surrogate

DEFAULT_MEMBERS: tuple[str, ...] = ("rbf", "gp", "cart", "mlp")


@register_surrogate("ensemble")
class MeanEnsemble(Surrogate):
    """Unweighted mean of the predictions of ``members`` (registry names), each fitted on all the data.

    ``member_kwargs`` maps a member name to its constructor options. The declared ``encoding`` is
    nominal: each member encodes genomes in its own encoding.
    """

    encoding = "genome"

    def __init__(
        self,
        space: SearchSpace | str,
        seed: int = 0,
        *,
        members: Sequence[str] = DEFAULT_MEMBERS,
        member_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(space, seed)
        members = tuple(members)
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least two member models, got {list(members)}")
        if len(set(members)) != len(members):
            raise ConfigError(f"ensemble members must be distinct, got {list(members)}")
        bad = [m for m in members if m in ("ensemble", "adaptive")]
        if bad:
            raise ConfigError(f"ensemble members must be plain models, not {bad}")
        self.members = members
        self.member_kwargs = {k: dict(v) for k, v in (member_kwargs or {}).items()}
        unknown = [m for m in self.member_kwargs if m not in members]
        if unknown:
            raise ConfigError(f"member_kwargs given for {unknown}, which are not members {list(members)}")
        self.fitted_members: list[Surrogate] = []

    def fit(self, genomes: np.ndarray | list, y: np.ndarray | list) -> MeanEnsemble:
        self.fitted_members = [
            make_surrogate(name, self.space, seed=self.seed, **self.member_kwargs.get(name, {})).fit(
                genomes, y
            )
            for name in self.members
        ]
        self._fitted = True
        return self

    def predict(self, genomes: np.ndarray | list) -> np.ndarray:
        if not self._fitted:
            raise RuntimeError("surrogate 'ensemble' must be fitted before predict()")
        return np.mean([m.predict(genomes) for m in self.fitted_members], axis=0)

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError

    def _predict(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - predict() is overridden
        raise NotImplementedError
