"""The one small interface every accuracy surrogate implements, and the registry that names them.

NAT never trusts a single accuracy predictor: each iteration it fits several and keeps the one that ranks
best on the current archive (see :mod:`nat.surrogates.adaptive`). That only works if all of them look the
same from outside, so a surrogate is just:

* built with the `SearchSpace` (it encodes genomes itself, in the encoding it declares) and a seed;
* ``fit(genomes, y)`` on canonical-or-not integer genomes and measured accuracies (or errors);
* ``predict(genomes)`` for a batch, in the units of ``y``.

Targets are standardised internally (zero mean, unit variance) and predictions mapped back, so models see
well-scaled numbers whether the caller passes top-1 in percent, in [0, 1] or as an error.

Adding a model is one decorated class::

    @register_surrogate("my_model")
    class MyModel(Surrogate):
        encoding = "onehot"
        def _fit(self, features, z): ...
        def _predict(self, features): ...
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from nat.errors import ConfigError
from nat.registry import Registry
from nat.space import SearchSpace, get_space
from nat.surrogates.encoding import ENCODINGS, check_genomes, encode_genomes

#: fewest training points any surrogate accepts (a linear tail in 1-2 points is meaningless)
MIN_TRAIN_POINTS = 3


def check_targets(y: np.ndarray | list, n: int) -> np.ndarray:
    """Validate a target vector for ``n`` genomes: 1-d (or ``(n, 1)``), finite, float64."""
    t = np.asarray(y)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ConfigError(f"targets must be a 1-d array of accuracies, got shape {t.shape}")
    if t.shape[0] != n:
        raise ConfigError(f"got {n} genomes but {t.shape[0]} targets; they must pair up one to one")
    if not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise ConfigError(f"targets must be real numbers, got dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.all(np.isfinite(t)):
        raise ConfigError("targets must be finite (NaN or inf found); drop failed evaluations first")
    return t


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run BLAS/OpenMP and torch on one thread inside the block, restoring the settings after.

    Surrogate problems are small (hundreds of rows), where threads buy little; on a busy machine (the
    supernet evaluating in parallel, a 2-core CI box) oversubscribed BLAS threads made fits 10-50x
    slower in our measurements. One thread keeps fit and predict times predictable.
    """
    torch = sys.modules.get("torch")
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=1):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None and previous is not None:
                torch.set_num_threads(previous)


class Surrogate(ABC):
    """An accuracy predictor over genomes of one search space.

    Subclasses set :attr:`encoding` and implement :meth:`_fit` / :meth:`_predict` on features and
    standardised targets; this class does validation, canonicalisation, encoding and scaling once.
    """

    #: registry name, set by `register_surrogate`
    name: ClassVar[str] = "surrogate"
    #: which feature encoding the model consumes (one of `nat.surrogates.encoding.ENCODINGS`)
    encoding: ClassVar[str] = "genome"

    def __init__(self, space: SearchSpace | str, seed: int = 0) -> None:
        self.space = get_space(space)
        self.seed = int(seed)
        self._y_mean = 0.0
        self._y_scale = 1.0
        self._fitted = False

    # ----------------------------------------------------------------- public API
    def fit(self, genomes: np.ndarray | list, y: np.ndarray | list) -> Surrogate:
        """Fit on genomes (``(n, L)`` integers) and their accuracies; returns ``self``."""
        x = check_genomes(genomes, self.space)
        t = check_targets(y, len(x))
        if len(x) < MIN_TRAIN_POINTS:
            raise ConfigError(
                f"surrogate '{self.name}' needs at least {MIN_TRAIN_POINTS} training points, got {len(x)}"
            )
        self._y_mean = float(t.mean())
        std = float(t.std())
        self._y_scale = std if std > 1e-12 else 1.0
        z = (t - self._y_mean) / self._y_scale
        with single_threaded():
            self._fit(encode_genomes(x, self.encoding, self.space, validated=True), z)
        self._fitted = True
        return self

    def predict(self, genomes: np.ndarray | list) -> np.ndarray:
        """Predicted accuracy of each genome (float64, shape ``(n,)``), in the units of the fit targets."""
        if not self._fitted:
            raise RuntimeError(f"surrogate '{self.name}' must be fitted before predict()")
        x = check_genomes(genomes, self.space)
        with single_threaded():
            z = np.asarray(
                self._predict(encode_genomes(x, self.encoding, self.space, validated=True)), dtype=np.float64
            ).reshape(-1)
        return z * self._y_scale + self._y_mean

    @property
    def fitted(self) -> bool:
        return self._fitted

    def __repr__(self) -> str:
        state = "fitted" if self._fitted else "unfitted"
        return (
            f"{type(self).__name__}(name={self.name!r}, encoding={self.encoding!r}, "
            f"seed={self.seed}, {state})"
        )

    # ----------------------------------------------------------------- model hooks
    @abstractmethod
    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        """Fit on encoded features and standardised targets."""

    @abstractmethod
    def _predict(self, features: np.ndarray) -> np.ndarray:
        """Standardised predictions for encoded features."""


# --------------------------------------------------------------------- registry
#: every surrogate model, by the name configs use (``surrogate.models``)
SURROGATES: Registry[type[Surrogate]] = Registry("surrogate")
S = TypeVar("S", bound=type[Surrogate])


def register_surrogate(name: str) -> Callable[[S], S]:
    """Class decorator: make a `Surrogate` subclass available to `make_surrogate` under ``name``."""

    def decorate(cls: S) -> S:
        if cls.encoding not in ENCODINGS:
            raise ValueError(
                f"{cls.__name__}.encoding must be one of {list(ENCODINGS)}, got {cls.encoding!r}"
            )
        SURROGATES.add(name, cls)
        cls.name = name
        return cls

    return decorate


def available_surrogates() -> list[str]:
    """Names accepted by `make_surrogate`, sorted."""
    return SURROGATES.names()


def make_surrogate(name: str, space: SearchSpace | str, seed: int = 0, **kwargs: Any) -> Surrogate:
    """A fresh, unfitted surrogate by registry name; ``kwargs`` go to the model's constructor."""
    cls = SURROGATES.get(name)
    try:
        return cls(space, seed=seed, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for surrogate {name!r}: {exc}") from None
