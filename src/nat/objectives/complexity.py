"""Exact MAdds and parameter counts of subnets, analytically from their description.

What is counted (the convention of OFA's ``count_net_flops``, which NAT reports):

* **MAdds**: multiply-accumulates of every convolution (``H_out * W_out * C_out * k * k * C_in / groups``,
  biases not counted) and of the classifier (``in * out``), including the two 1x1 convolutions of each
  squeeze-and-excite module (on the pooled 1x1 map). Not counted: BN, activations, pooling, the SE
  rescale and residual additions (together well under 1% of the total).
* **params**: every parameter of the extracted standalone network: conv and linear weights, biases (SE
  and classifier), BN scale and shift. BN running statistics (buffers) and the supernet-only kernel
  transformation matrices are not parameters of the deployed model and are not counted.

A `ComplexityTable` precomputes the cost of every (width, resolution, block slot, operation) once, so
the cost of a genome is one table lookup per slot: 10,000 subnets take milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nat.space.definition import NUM_STAGES, SearchSpace, get_space
from nat.space.genome import encode, genome_length
from nat.space.subnet import Subnet


def conv_out(size: int, stride: int) -> int:
    """Output side of a 'same'-padded odd-kernel convolution."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class Cost:
    madds: int
    params: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.madds + other.madds, self.params + other.params)


def mbconv_cost(
    c_in: int,
    mid: int,
    c_out: int,
    kernel: int,
    stride: int,
    size_in: int,
    se_mid: int | None,
    expand: bool = True,
) -> Cost:
    """Cost of one inverted-residual block at input side ``size_in``."""
    size_out = conv_out(size_in, stride)
    madds = params = 0
    if expand:
        madds += size_in * size_in * c_in * mid
        params += c_in * mid + 2 * mid
    madds += size_out * size_out * mid * kernel * kernel
    params += mid * kernel * kernel + 2 * mid
    if se_mid is not None:
        madds += 2 * mid * se_mid
        params += 2 * mid * se_mid + se_mid + mid
    madds += size_out * size_out * mid * c_out
    params += mid * c_out + 2 * c_out
    return Cost(madds, params)


def fixed_cost(space: SearchSpace, width_mult: float, resolution: int, num_classes: int) -> Cost:
    """Stem, first block, final expand, feature mix and classifier: the parts every subnet has."""
    w = space.widths(width_mult)
    size = conv_out(resolution, space.stem_stride)
    stem = Cost(size * size * 3 * 9 * w[0], 27 * w[0] + 2 * w[0])
    first = mbconv_cost(w[0], w[0], w[1], 3, 1, size, None, expand=False)
    for stride in space.stage_strides:
        size = conv_out(size, stride)
    final_expand = Cost(size * size * w[6] * w[7], w[6] * w[7] + 2 * w[7])
    feature_mix = Cost(w[7] * w[8], w[7] * w[8])
    classifier = Cost(w[8] * num_classes, w[8] * num_classes + num_classes)
    return stem + first + final_expand + feature_mix + classifier


def as_genomes(genomes: np.ndarray, space: SearchSpace) -> np.ndarray:
    """A batch of genomes (n, L) as int64 (one genome becomes a batch of one); checks the length."""
    x = np.asarray(genomes, dtype=np.int64)
    if x.ndim == 1:
        x = x[None]
    if x.shape[1] != genome_length(space):
        raise ValueError(f"genomes must have {genome_length(space)} columns, got {x.shape[1]}")
    return x


def genome_sums(fixed: np.ndarray, slots: np.ndarray, genomes: np.ndarray) -> np.ndarray:
    """Per genome, ``fixed[width, resolution]`` plus ``slots[width, resolution, slot, code]`` summed over
    its slots (code 0, a skipped slot, costs what the table says: nothing): how every per-slot table of
    nat (MAdds, params, latency) prices a batch of genomes at once."""
    w, r, codes = genomes[:, 1], genomes[:, 0], genomes[:, 2:]
    idx = np.arange(codes.shape[1])
    return fixed[w, r] + slots[w[:, None], r[:, None], idx, codes].sum(1)


class ComplexityTable:
    """Vectorised exact MAdds/params for genomes of one space and class count."""

    def __init__(self, space: SearchSpace | str | None = None, num_classes: int = 1000) -> None:
        self.space = space = get_space(space)
        self.num_classes = num_classes
        n_w, n_r, n_ops = len(space.width_mults), len(space.resolutions), len(space.op_choices)
        n_slots = NUM_STAGES * space.max_depth
        self.fixed_madds = np.zeros((n_w, n_r), dtype=np.int64)
        self.fixed_params = np.zeros((n_w, n_r), dtype=np.int64)
        # slot tables: index 0 (skip) costs nothing
        self.slot_madds = np.zeros((n_w, n_r, n_slots, n_ops + 1), dtype=np.int64)
        self.slot_params = np.zeros((n_w, n_r, n_slots, n_ops + 1), dtype=np.int64)
        for wi, w in enumerate(space.width_mults):
            widths = space.widths(w)
            for ri, r in enumerate(space.resolutions):
                cost = fixed_cost(space, w, r, num_classes)
                self.fixed_madds[wi, ri], self.fixed_params[wi, ri] = cost.madds, cost.params
                size, c_in = conv_out(r, space.stem_stride), widths[1]
                for stage in range(NUM_STAGES):
                    c_out = widths[2 + stage]
                    for j in range(space.max_depth):
                        # slots >= 1 are identical (stride 1, c_out -> c_out), so a mid-stage skip
                        # that shifts later blocks forward does not change the cost of what remains
                        stride = space.stage_strides[stage] if j == 0 else 1
                        block_in = c_in if j == 0 else c_out
                        for code, (e, k) in enumerate(space.op_choices, start=1):
                            mid = space.middle_channels(block_in, e)
                            se = space.se_channels(mid) if space.stage_se[stage] else None
                            cost = mbconv_cost(block_in, mid, c_out, k, stride, size, se)
                            slot = stage * space.max_depth + j
                            self.slot_madds[wi, ri, slot, code] = cost.madds
                            self.slot_params[wi, ri, slot, code] = cost.params
                        if j == 0:
                            size = conv_out(size, stride)
                    c_in = c_out

    def __call__(self, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(madds, params) of a batch of genomes (n, L) as int64 arrays."""
        x = as_genomes(genomes, self.space)
        return genome_sums(self.fixed_madds, self.slot_madds, x), genome_sums(
            self.fixed_params, self.slot_params, x
        )

    def subnet(self, subnet: Subnet) -> Cost:
        madds, params = self(encode(subnet, self.space))
        return Cost(int(madds[0]), int(params[0]))


@lru_cache(maxsize=16)
def _table(space: SearchSpace, num_classes: int) -> ComplexityTable:
    return ComplexityTable(space, num_classes)


def profile_subnet(subnet: Subnet, space: SearchSpace | str | None = None, num_classes: int = 1000) -> dict:
    """MAdds and params of one subnet (with resolution and width), as the CLI reports them."""
    space = get_space(space)
    cost = _table(space, num_classes).subnet(subnet)
    return {
        "madds": cost.madds,
        "params": cost.params,
        "resolution": subnet.r,
        "width": subnet.w,
        "num_classes": num_classes,
        "space": space.name,
    }
