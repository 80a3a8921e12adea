"""The search space: definitions, NAT's `Subnet` format and the integer genome."""

from nat.space.definition import PRESETS, SearchSpace, get_space, make_divisible, space_over
from nat.space.genome import (
    canonical,
    canonical_batch,
    decode,
    encode,
    genome_bounds,
    genome_length,
    sample_genomes,
)
from nat.space.subnet import Subnet

__all__ = [
    "PRESETS",
    "SearchSpace",
    "Subnet",
    "canonical",
    "canonical_batch",
    "decode",
    "encode",
    "genome_bounds",
    "genome_length",
    "get_space",
    "make_divisible",
    "sample_genomes",
    "space_over",
]
