"""NAT's integer genome and its mapping to and from `Subnet`.

Layout (22 integers for the paper's space): ``x[0]`` indexes the resolution, ``x[1]`` the width
multiplier, then each of the 5 stages has ``max_depth`` (= 4) slots. A slot is ``0`` for *skip* or
``c in 1..9`` for the (expansion, kernel) pair ``space.op_choices[c - 1]``, i.e. the pairs
(3,3) (3,5) (3,7) (4,3) (4,5) (4,7) (6,3) (6,5) (6,7) in that order. The lower bounds keep the first
``min_depth`` (= 2) slots of each stage active, so every genome decodes to a valid network.

Several genomes decode to the same network (a skip in the middle of a stage only shortens it). The
*canonical* genome moves the active slots of each stage to the front; decoding then re-encoding any
genome gives its canonical form, so archives can de-duplicate on it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from nat.config_io import read_text
from nat.errors import ConfigError
from nat.space.definition import NUM_STAGES, SearchSpace, get_space
from nat.space.subnet import Subnet


def genome_length(space: SearchSpace) -> int:
    return 2 + NUM_STAGES * space.max_depth


def genome_bounds(space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive integer lower and upper bounds of every genome variable."""
    n_ops = len(space.op_choices)
    lower = np.zeros(genome_length(space), dtype=np.int64)
    upper = np.full(genome_length(space), n_ops, dtype=np.int64)
    upper[0] = len(space.resolutions) - 1
    upper[1] = len(space.width_mults) - 1
    for stage in range(NUM_STAGES):
        start = 2 + stage * space.max_depth
        lower[start : start + space.min_depth] = 1
    return lower, upper


def _width_index(space: SearchSpace, w: float) -> int:
    for i, candidate in enumerate(space.width_mults):
        if math.isclose(candidate, w):
            return i
    raise ConfigError(f"width multiplier {w} not in the search space {list(space.width_mults)}")


def encode(subnet: Subnet, space: SearchSpace) -> np.ndarray:
    """The canonical genome of ``subnet``."""
    subnet.check(space)
    genome = np.zeros(genome_length(space), dtype=np.int64)
    genome[0] = space.resolutions.index(subnet.r)
    genome[1] = _width_index(space, subnet.w)
    op_index = {pair: i + 1 for i, pair in enumerate(space.op_choices)}
    for stage, blocks in enumerate(subnet.stage_blocks()):
        start = 2 + stage * space.max_depth
        for j, (k, e) in enumerate(blocks):
            genome[start + j] = op_index[(e, k)]
    return genome


def decode(genome: np.ndarray | list[int], space: SearchSpace) -> Subnet:
    """The `Subnet` a genome describes (skips dropped); raises `ConfigError` on an invalid genome."""
    x = np.asarray(genome)
    if x.shape != (genome_length(space),):
        raise ConfigError(
            f"genome must have {genome_length(space)} integers for space '{space.name}', got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.equal(np.mod(x, 1), 0)):
            raise ConfigError(f"genome must hold integers, got {x.tolist()}")
        x = x.astype(np.int64)
    lower, upper = genome_bounds(space)
    out_of_bounds = np.flatnonzero((x < lower) | (x > upper))
    if out_of_bounds.size:
        i = int(out_of_bounds[0])
        raise ConfigError(f"genome variable {i} = {int(x[i])} outside [{lower[i]}, {upper[i]}]")
    ks, es, ds = [], [], []
    for stage in range(NUM_STAGES):
        start = 2 + stage * space.max_depth
        active = [int(c) for c in x[start : start + space.max_depth] if c > 0]
        if len(active) not in space.depths:
            raise ConfigError(
                f"genome stage {stage + 1} has {len(active)} active blocks; "
                f"allowed depths are {list(space.depths)}"
            )
        ds.append(len(active))
        for code in active:
            e, k = space.op_choices[code - 1]
            ks.append(k)
            es.append(e)
    return Subnet(
        ks=tuple(ks),
        e=tuple(es),
        d=tuple(ds),
        r=space.resolutions[int(x[0])],
        w=float(space.width_mults[int(x[1])]),
    )


def canonical(genome: np.ndarray | list[int], space: SearchSpace) -> np.ndarray:
    """The canonical genome of the network ``genome`` describes."""
    return encode(decode(genome, space), space)


def canonical_batch(genomes: np.ndarray, space: SearchSpace) -> np.ndarray:
    """Vectorised `canonical` for a (n, L) array; skips are moved to the end of each stage (stable)."""
    x = np.array(genomes, dtype=np.int64, copy=True)
    if x.ndim != 2 or x.shape[1] != genome_length(space):
        raise ConfigError(f"expected genomes of shape (n, {genome_length(space)}), got {x.shape}")
    slots = x[:, 2:].reshape(len(x), NUM_STAGES, space.max_depth)
    order = np.argsort(slots == 0, axis=2, kind="stable")
    x[:, 2:] = np.take_along_axis(slots, order, axis=2).reshape(len(x), x.shape[1] - 2)
    return x


def sample_genomes(space: SearchSpace, n: int, rng: random.Random | np.random.Generator) -> np.ndarray:
    """``n`` canonical genomes of subnets sampled uniformly (depth, ops, resolution, width independent)."""
    if isinstance(rng, np.random.Generator):
        rng = random.Random(int(rng.integers(2**63)))
    return np.stack([encode(Subnet.sample(space, rng), space) for _ in range(n)])


# ------------------------------------------------------------------------------------------- net.encoding


def _encoding_text(text_or_path: str | Path) -> tuple[str, str]:
    """(the digit string, where it came from) for an encoding given inline or as a file."""
    path = Path(text_or_path)
    if (
        isinstance(text_or_path, str)
        and not path.is_file()
        and "/" not in text_or_path
        and "." not in text_or_path
    ):
        return text_or_path.strip(), "encoding"
    return read_text(path, "net.encoding file").strip(), str(path)


def parse_encoding(text_or_path: str | Path, space: SearchSpace | None = None) -> Subnet:
    """The `Subnet` of NAT's ``net.encoding`` (a digit string, given inline or as a file).

    NAT writes its genome as digits: two for the resolution index, one for the width index, then one per
    slot (5 stages x ``max_depth``; 0 = skipped, else ``1 + 3 * expansion index + kernel index``, the
    codes of `decode`), e.g. ``08011001440551052208877`` is NAT-M1 (224 px, width 1.0).
    """
    space = get_space(space)
    text, where = _encoding_text(text_or_path)
    n_slots = NUM_STAGES * space.max_depth
    if not text.isdigit() or len(text) != 3 + n_slots:
        raise ConfigError(
            f"{where}: a net.encoding is {3 + n_slots} digits for space '{space.name}' (2 resolution, "
            f"1 width, {n_slots} slots), got {text[:40]!r}"
        )
    genome = [int(text[:2]), int(text[2])] + [int(c) for c in text[3:]]
    try:
        return decode(genome, space)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def format_encoding(subnet: Subnet, space: SearchSpace | None = None) -> str:
    """NAT's ``net.encoding`` digits of ``subnet`` (its canonical genome); inverse of `parse_encoding`."""
    space = get_space(space)
    genome = encode(subnet, space)
    if genome[0] > 99 or max(genome[1:]) > 9:
        raise ConfigError(f"space '{space.name}' has too many choices for NAT's one-digit encoding")
    return f"{int(genome[0]):02d}" + "".join(str(int(g)) for g in genome[1:])
