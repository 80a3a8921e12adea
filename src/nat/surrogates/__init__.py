"""Accuracy surrogates and NAT's adaptive switching between them.

The search loop's entry points::

    from nat.surrogates import adaptive_switching, make_surrogate

    model, report = adaptive_switching(genomes, top1, space)  # CV picks rbf / gp / cart / mlp / their mean
    predicted = model.predict(candidate_genomes)              # (n,) in the units of top1

    rbf = make_surrogate("rbf", space, seed=0).fit(genomes, top1)

Every model implements `Surrogate` (``fit(genomes, y) -> self``, ``predict(genomes) -> ndarray``) and
declares the feature encoding it uses (``"genome"``, ``"onehot"`` or ``"ofa"``).
"""

from nat.surrogates.adaptive import (
    DEFAULT_MODELS,
    AdaptiveSurrogate,
    ModelScore,
    SwitchReport,
    adaptive_switching,
    kendall_tau,
    rmse,
    spearman_rho,
)
from nat.surrogates.base import (
    Surrogate,
    available_surrogates,
    check_targets,
    make_surrogate,
    register_surrogate,
)
from nat.surrogates.cart import CARTEnsemble
from nat.surrogates.encoding import ENCODINGS, check_genomes, encode_genomes, encoding_width
from nat.surrogates.ensemble import MeanEnsemble
from nat.surrogates.gp import GaussianProcess
from nat.surrogates.mlp import MLP
from nat.surrogates.ofa_mlp import OFAMLP
from nat.surrogates.prior import PriorResidual
from nat.surrogates.rbf import RBFEnsemble

__all__ = [
    "DEFAULT_MODELS",
    "ENCODINGS",
    "MLP",
    "OFAMLP",
    "PriorResidual",
    "AdaptiveSurrogate",
    "CARTEnsemble",
    "GaussianProcess",
    "MeanEnsemble",
    "ModelScore",
    "RBFEnsemble",
    "Surrogate",
    "SwitchReport",
    "adaptive_switching",
    "available_surrogates",
    "check_genomes",
    "check_targets",
    "encode_genomes",
    "encoding_width",
    "kendall_tau",
    "make_surrogate",
    "register_surrogate",
    "rmse",
    "spearman_rho",
]
