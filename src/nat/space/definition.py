"""Search-space definitions: the once-for-all MobileNetV3 space of NAT, and configurable variants.

The default, :data:`OFA_MBV3`, is exactly OFA's ``ofa_mbv3_d234_e346_k357`` space that NAT searches:
five elastic stages (widths 24/40/80/112/160 x width multiplier, strides 2,2,2,1,2, SE in stages 2/4/5,
ReLU in stages 1-2 and h-swish after), depth {2,3,4}, kernel {3,5,7}, expansion {3,4,6}, resolution
192..256 step 4, width multiplier 1.0 or 1.2 (one supernet per width).

Everything else (small inputs on CPU, narrower supernets for tests) is the same structure with other
numbers; presets are looked up by name with :func:`get_space`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nat.config_io import validation_message
from nat.errors import ConfigError

NUM_STAGES = 5

Activation = Literal["relu", "h_swish"]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` the way OFA/MobileNet do (never below 90%)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return int(new_value)


class SearchSpace(BaseModel):
    """The structure of an elastic MobileNetV3 supernet and the choices a subnet can make."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    resolutions: tuple[int, ...] = Field(default=tuple(range(192, 257, 4)), min_length=1)
    width_mults: tuple[float, ...] = Field(default=(1.0, 1.2), min_length=1)
    kernel_sizes: tuple[int, ...] = Field(default=(3, 5, 7), min_length=1)
    expand_ratios: tuple[int, ...] = Field(default=(3, 4, 6), min_length=1)
    depths: tuple[int, ...] = Field(default=(2, 3, 4), min_length=1)
    #: stem conv, first (fixed) block, the 5 elastic stages, final expand (1x1) and feature mix (1x1)
    base_widths: tuple[int, ...] = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    stem_stride: int = 2
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2)
    stage_se: tuple[bool, ...] = (False, True, False, True, True)
    stage_acts: tuple[Activation, ...] = ("relu", "relu", "h_swish", "h_swish", "h_swish")
    first_block_act: Activation = "relu"
    se_reduction: int = 4
    dropout_rate: float = Field(default=0.1, ge=0.0, lt=1.0)
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    @field_validator("kernel_sizes")
    @classmethod
    def _odd_kernels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 or k % 2 == 0 for k in value):
            raise ValueError(f"kernel sizes must be odd positive integers, got {list(value)}")
        if list(value) != sorted(set(value)):
            raise ValueError(f"kernel sizes must be strictly increasing, got {list(value)}")
        return value

    @field_validator("resolutions", "expand_ratios", "depths", "width_mults")
    @classmethod
    def _sorted_unique_positive(cls, value: tuple) -> tuple:
        if any(v <= 0 for v in value) or list(value) != sorted(set(value)):
            raise ValueError(f"must be positive and strictly increasing, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _shapes(self) -> SearchSpace:
        if len(self.base_widths) != NUM_STAGES + 4:
            raise ValueError(
                f"base_widths needs {NUM_STAGES + 4} entries (stem, first block, 5 stages, "
                f"final expand, feature mix), got {len(self.base_widths)}"
            )
        for field in ("stage_strides", "stage_se", "stage_acts"):
            if len(getattr(self, field)) != NUM_STAGES:
                raise ValueError(f"{field} needs {NUM_STAGES} entries, got {len(getattr(self, field))}")
        if min(self.depths) < 1:
            raise ValueError("depths must be >= 1")
        if self.stem_stride < 1 or any(s < 1 for s in self.stage_strides):
            raise ValueError(
                f"strides must be >= 1, got stem_stride {self.stem_stride}, "
                f"stage_strides {list(self.stage_strides)}"
            )
        too_small = [r for r in self.resolutions if r < self.total_stride]
        if too_small:
            strides = tuple(self.stage_strides)
            raise ValueError(
                f"resolution(s) {too_small} below the space's total stride {self.total_stride} (stem stride "
                f"{self.stem_stride} x stage strides {strides}): the network would shrink such an input "
                f"below one pixel; use resolutions >= {self.total_stride}"
            )
        return self

    # ----------------------------------------------------------------- derived quantities
    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def min_depth(self) -> int:
        return min(self.depths)

    @property
    def total_stride(self) -> int:
        """How many times the network shrinks its input (stem stride x the stage strides)."""
        return self.stem_stride * math.prod(self.stage_strides)

    @property
    def num_subnets(self) -> int:
        """The number of distinct subnets (canonical descriptions) of the space: resolutions x widths x,
        for each stage, the sum over its depths ``d`` of ``(kernel sizes x expand ratios) ** d``."""
        per_stage = sum(len(self.op_choices) ** d for d in self.depths)
        return len(self.resolutions) * len(self.width_mults) * per_stage**NUM_STAGES

    @property
    def op_choices(self) -> tuple[tuple[int, int], ...]:
        """(expand_ratio, kernel_size) pairs; genome code ``c >= 1`` means ``op_choices[c - 1]``."""
        return tuple((e, k) for e in self.expand_ratios for k in self.kernel_sizes)

    def widths(self, width_mult: float) -> tuple[int, ...]:
        """Channel widths (stem, first block, stages 1-5, final expand, feature mix) at a multiplier."""
        return tuple(make_divisible(w * width_mult, 8) for w in self.base_widths)

    def stage_widths(self, width_mult: float) -> tuple[int, ...]:
        return self.widths(width_mult)[2 : 2 + NUM_STAGES]

    def middle_channels(self, in_channels: int, expand_ratio: float) -> int:
        """Hidden width of an inverted-residual block (OFA rounds to a multiple of 8)."""
        return make_divisible(round(in_channels * expand_ratio), 8)

    def se_channels(self, channels: int) -> int:
        return make_divisible(channels // self.se_reduction, 8)


def ofa_mbv3() -> SearchSpace:
    """NAT's search space, exactly OFA's MobileNetV3 (d234, e346, k357, r192-256, w1.0/1.2)."""
    return SearchSpace(name="ofa_mbv3")


def small_input() -> SearchSpace:
    """The paper's space for 28-64 px inputs (MNIST-like data): stem stride 1, full widths."""
    return SearchSpace(
        name="small", resolutions=tuple(range(28, 45, 4)), stem_stride=1, stage_strides=(1, 2, 2, 1, 2)
    )


def tiny() -> SearchSpace:
    """A narrow supernet for small inputs on CPU (quick experiments and tests), same choices as NAT."""
    return SearchSpace(
        name="tiny",
        resolutions=tuple(range(24, 41, 4)),
        width_mults=(1.0,),
        base_widths=(8, 8, 16, 24, 32, 48, 64, 256, 320),
        stem_stride=1,
        stage_strides=(1, 2, 2, 1, 2),
    )


def tiny_s2() -> SearchSpace:
    """``tiny`` with a stride-2 stem: about 3.6x fewer MAdds per image.

    The benchmarks' Fashion-MNIST supernet (bench/data/) uses it: a stride-1 stem keeps the first stage
    at full input resolution, which costs most of the compute.
    """
    return tiny().model_copy(update={"name": "tiny-s2", "stem_stride": 2})


def tiny_s2_wide() -> SearchSpace:
    """``tiny-s2`` with about twice its channels (16-wide stem, stages 24..96): the shipped Fashion-MNIST
    supernet's space until 2026-12-05 (now ``tiny-s2-wide-32``). On 28 px inputs a ``tiny-s2`` step is
    dominated by per-layer overhead, so twice the channels cost only about 1.35x the time of a training
    step on one CPU thread while the narrower network underfits Fashion-MNIST (docs/pretraining.md)."""
    return tiny_s2().model_copy(
        update={"name": "tiny-s2-wide", "base_widths": (16, 16, 24, 32, 48, 64, 96, 384, 512)}
    )


def tiny_s2_wide_32() -> SearchSpace:
    """``tiny-s2-wide`` at 24-32 px only: the shipped Fashion-MNIST supernet's space since 2026-12-05.
    That supernet is trained without random-resized crops, which were what taught the earlier one other
    scales; untrained at 36/40 px its subnets there fall far below the rest (docs/pretraining.md), so its
    space lists only the resolutions it was trained at."""
    return tiny_s2_wide().model_copy(update={"name": "tiny-s2-wide-32", "resolutions": (24, 28, 32)})


def micro() -> SearchSpace:
    """The smallest useful supernet (16-28 px, stem stride 2): smoke runs and tests in seconds on CPU."""
    return SearchSpace(
        name="micro",
        resolutions=tuple(range(16, 29, 4)),
        width_mults=(1.0,),
        base_widths=(8, 8, 16, 24, 32, 40, 48, 128, 160),
        stem_stride=2,
        stage_strides=(1, 2, 2, 1, 2),
    )


PRESETS = {
    "ofa_mbv3": ofa_mbv3,
    "small": small_input,
    "tiny": tiny,
    "tiny-s2": tiny_s2,
    "tiny-s2-wide": tiny_s2_wide,
    "tiny-s2-wide-32": tiny_s2_wide_32,
    "micro": micro,
}


def get_space(name_or_space: str | SearchSpace | dict | None = None) -> SearchSpace:
    """A preset by name, a ready space, or a mapping of fields; ``None`` gives NAT's default space."""
    if name_or_space is None:
        return ofa_mbv3()
    if isinstance(name_or_space, SearchSpace):
        return name_or_space
    if isinstance(name_or_space, dict):
        from pydantic import ValidationError

        try:
            return SearchSpace(**name_or_space)
        except ValidationError as exc:
            detail = validation_message(exc, docs="nat.space.SearchSpace").removeprefix("(top level): ")
            raise ConfigError(f"invalid search space: {detail}") from None
    try:
        return PRESETS[name_or_space]()
    except KeyError:
        raise ConfigError(
            f"unknown search space preset {name_or_space!r}; choose one of {sorted(PRESETS)}"
        ) from None


def space_over(base: SearchSpace, spec: str | SearchSpace | dict | None) -> SearchSpace:
    """The space a run's ``space:`` setting asks for, given the space it would otherwise use.

    ``None`` keeps ``base``; a preset name or a ready space replaces it; a mapping changes only the
    fields it names, so ``{"resolutions": [28, 32]}`` narrows a loaded supernet's resolutions without
    restating its widths, strides and the rest (useful when the task's images have a known native
    size: docs/results/transfer.md).
    """
    if spec is None:
        return base
    if isinstance(spec, dict):
        return get_space({**base.model_dump(), **spec})
    return get_space(spec)
