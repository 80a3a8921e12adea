"""Feature encodings of NAT genomes for the accuracy surrogates.

Every surrogate receives *genomes* (the integer vectors of :mod:`nat.space.genome`) and turns them into
features itself, so the search loop never has to know which model wants which representation. Genomes
are first made canonical (the active blocks of every stage moved to the front), because several genomes
describe the same network and a surrogate must give them the same prediction.

Three encodings exist:

``genome``
    NAT's integer genome scaled to ``[0, 1]`` per variable by its bounds (the scaling pySOT's RBF uses in
    NAT's code). Compact and ordinal: resolution and width indices keep their order; an op code mixes
    expansion and kernel, so distances between codes are only roughly meaningful.
``onehot``
    One-hot resolution, one-hot width, and for every block slot a one-hot over ``skip`` plus each
    (expansion, kernel) pair. No order is assumed anywhere.
``ofa``
    OFA's accuracy-predictor features (``MobileNetArchEncoder``): a one-hot resolution, then for every
    block slot a one-hot kernel, then for every slot a one-hot expansion (all zeros when the block is
    skipped). When the space has more than one
    width multiplier a one-hot width is appended (OFA's supernets have a single width; NAT's have two).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from nat.errors import ConfigError
from nat.space import SearchSpace, canonical_batch, genome_bounds, genome_length

Encoding = Literal["genome", "onehot", "ofa"]
ENCODINGS: tuple[str, ...] = ("genome", "onehot", "ofa")


def check_genomes(genomes: np.ndarray | list, space: SearchSpace) -> np.ndarray:
    """Validate a batch of genomes and return it as canonical ``int64`` of shape ``(n, L)``.

    Raises `ConfigError` with the first offending row and variable, since a bad genome usually means the
    caller mixed up search spaces or passed subnets' raw values instead of indices.
    """
    x = np.asarray(genomes)
    length = genome_length(space)
    if x.ndim == 1 and x.size == length:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != length:
        raise ConfigError(
            f"genomes must be an array of shape (n, {length}) for space '{space.name}', got shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise ConfigError("genomes must hold at least one row, got an empty array")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.issubdtype(x.dtype, np.number):
            raise ConfigError(f"genomes must hold integers, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)) or not np.all(np.equal(np.mod(x, 1), 0)):
            raise ConfigError("genomes must hold integers (non-integer or non-finite values found)")
    x = x.astype(np.int64)
    lower, upper = genome_bounds(space)
    bad = (x < lower) | (x > upper)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise ConfigError(
            f"genome row {row}, variable {col} = {int(x[row, col])} outside "
            f"[{lower[col]}, {upper[col]}] for space '{space.name}'"
        )
    return canonical_batch(x, space)


def encoding_width(encoding: str, space: SearchSpace) -> int:
    """Number of features ``encode_genomes(..., encoding, space)`` produces."""
    n_slots = genome_length(space) - 2
    if encoding == "genome":
        return genome_length(space)
    if encoding == "onehot":
        return len(space.resolutions) + len(space.width_mults) + n_slots * (len(space.op_choices) + 1)
    if encoding == "ofa":
        width = len(space.width_mults) if len(space.width_mults) > 1 else 0
        return n_slots * (len(space.kernel_sizes) + len(space.expand_ratios)) + len(space.resolutions) + width
    raise ConfigError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")


def _onehot(codes: np.ndarray, n_values: int) -> np.ndarray:
    """One-hot of an ``(n, m)`` integer array as ``(n, m * n_values)`` float32 (vectorised)."""
    n, m = codes.shape
    out = np.zeros((n, m, n_values), dtype=np.float32)
    np.put_along_axis(out, codes[:, :, None], 1.0, axis=2)
    return out.reshape(n, m * n_values)


def encode_genomes(
    genomes: np.ndarray, encoding: str, space: SearchSpace, *, validated: bool = False
) -> np.ndarray:
    """Features of a batch of genomes in one of :data:`ENCODINGS` (float32, shape ``(n, width)``).

    ``validated=True`` skips validation and canonicalisation when the caller already did both.
    """
    x = genomes if validated else check_genomes(genomes, space)
    if encoding == "genome":
        lower, upper = genome_bounds(space)
        span = np.maximum(upper - lower, 1)
        return ((x - lower) / span).astype(np.float32)
    slots = x[:, 2:]
    if encoding == "onehot":
        return np.concatenate(
            [
                _onehot(x[:, :1], len(space.resolutions)),
                _onehot(x[:, 1:2], len(space.width_mults)),
                _onehot(slots, len(space.op_choices) + 1),
            ],
            axis=1,
        )
    if encoding == "ofa":
        # op code c >= 1 is op_choices[c - 1] = (expand, kernel), ordered expand-major
        n_k = len(space.kernel_sizes)
        active = slots > 0
        code = np.maximum(slots - 1, 0)
        kernel = _onehot(code % n_k, n_k).reshape(len(x), -1, n_k) * active[:, :, None]
        expand = _onehot(code // n_k, len(space.expand_ratios)).reshape(len(x), -1, len(space.expand_ratios))
        expand = expand * active[:, :, None]
        # OFA's order: resolution, then the kernels of all blocks, then the expansions of all blocks
        parts = [
            _onehot(x[:, :1], len(space.resolutions)),
            kernel.reshape(len(x), -1),
            expand.reshape(len(x), -1),
        ]
        if len(space.width_mults) > 1:
            parts.append(_onehot(x[:, 1:2], len(space.width_mults)))
        return np.concatenate(parts, axis=1).astype(np.float32)
    raise ConfigError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
