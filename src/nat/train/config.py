"""`PretrainConfig`: a progressive-shrinking pretraining run, validated from YAML.

Defaults follow OFA's schedule for the MobileNetV3 space (full network, then elastic kernel, depth and
expansion, the last three with knowledge distillation); the numbers of epochs and learning rates are per
phase because the affordable budget differs by orders of magnitude between ImageNet on GPUs and a small
dataset on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nat.config_io import read_yaml_mapping, validation_message
from nat.data import DataConfig
from nat.errors import ConfigError
from nat.runtime.settings import RuntimeSettings
from nat.space.definition import SearchSpace, get_space


class PhaseConfig(BaseModel):
    """One phase of progressive shrinking: which choices may be sampled, for how long, at what lr.

    A choice list left out (``null``) means the largest value only, so a phase names exactly what it
    makes elastic: ``{kernel_sizes: [3, 5, 7]}`` is OFA's elastic-kernel phase at full depth and width.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kernel_sizes: list[int] | None = Field(None, description="kernel sizes sampled (None: largest only)")
    depths: list[int] | None = Field(None, description="stage depths sampled (None: largest only)")
    expand_ratios: list[int] | None = Field(None, description="expansion ratios sampled (None: largest only)")
    epochs: float = Field(gt=0, description="passes over the training split (may be fractional)")
    lr: float = Field(gt=0, description="peak learning rate (after warm-up), cosine-decayed per step")
    lr_min: float = Field(0.0, ge=0)
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up from 0, in epochs")
    subnets_per_batch: int = Field(1, ge=1, description="sampled subnets per batch (OFA: 1-4)")
    distill: bool | None = Field(
        None, description="in-place KD from the largest subnet; None: on for every elastic phase"
    )
    sandwich: bool = Field(False, description="also train the phase's smallest subnet on every batch")

    def elastic(self) -> bool:
        return any(getattr(self, f) is not None for f in ("kernel_sizes", "depths", "expand_ratios"))

    def uses_distillation(self) -> bool:
        return self.elastic() if self.distill is None else self.distill


def ofa_phases() -> list[PhaseConfig]:
    """OFA's progressive shrinking (d234, e346, k357), with OFA's relative learning rates and epochs
    scaled down 10x (a starting point; real budgets go in the YAML)."""
    return [
        PhaseConfig(name="full", epochs=18, lr=0.1, warmup_epochs=1),
        PhaseConfig(name="kernel", kernel_sizes=[3, 5, 7], epochs=12, lr=0.03),
        PhaseConfig(name="depth_1", kernel_sizes=[3, 5, 7], depths=[3, 4], epochs=2.5, lr=0.0025),
        PhaseConfig(name="depth_2", kernel_sizes=[3, 5, 7], depths=[2, 3, 4], epochs=12, lr=0.0075),
        PhaseConfig(
            name="expand_1",
            kernel_sizes=[3, 5, 7],
            depths=[2, 3, 4],
            expand_ratios=[4, 6],
            epochs=2.5,
            lr=0.0025,
        ),
        PhaseConfig(
            name="expand_2",
            kernel_sizes=[3, 5, 7],
            depths=[2, 3, 4],
            expand_ratios=[3, 4, 6],
            epochs=12,
            lr=0.0075,
        ),
    ]


class PretrainConfig(RuntimeSettings):
    """Everything a `nat pretrain` run needs; saved resolved as ``config.yaml`` in the run folder."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig
    space: str | dict[str, Any] = Field("tiny", description="search-space preset name or its fields")
    width_mult: float | None = Field(None, description="None: the space's first width multiplier")
    init_from: Path | None = Field(
        None, description="start from these supernet weights (a nat supernet file) instead of random ones"
    )
    train_resolutions: list[int] | None = Field(
        None, description="resolutions sampled per batch (None: the space's resolutions)"
    )
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    kd_ratio: float = Field(1.0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(100, ge=0, description="also checkpoint every N steps (0: epochs only)")
    log_every: int = Field(20, ge=1, description="write a metrics row every N steps")
    calibration_images: int = Field(2000, ge=1, description="training images for BN recalibration")
    val_images: int | None = Field(
        2000, ge=0, description="val images for the end-of-phase check (None: all, 0: no check)"
    )
    test_eval: bool = Field(True, description="evaluate largest/smallest on the test split at the end")
    phases: list[PhaseConfig] = Field(default_factory=ofa_phases, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _older_names(cls, data: Any) -> Any:
        """``calib_images``, this field's name before it was ``calibration_images`` as in search configs
        (configs and pretraining folders written then still load)."""
        if isinstance(data, dict) and "calib_images" in data and "calibration_images" not in data:
            data = {**data, "calibration_images": data["calib_images"]}
            del data["calib_images"]
        return data

    @model_validator(mode="after")
    def _check_against_space(self) -> PretrainConfig:
        space = self.search_space()
        if self.width_mult is not None and self.width_mult not in space.width_mults:
            raise ValueError(f"width_mult {self.width_mult} not in the space's {list(space.width_mults)}")
        if self.train_resolutions is not None and (
            not self.train_resolutions or any(r < 8 for r in self.train_resolutions)
        ):
            raise ValueError("train_resolutions must be a non-empty list of resolutions >= 8")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must be unique, got {names}")
        for phase in self.phases:
            for field, allowed in (
                ("kernel_sizes", space.kernel_sizes),
                ("depths", space.depths),
                ("expand_ratios", space.expand_ratios),
            ):
                values = getattr(phase, field)
                if values is None:
                    continue
                if not values or any(v not in allowed for v in values):
                    raise ValueError(
                        f"phase {phase.name!r}: {field} {values} must be a non-empty subset of the "
                        f"space's {list(allowed)}"
                    )
                if max(allowed) not in values:
                    raise ValueError(
                        f"phase {phase.name!r}: {field} {values} must include the largest value "
                        f"{max(allowed)} (progressive shrinking only ever adds smaller choices)"
                    )
        return self

    def search_space(self) -> SearchSpace:
        try:
            return get_space(self.space)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    def width(self) -> float:
        space = self.search_space()
        return float(space.width_mults[0] if self.width_mult is None else self.width_mult)

    def resolutions(self) -> list[int]:
        return list(self.train_resolutions or self.search_space().resolutions)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_config(data: Any, source: str = "config") -> PretrainConfig:
    """Validate a mapping into a `PretrainConfig`; `ConfigError` naming every bad field otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of fields, not {type(data).__name__}")
    try:
        return PretrainConfig.model_validate(data)
    except ValidationError as exc:
        message = validation_message(exc, "docs/pretraining.md", PretrainConfig)
        raise ConfigError(f"{source}: {message}") from None


def load_pretrain_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PretrainConfig:
    """Read a YAML pretraining config (``overrides`` replace top-level fields, e.g. from CLI flags)."""
    path = Path(path)
    data = read_yaml_mapping(path)
    if isinstance(data, dict) and overrides:
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    return parse_config(data, str(path))
